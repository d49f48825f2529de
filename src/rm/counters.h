// What the RM counts, for status output, tests and benchmarks.
#pragma once

#include <cstdint>
#include <map>

namespace tpmrmd::rm {

struct ConnectionCounters {
  std::uint64_t commands = 0;  // client commands executed (answered by the TPM or by the RM)
  std::uint64_t refusals = 0;  // commands the RM answered itself with an error rc or errno
  std::uint32_t objects = 0;   // live virtual transient handles
  std::uint32_t sessions = 0;  // sessions owned
};

struct Counters {
  std::uint64_t client_commands = 0;  // TPM commands sent on behalf of a client command
  std::uint64_t context_loads = 0;    // TPM2_ContextLoad issued by the RM
  std::uint64_t context_saves = 0;    // TPM2_ContextSave issued by the RM
  std::uint64_t flushes = 0;          // TPM2_FlushContext issued by the RM
  std::uint64_t evictions = 0;        // contexts saved+flushed to make room (drift evictions included)
  // Objects evicted before a command that may flush transients behind the RM (TPMA_CC extensive, or flushed
  // without naming a transient), so that no slot the RM believes occupied can be emptied by it.
  std::uint64_t drift_evictions = 0;
  // The TPM put an object in a slot (or gave a session handle) the RM believed another's: the older entry was stale.
  std::uint64_t physical_collisions = 0;
  // Comparisons of the RM's picture with the TPM's handle lists after a command's outcome went unseen, and the
  // entries they corrected.
  std::uint64_t reconciliations = 0;
  std::uint64_t reconciled_entries = 0;
  std::uint64_t leftovers_flushed = 0;  // handles an earlier user left in the TPM, flushed at start-up
  std::uint64_t regaps = 0;           // saved sessions reloaded+resaved to close a context gap
  std::uint64_t refusals = 0;         // client commands refused by the RM
  std::uint64_t connections_open = 0;
  std::map<std::uint64_t, ConnectionCounters> per_connection;  // keyed by ConnectionId

  std::uint64_t tpm_commands() const { return client_commands + context_loads + context_saves + flushes; }
};

}  // namespace tpmrmd::rm
