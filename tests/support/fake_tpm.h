// An in-memory TPM 2.0 behind rm::TpmPort: just the parts the RM relies on (transient objects, sessions,
// context save/load with the context gap, slot limits, capabilities), so RM tests run without a process.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "rm/tpm_port.h"
#include "tpm/tpm_info.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::testing {

struct FakeTpmOptions {
  // What the model really holds.
  std::uint32_t object_slots = 3;
  std::uint32_t session_slots = 3;          // loaded sessions
  std::uint32_t active_sessions_max = 64;   // loaded + saved sessions
  std::uint32_t context_gap_max = 0xFFFF;   // session saves allowed past the oldest saved session
  std::uint32_t max_command_size = 4096;   // larger commands get COMMAND_SIZE
  std::uint32_t max_response_size = 4096;  // GetCapability pages its answers to fit
  // What info() and GetCapability claim, when a test wants the RM's estimate to be wrong.
  std::optional<std::uint32_t> reported_object_slots;
  std::optional<std::uint32_t> reported_session_slots;
  // Full object slots answer OBJECT_HANDLES instead of OBJECT_MEMORY (TPMs differ here).
  bool objects_full_is_object_handles = false;
};

class FakeTpm final : public rm::TpmPort {
 public:
  // Runs before the model; a value is returned from transmit() instead and the model never sees the command.
  using CommandHook = std::function<std::optional<Result<Bytes>>(ByteSpan command)>;
  // Runs after the model with what it produced; its result is what transmit() returns, so it can corrupt,
  // truncate or replace the response, or turn it into a transport error.
  using ResponseHook = std::function<Result<Bytes>(ByteSpan command, Bytes response)>;

  explicit FakeTpm(FakeTpmOptions options = {});

  const tpm::TpmInfo& info() const override { return info_; }
  Result<Bytes> transmit(ByteSpan command) override;
  bool available() const override;

  // Faults. Hooks are called without the fake's lock held, so they may use the observers below.
  void set_available(bool available);
  void fail_next(int error_code, int times = 1);  // transport error (ENODEV, ETIME, EIO) instead of running
  void inject_rc(TPM2_CC code, TPM2_RC rc, int times = 1);  // next commands with `code` get a bare rc
  void set_command_hook(CommandHook hook);    // an empty function removes it
  void set_response_hook(ResponseHook hook);  // an empty function removes it
  void set_slots(std::uint32_t objects, std::uint32_t sessions);  // real capacity; info() is unchanged
  // A TPM reset: everything loaded or saved is gone and every earlier context blob fails its integrity check.
  void restart();

  // Observation.
  std::uint64_t commands() const;              // transmit() calls
  std::uint64_t commands(TPM2_CC code) const;  // transmit() calls with this command code
  std::vector<TPM2_HANDLE> loaded_objects() const;
  std::vector<TPM2_HANDLE> loaded_sessions() const;
  std::vector<TPM2_HANDLE> saved_sessions() const;
  // Which object a loaded physical handle holds. Copies made by ContextLoad share the serial of the saved
  // object; objects loaded from the same Create output share one too.
  std::optional<std::uint64_t> object_serial(TPM2_HANDLE physical) const;
  std::optional<std::uint64_t> session_serial(TPM2_HANDLE handle) const;  // loaded or saved
  std::uint64_t session_context_counter() const;  // sequence the next session save gets
  bool hierarchy_enabled(TPM2_HANDLE hierarchy) const;

  // The serial a ReadPublic response names (the fake's names encode it); nullopt if it is not one.
  static std::optional<std::uint64_t> serial_in_read_public(ByteSpan response);
  // The serial of the object or session a TPMS_CONTEXT this fake produced describes; nullopt if it is not one.
  static std::optional<std::uint64_t> serial_in_context(ByteSpan context);
  // The serial of the object a Create's outPrivate buffer (the bytes inside the TPM2B) describes.
  static std::optional<std::uint64_t> serial_in_private(ByteSpan private_buffer);

