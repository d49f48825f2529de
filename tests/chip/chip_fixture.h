// A private swtpm and a started Chip on it, for the tis tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "support/swtpm_process.h"
#include "chip/chip.h"
#include "chip/driver_factory.h"

namespace tpmrmd::testing {

inline std::unique_ptr<chip::Driver> open_driver_or_fail(const std::string& spec) {
  auto d = chip::make_driver(spec);
  EXPECT_TRUE(d.ok()) << (d ? "" : describe(d.error()));
  return d ? std::move(*d) : nullptr;
}

class SwtpmTest : public ::testing::Test {
 protected:
  void start_swtpm(SwtpmOptions options = {}) {
    swtpm_ = std::make_unique<SwtpmProcess>(options);
    auto r = swtpm_->start();
    ASSERT_TRUE(r.ok()) << describe(r.error());
  }
  std::unique_ptr<SwtpmProcess> swtpm_;
};

}  // namespace tpmrmd::testing
