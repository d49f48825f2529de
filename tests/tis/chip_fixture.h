// A private swtpm and a started Chip on it, for the tis tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "fixtures/swtpm_process.h"
#include "tis/chip.h"
#include "tis/driver_factory.h"

namespace tpmrmd::testing {

inline std::unique_ptr<tis::Driver> open_driver_or_fail(const std::string& spec) {
  auto d = tis::make_driver(spec);
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
