// A private swtpm behind an emulated TIS or CRB device, driven by our register drivers, for the registers suite.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "support/swtpm_process.h"
#include "chip/chip.h"
#include "chip/registers/crb_driver.h"
#include "chip/driver_factory.h"
#include "support/emulated_crb_device.h"
#include "support/emulated_tis_device.h"
#include "chip/registers/tis_fifo_driver.h"
#include "tpm/header.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {

using namespace std::chrono_literals;

class RegisterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    swtpm_ = std::make_unique<SwtpmProcess>();
    auto r = swtpm_->start();
    ASSERT_TRUE(r.ok()) << describe(r.error());
  }

  std::unique_ptr<chip::Driver> backend() {
    auto d = chip::make_driver(swtpm_->spec());
    EXPECT_TRUE(d.ok()) << (d ? "" : describe(d.error()));
    return d ? std::move(*d) : nullptr;
  }

  // Emulated TIS + our driver; keeps raw pointers for counters (valid while the chip holds the driver).
  std::shared_ptr<chip::EmulatedTisDevice> tis_device(chip::EmulatedTisOptions options = {}) {
    return std::make_shared<chip::EmulatedTisDevice>(backend(), options);
  }
  std::unique_ptr<chip::TisFifoDriver> tis_driver(std::shared_ptr<chip::RegisterBus> bus, chip::TisFifoOptions options = {}) {
    auto d = chip::TisFifoDriver::open(std::move(bus), options);
    EXPECT_TRUE(d.ok()) << (d ? "" : describe(d.error()));
    return d ? std::move(*d) : nullptr;
  }
  std::shared_ptr<chip::EmulatedCrbDevice> crb_device(chip::EmulatedCrbOptions options = {}) {
    return std::make_shared<chip::EmulatedCrbDevice>(backend(), options);
  }
  std::unique_ptr<chip::CrbDriver> crb_driver(std::shared_ptr<chip::RegisterBus> bus) {
    auto d = chip::CrbDriver::open(std::move(bus));
    EXPECT_TRUE(d.ok()) << (d ? "" : describe(d.error()));
    return d ? std::move(*d) : nullptr;
  }

  // Starts a chip on `driver`; fails the test if start-up fails.
  std::unique_ptr<chip::Chip> started_chip(std::unique_ptr<chip::Driver> driver) {
    auto chip = std::make_unique<chip::Chip>(std::move(driver));
    auto s = chip->startup();
    EXPECT_TRUE(s.ok()) << describe(s.error());
    return chip;
  }

  std::unique_ptr<SwtpmProcess> swtpm_;
};

// A successful GetRandom(n) through `chip`: rc 0 and n bytes.
inline void expect_get_random_works(chip::Chip& chip, std::uint16_t n = 16) {
  auto r = chip.transmit(get_random(n));
  ASSERT_TRUE(r.ok()) << describe(r.error());
  ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
  EXPECT_EQ(r->size(), 12u + n);
}

inline void expect_error(const Result<Bytes>& r, int code) {
  ASSERT_FALSE(r.ok()) << "expected errno " << code << ", got a response";
  EXPECT_EQ(r.error().code, code) << describe(r.error());
}

// Real TPM traffic: GetRandom, CreatePrimary, ContextSave/FlushContext/ContextLoad of the key, ReadPublic.
inline void run_real_traffic(chip::Chip& chip) {
  expect_get_random_works(chip, 32);
  auto primary = chip.transmit(create_primary());
  ASSERT_TRUE(primary.ok()) << describe(primary.error());
  ASSERT_EQ(rc_of(*primary), TPM2_RC_SUCCESS);
  const TPM2_HANDLE key = handle_of(*primary);
  auto saved = chip.transmit(context_save(key));
  ASSERT_TRUE(saved.ok());
  ASSERT_EQ(rc_of(*saved), TPM2_RC_SUCCESS);
  auto flushed = chip.transmit(flush_context(key));
  ASSERT_TRUE(flushed.ok());
  ASSERT_EQ(rc_of(*flushed), TPM2_RC_SUCCESS);
  auto loaded = chip.transmit(context_load(body_of(*saved)));
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(rc_of(*loaded), TPM2_RC_SUCCESS);
  const TPM2_HANDLE again = handle_of(*loaded);
  auto pub = chip.transmit(read_public(again));
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(rc_of(*pub), TPM2_RC_SUCCESS);
  EXPECT_GT(pub->size(), 100u);
  auto done = chip.transmit(flush_context(again));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(rc_of(*done), TPM2_RC_SUCCESS);
}

}  // namespace tpmrmd::testing
