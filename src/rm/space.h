// One connection's view of the TPM: its virtual transient handles and the sessions it owns.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <set>

#include "rm/counters.h"
#include "rm/dispatcher.h"
#include "rm/virtual_handle_table.h"

namespace tpmrmd::rm {

struct Space {
  ConnectionId id = 0;
  ClientInfo client;
  VirtualHandleTable objects;
  std::set<TPM2_HANDLE> sessions;  // owned, live or client-saved
  ConnectionCounters counters;
};

}  // namespace tpmrmd::rm
