// A private swtpm behind a real Chip, and helpers for driving the RM with raw commands.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "support/swtpm_process.h"
#include "rm/resource_manager.h"
#include "daemon/chip_port.h"
#include "rm/tpm_port.h"
#include "chip/chip.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {

// The name in a ReadPublic response: what tests compare to tell one TPM object from another (a failure and an
// empty name if the response is not a ReadPublic success).
Bytes name_of(ByteSpan response);

// Builds the Chip for `spec` through the chip layer's driver factory and starts it up.
std::unique_ptr<chip::Chip> start_chip(const std::string& spec);

// Fault injection around a real port: the next command with a given code gets a synthesized rc instead of
// reaching the TPM (what a real TPM does only under conditions a test can't produce on cue).
class FaultPort final : public rm::TpmPort {
 public:
  explicit FaultPort(rm::TpmPort& inner) : inner_(inner) {}
  const tpm::TpmInfo& info() const override { return inner_.info(); }
  bool available() const override { return inner_.available(); }
  Result<Bytes> transmit(ByteSpan command) override;
  // The next `times` commands with code `code` are answered with `rc`.
  void inject(TPM2_CC code, TPM2_RC rc, int times = 1);
  int injected() const;

 private:
  rm::TpmPort& inner_;
  mutable std::mutex mutex_;
  TPM2_CC code_ = 0;
  TPM2_RC rc_ = 0;
  int remaining_ = 0;
  int injected_ = 0;
};

class SwtpmRmTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs `command` on `id`; fails the test on an errno error.
  Bytes run(rm::ConnectionId id, const Bytes& command);
  // Runs `command` and expects TPM_RC_SUCCESS.
  Bytes ok(rm::ConnectionId id, const Bytes& command);
  // CreatePrimary in the owner hierarchy; returns the virtual handle.
  TPM2_HANDLE make_key(rm::ConnectionId id, std::uint8_t unique = 0);
  TPM2_HANDLE make_policy_session(rm::ConnectionId id);
  // Handles of `range` as the TPM itself reports them (raw GetCapability on the chip, bypassing the RM).
  std::vector<TPM2_HANDLE> raw_handles(TPM2_HANDLE range);
  std::uint64_t chip_commands() const { return chip_->counters().commands; }
  rm::ConnectionId open();

  // Recreates the RM with other options (and optionally on the fault port).
  void reset_rm(rm::RmOptions options, bool faults = false);

  SwtpmProcess swtpm_;
  std::unique_ptr<chip::Chip> chip_;
  std::unique_ptr<daemon::ChipPort> port_;
  std::unique_ptr<FaultPort> faults_;
  std::unique_ptr<rm::ResourceManager> rm_;
};

}  // namespace tpmrmd::testing