 private:
  enum class ObjectKind : std::uint8_t { kOrdinary = 0, kSequence = 1 };
  struct Object {
    std::uint64_t serial = 0;
    TPM2_HANDLE hierarchy = TPM2_RH_NULL;
    ObjectKind kind = ObjectKind::kOrdinary;
    std::uint64_t state = 0;  // a sequence's running hash
    Bytes public_area;        // marshalled TPM2B_PUBLIC
  };
  struct Session {
    std::uint64_t serial = 0;
    TPM2_SE type = TPM2_SE_HMAC;
    bool loaded = true;
    std::uint64_t sequence = 0;  // of its current saved context, when saved
    Bytes digest;
  };
  struct Reply;
  class Reader;

  Bytes run(ByteSpan command);
  Reply dispatch(TPM2_CC code, const std::vector<TPM2_HANDLE>& handles, Reader& params);
  Reply create_primary(TPM2_HANDLE hierarchy, Reader& in);
  Reply create(TPM2_HANDLE parent, Reader& in);
  Reply load(TPM2_HANDLE parent, Reader& in);
  Reply read_public(TPM2_HANDLE handle);
  Reply certify(TPM2_HANDLE object, TPM2_HANDLE signer, Reader& in);
  Reply start_auth_session(Reader& in);
  Reply policy_auth_value(TPM2_HANDLE handle);
  Reply policy_get_digest(TPM2_HANDLE handle);
  Reply hash_sequence_start(Reader& in);
  Reply sequence_update(TPM2_HANDLE handle, Reader& in);
  Reply sequence_complete(TPM2_HANDLE handle, Reader& in);
  Reply flush_context(Reader& in);
  Reply context_save(TPM2_HANDLE handle);
  Reply context_load(Reader& in);
  Reply get_capability(Reader& in);
  Reply get_random(Reader& in);
  Reply hierarchy_control(TPM2_HANDLE auth, Reader& in);

  std::optional<TPM2_RC> check_handle(TPM2_CC code, std::size_t index, TPM2_HANDLE handle) const;
  std::optional<TPM2_RC> object_room() const;
  std::optional<TPM2_HANDLE> free_object_handle() const;
  TPM2_HANDLE add_object(Object object);
  std::size_t loaded_session_count() const;
  std::optional<std::uint64_t> oldest_saved_sequence() const;
  bool last_slot_reserved() const;
  std::uint64_t mac(ByteSpan bytes) const;
  std::vector<std::pair<TPM2_PT, std::uint32_t>> properties() const;
  Bytes name_of(std::uint64_t serial) const;

  FakeTpmOptions options_;
  tpm::TpmInfo info_;
  std::vector<TPMA_CC> wire_commands_;  // as GetCapability(COMMANDS) reports them

  mutable std::mutex mutex_;
  bool available_ = true;
  int fail_error_ = 0;
  int fail_times_ = 0;
  TPM2_CC inject_code_ = 0;
  TPM2_RC inject_rc_ = 0;
  int inject_times_ = 0;
  CommandHook command_hook_;
  ResponseHook response_hook_;
  std::uint64_t total_commands_ = 0;
  std::map<TPM2_CC, std::uint64_t> by_code_;

  std::map<TPM2_HANDLE, Object> objects_;     // loaded, by physical handle
  std::map<std::uint32_t, Session> sessions_;  // active (loaded or saved), by session index
  std::map<TPM2_HANDLE, bool> enabled_;        // hierarchies
  std::uint64_t next_serial_ = 1;
  std::uint64_t object_counter_ = 1;   // object contexts' sequence numbers
  std::uint64_t session_counter_ = 1;  // session contexts' sequence numbers: the context gap runs on these
  std::uint64_t epoch_ = 0;            // bumped by restart(); part of the integrity key
  std::uint64_t random_ = 0;
};

}  // namespace tpmrmd::testing
