#include "rm_fixture.h"

#include <tss2/tss2_mu.h>

#include "tpm/header.h"

namespace tpmrmd::testing {

Bytes name_of(ByteSpan response) {
  TPM2B_PUBLIC pub{};
  TPM2B_NAME name{};
  size_t off = tpm::kHeaderSize;
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(response.data(), response.size(), &off, &pub) != 0 ||
      Tss2_MU_TPM2B_NAME_Unmarshal(response.data(), response.size(), &off, &name) != 0) {
    ADD_FAILURE() << "malformed ReadPublic response " << to_hex(response);
    return {};
  }
  return Bytes(name.name, name.name + name.size);
}

Result<Bytes> FaultPort::transmit(ByteSpan command) {
  {
    std::lock_guard lock(mutex_);
    auto header = tpm::parse_command_header(command);
    if (remaining_ > 0 && header && header->code == code_) {
      --remaining_;
      ++injected_;
      return tpm::make_rc_response(rc_);
    }
  }
  return inner_.transmit(command);
}

void FaultPort::inject(TPM2_CC code, TPM2_RC rc, int times) {
  std::lock_guard lock(mutex_);
  code_ = code;
  rc_ = rc;
  remaining_ = times;
}

int FaultPort::injected() const {
  std::lock_guard lock(mutex_);
  return injected_;
}

void SwtpmRmTest::SetUp() {
  auto started = swtpm_.start();
  ASSERT_TRUE(started) << describe(started.error());
  chip_ = start_chip(swtpm_.spec());
  ASSERT_TRUE(chip_);
  port_ = std::make_unique<daemon::ChipPort>(*chip_);
  faults_ = std::make_unique<FaultPort>(*port_);
  rm_ = std::make_unique<rm::ResourceManager>(*port_);
}

void SwtpmRmTest::TearDown() {
  rm_.reset();
  if (chip_) chip_->unregister(chip::ShutdownMode::kNone);
}

void SwtpmRmTest::reset_rm(rm::RmOptions options, bool faults) {
  rm_.reset();
  rm_ = std::make_unique<rm::ResourceManager>(faults ? static_cast<rm::TpmPort&>(*faults_) : *port_, options);
}

rm::ConnectionId SwtpmRmTest::open() {
  auto id = rm_->open(rm::ClientInfo{0, 0, 0});
  EXPECT_TRUE(id);
  return id ? *id : 0;
}

Bytes SwtpmRmTest::run(rm::ConnectionId id, const Bytes& command) {
  auto r = rm_->execute(id, command);
  EXPECT_TRUE(r) << describe(r.error()) << " for " << to_hex(command);
  return r ? *r : Bytes{};
}

Bytes SwtpmRmTest::ok(rm::ConnectionId id, const Bytes& command) {
  Bytes r = run(id, command);
  EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << "command " << to_hex(command) << " -> " << to_hex(r);
  return r;
}

TPM2_HANDLE SwtpmRmTest::make_key(rm::ConnectionId id, std::uint8_t unique) {
  return handle_of(ok(id, create_primary(TPM2_RH_OWNER, unique)));
}

TPM2_HANDLE SwtpmRmTest::make_policy_session(rm::ConnectionId id) {
  return handle_of(ok(id, start_auth_session(TPM2_SE_POLICY)));
}

std::vector<TPM2_HANDLE> SwtpmRmTest::raw_handles(TPM2_HANDLE range) {
  auto r = chip_->transmit(get_capability(TPM2_CAP_HANDLES, range, 254));
  EXPECT_TRUE(r);
  if (!r) return {};
  auto list = parse_handles(*r);
  EXPECT_TRUE(list) << to_hex(*r);
  return list ? list->handles : std::vector<TPM2_HANDLE>{};
}

}  // namespace tpmrmd::testing

// --- the one place that knows how the chip layer builds a driver from a spec string ---
#include "chip/driver_factory.h"

namespace tpmrmd::testing {

std::unique_ptr<chip::Chip> start_chip(const std::string& spec) {
  auto driver = chip::make_driver(spec);
  EXPECT_TRUE(driver) << describe(driver.error());
  if (!driver) return nullptr;
  auto chip = std::make_unique<chip::Chip>(std::move(*driver));
  auto started = chip->startup();
  EXPECT_TRUE(started) << describe(started.error());
  if (!started) return nullptr;
  return chip;
}

}  // namespace tpmrmd::testing
