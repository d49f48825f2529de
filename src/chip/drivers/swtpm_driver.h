// Driver for swtpm's socket interface: raw TPM commands on the data channel (one write per command: swtpm
// executes whatever it has once 10 bytes arrived), the control channel for init, cancel and locality.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "chip/driver.h"
#include "chip/drivers/swtpm_control.h"
#include "util/unique_fd.h"

namespace tpmrmd::chip {

struct SwtpmDriverOptions {
  SwtpmEndpoint data;
  std::optional<SwtpmEndpoint> control;  // none: no init/cancel/locality
  // After a cancel, how long to wait for swtpm's late response before declaring the connection unusable.
  std::chrono::milliseconds cancel_grace{10000};
};

class SwtpmDriver final : public Driver {
 public:
  // Connects the data channel; the control channel is connected on first use.
  static Result<std::unique_ptr<SwtpmDriver>> open(SwtpmDriverOptions options);

  std::string description() const override;
  std::string identity() const override;
  Result<void> power_on() override;
  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override;
  Result<void> set_locality(std::uint8_t locality) override;
  std::optional<Bytes> take_late_response() override { return std::exchange(late_response_, std::nullopt); }
  bool alive() const override { return alive_; }

 private:
  SwtpmDriver(SwtpmDriverOptions options, UniqueFd data);
  Error broken(const Error& cause);

  SwtpmDriverOptions options_;
  UniqueFd data_;
  std::optional<SwtpmControl> control_;
  std::optional<Bytes> late_response_;
  bool alive_ = true;
};

}  // namespace tpmrmd::chip
