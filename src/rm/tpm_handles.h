// What the TPM itself says it holds: its transient objects, loaded sessions and saved sessions, read with
// GetCapability(HANDLES). The RM compares its own picture with this at start-up (leftovers of an earlier
// user) and after a command whose outcome it could not see (a transport error after sending).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <set>

#include "rm/rm_error.h"
#include "rm/tpm_port.h"

namespace tpmrmd::rm {

struct TpmHandles {
  std::set<TPM2_HANDLE> objects;          // transient
  std::set<TPM2_HANDLE> loaded_sessions;  // HMAC and policy, loaded in a session slot
  std::set<TPM2_HANDLE> saved_sessions;   // active but context-saved

  std::size_t size() const { return objects.size() + loaded_sessions.size() + saved_sessions.size(); }
  bool has_session(TPM2_HANDLE h) const { return loaded_sessions.count(h) || saved_sessions.count(h); }
};

// Reads all three lists, following moreData. A transport error or a malformed answer is an error (kTransport);
// so is a list that never ends (a TPM that keeps answering moreData without progress).
RmResult<TpmHandles> read_tpm_handles(TpmPort& tpm);

}  // namespace tpmrmd::rm
