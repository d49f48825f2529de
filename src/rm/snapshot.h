// Everything an operator may want to see of one RM, taken at once on the worker thread (WorkerDispatcher::
// snapshot()): the counters, how full the TPM's slots are, what the RM learned of the TPM, the policy in force.
// A plain value: the control server renders it on its own thread without touching the RM.
#pragma once

#include <cstdint>
#include <string>

#include "rm/counters.h"

namespace tpmrmd::rm {

struct SlotUse {
  std::uint32_t objects_resident = 0;    // loaded in a TPM object slot
  std::uint32_t objects_total = 0;       // every object the RM manages (resident or saved)
  std::uint32_t object_slots = 0;        // the slots the RM plans with (HR_TRANSIENT_MIN less foreign and reserve)
  std::uint32_t tpm_object_slots = 0;    // TPM_PT_HR_TRANSIENT_MIN
  std::uint32_t sessions_resident = 0;   // loaded in a TPM session slot
  std::uint32_t sessions_total = 0;      // every session the RM manages (loaded, saved, abandoned)
  std::uint32_t sessions_saved = 0;      // saved as a context (by the RM or the client)
  std::uint32_t sessions_abandoned = 0;  // client-saved sessions whose connection closed
  std::uint32_t session_slots = 0;       // the loaded-session slots the RM plans with
  std::uint32_t tpm_session_slots = 0;   // TPM_PT_HR_LOADED_MIN
  std::uint32_t active_sessions_max = 0; // TPM_PT_ACTIVE_SESSIONS_MAX
  // Context gap: how far the oldest saved session's sequence lies behind the newest (0 with none saved), and the
  // TPM's limit (TPM_PT_CONTEXT_GAP_MAX); the RM re-gaps well before they meet.
  std::uint64_t context_gap = 0;
  std::uint32_t context_gap_max = 0;
};

struct TpmIdentity {
  std::string manufacturer;
  std::string vendor_string;
  std::uint64_t firmware_version = 0;
  std::uint32_t family = 0;
  std::uint32_t revision = 0;
};

struct Snapshot {
  Counters counters;
  SlotUse slots;
  TpmIdentity tpm;
  std::string policy;  // CommandPolicy::describe() of the policy in force
};

}  // namespace tpmrmd::rm
