// What the TPM itself says it holds: its transient objects, loaded sessions and saved sessions, read with
// GetCapability(HANDLES). The RM compares its own picture with this at start-up (leftovers of an earlier
// user) and after a command whose outcome it could not see (a transport error after sending).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <set>

#include "rm/rm_error.h"
#include "rm/tpm_port.h"

namespace tpmrmd::rm {

// Sessions are keyed by their slot index (session_index): HMAC and policy sessions share one index space, and
// TPMs list a session under either type's handle (the reference implementation lists a saved policy session
// as 0x02...), so only the index identifies it. The value is the handle as listed.
using SessionHandles = std::map<std::uint32_t, TPM2_HANDLE>;

struct TpmHandles {
  std::set<TPM2_HANDLE> objects;  // transient
  SessionHandles loaded_sessions;  // loaded in a session slot
  SessionHandles saved_sessions;   // active but context-saved

  std::size_t size() const { return objects.size() + loaded_sessions.size() + saved_sessions.size(); }
  bool has_session(TPM2_HANDLE h) const;
};

// Reads all three lists, following moreData. A transport error or a malformed answer is an error (kTransport);
// so is a list that never ends (a TPM that keeps answering moreData without progress).
RmResult<TpmHandles> read_tpm_handles(TpmPort& tpm);

}  // namespace tpmrmd::rm
