// Driver over any tpm2-tss TCTI, loaded by tss2-tctildr from a config string such as "swtpm:host=H,port=P" or
// "device:/dev/tpm0". A fallback for transports we have no native driver for; the native drivers know their
// transport better (cancel, liveness), so prefer them where both exist.
#pragma once

#include <tss2/tss2_tcti.h>

#include <memory>
#include <optional>
#include <string>

#include "chip/driver.h"

namespace tpmrmd::chip {

struct TctiDriverOptions {
  std::string config;  // what Tss2_TctiLdr_Initialize takes: "NAME[:CONF]"
  // After a deadline, how long to wait for the TPM's late response before declaring the TCTI unusable.
  std::chrono::milliseconds cancel_grace{10000};
};

class TctiDriver final : public Driver {
 public:
  static Result<std::unique_ptr<TctiDriver>> open(TctiDriverOptions options);
  ~TctiDriver() override;
  TctiDriver(const TctiDriver&) = delete;
  TctiDriver& operator=(const TctiDriver&) = delete;

  std::string description() const override { return "tcti " + options_.config; }
  std::string identity() const override { return "tcti:" + options_.config; }
  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override;
  Result<void> set_locality(std::uint8_t locality) override;
  std::optional<Bytes> take_late_response() override { return std::exchange(late_response_, std::nullopt); }
  bool alive() const override { return alive_; }

 private:
  TctiDriver(TctiDriverOptions options, TSS2_TCTI_CONTEXT* context)
      : options_(std::move(options)), context_(context) {}
  // One Tss2_Tcti_Receive of a whole response within `timeout`; ETIME when it did not arrive.
  Result<Bytes> receive(std::chrono::milliseconds timeout);
  Error broken(int code, const std::string& what);

  TctiDriverOptions options_;
  TSS2_TCTI_CONTEXT* context_;  // owned; finalized in the destructor
  std::optional<Bytes> late_response_;
  bool alive_ = true;
};

}  // namespace tpmrmd::chip
