// What must hold of a ResourceManager running on a FakeTpm, checked from outside: the RM's tables (through
// its read-only views), the fake's slots (through its observers) and every response a client got.
//
// The checker sits between the RM and the fake (port()), so it also sees the RM's own traffic: a FlushContext
// the TPM did not carry out is how an object or session can stay in the TPM after the RM forgot it, and the
// checker excuses exactly those slots. It learns which connection may reach which object or session (by the
// fake's serials) from the responses the clients get: a connection may reach what it created and what it
// loaded from a context or private area naming it, never anything else.
//
// docs/fuzzing.md (rm) lists the invariants and when each holds.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rm/resource_manager.h"
#include "rm/tpm_port.h"
#include "support/fake_tpm.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::testing {

class RmInvariants {
 public:
  // Called with a description of the first violation; the default prints it and aborts (what a fuzz target
  // wants). It may return (a gtest records the failure): checking then goes on.
  using OnViolation = std::function<void(const std::string& message)>;

  explicit RmInvariants(FakeTpm& tpm, OnViolation on_violation = {});

  // The port to build the RM on: forwards to the fake and watches the RM's FlushContexts.
  rm::TpmPort& port() { return port_; }
  // The RM under check; set before the first check.
  void watch(const rm::ResourceManager& rm) { rm_ = &rm; }

  // Every client command and what execute() returned for it.
  void on_response(rm::ConnectionId id, ByteSpan command, const Result<Bytes>& result);
  // After the driver restarted the fake TPM: what the RM believes loaded may now be gone until it notices.
  void on_restart();
  // When the TPM's picture cannot be trusted for a while (a hostile TPM lied about it): the slot checks are
  // skipped until the next call with true. The cross-connection checks never are.
  void set_slots_trusted(bool trusted) { slots_trusted_ = trusted; }
  // The TPM holds what `handle` names (an object slot or a session) although the RM was told otherwise (a
  // hostile response hid it): the leak checks excuse it for as long as that object or session is there.
  void excuse(TPM2_HANDLE handle);
  // A hostile response named `handle` as one it created, and the object or session there (then or later) is
  // not what the RM asked for: whichever connection the RM maps to that handle may reach it (the RM cannot tell such a lie from a
  // slot emptied behind it and reused; docs/rm.md, Drift). Every other reach is still checked. What is there is
  // also excused from the leak checks: the lie may have overwritten the RM's record of it.
  void lied_about(TPM2_HANDLE handle);
  // Connection `id`'s own command created what `handle` names, and a hostile response hid it: the connection
  // may reach it (the RM may still map one of its stale handles there), no other may.
  void grant(rm::ConnectionId id, TPM2_HANDLE handle);
  // The response the next on_response() sees was rewritten by a hostile TPM: what it names (a serial in a
  // ReadPublic) says nothing about the RM. Its framing is still checked.
  void distrust_response() { response_distrusted_ = true; }

  // After every step: the RM's tables are consistent, no object or session is reachable from a connection
  // that may not reach it, and (unless a fault excuses it) the fake's slots are the RM's resident entries.
  void check();
  // After every connection closed, before shutdown(): only abandoned sessions (within their bound) remain.
  void check_all_closed();
  // After shutdown(): the TPM holds nothing the RM put there.
  void check_shut_down();

  std::size_t violations() const { return violations_; }

 private:
  class Port final : public rm::TpmPort {
   public:
    explicit Port(RmInvariants& owner) : owner_(owner) {}
    const tpm::TpmInfo& info() const override;
    Result<Bytes> transmit(ByteSpan command) override;
    bool available() const override;

   private:
    RmInvariants& owner_;
  };

  void fail(const std::string& message);
  void on_new_handle(rm::ConnectionId id, ByteSpan command, TPM2_HANDLE handle);
  // The serial a command's context blob or private area names, if it names one.
  std::optional<std::uint64_t> serial_presented(ByteSpan command) const;
  // Whether one of `handles` (virtual, of connection `id`) is mapped to a handle a lie named, or is an entry
  // whose context was saved from one.
  bool reaches_lied_handle(rm::ConnectionId id, const std::vector<TPM2_HANDLE>& handles) const;
  bool may_reach_object(rm::ConnectionId id, std::uint64_t serial) const;
  bool may_reach_session(rm::ConnectionId id, std::uint64_t serial) const;
  void check_tables();
  void check_isolation();
  void check_slots();
  // Objects and sessions in the TPM that no RM entry explains and no failed flush excuses.
  std::set<TPM2_HANDLE> leaked_objects() const;
  std::set<TPM2_HANDLE> leaked_sessions() const;

  FakeTpm& tpm_;
  OnViolation on_violation_;
  Port port_;
  const rm::ResourceManager* rm_ = nullptr;
  std::size_t violations_ = 0;
  bool slots_trusted_ = true;
  bool response_distrusted_ = false;

  // serial -> connections that may reach it.
  std::map<std::uint64_t, std::set<rm::ConnectionId>> object_reach_;
  std::map<std::uint64_t, std::set<rm::ConnectionId>> session_reach_;
  std::set<std::uint64_t> seen_objects_;  // every object serial ever handed to a connection
  std::set<std::uint64_t> seen_sessions_;
  std::map<Bytes, std::uint64_t> session_tokens_;  // session contexts clients got -> the session's serial
  // Slots and session handles lied_about() named: an entry the lie put there may reach whatever the TPM puts there
  // later, as long as no well-formed answer tells the RM otherwise (the RM trusts handles in well-formed responses).
  std::set<TPM2_HANDLE> lied_handles_;
  std::set<std::uint64_t> lied_objects_;  // serials lied_about() named
  // Objects an RM entry was seen mapping on a slot a lie named: that entry's saved context is of them, so it may
  // reach them wherever the RM reloads it.
  std::map<rm::ObjectId, std::set<std::uint64_t>> lied_entries_;
  std::set<std::uint64_t> lied_sessions_;
  // (handle, serial) of objects / sessions the RM may have lost track of without a fault of its own: their
  // FlushContext was not carried out, or excuse() named them.
  std::set<std::pair<TPM2_HANDLE, std::uint64_t>> excused_objects_;
  std::set<std::pair<TPM2_HANDLE, std::uint64_t>> excused_sessions_;
  // What the RM knew when the TPM restarted: its resident objects and sessions may be phantoms since.
  std::set<rm::ObjectId> stale_objects_;
  std::set<TPM2_HANDLE> stale_sessions_;
};

}  // namespace tpmrmd::testing
