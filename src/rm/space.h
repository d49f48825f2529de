// One connection's view of the TPM: its virtual transient handles and its counters. The sessions it owns are
// indexed by the SessionTable (SessionTable::owned), the one place session ownership is recorded.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include "rm/counters.h"
#include "rm/dispatcher.h"
#include "rm/virtual_handle_table.h"

namespace tpmrmd::rm {

struct Space {
  ConnectionId id = 0;
  ClientInfo client;  // whose it is: per-uid limits and log lines
  VirtualHandleTable objects;
  ConnectionCounters counters;
};

}  // namespace tpmrmd::rm
