#include "chip/drivers/tcti_driver.h"

#include <tss2/tss2_tctildr.h>

#include <cerrno>

#include "tpm/rc_names.h"

namespace tpmrmd::chip {
namespace {

constexpr std::size_t kMaxResponse = 4096;

bool is_timeout(TSS2_RC rc) { return (rc & 0xFFFF) == TSS2_BASE_RC_TRY_AGAIN; }

}  // namespace

Result<std::unique_ptr<TctiDriver>> TctiDriver::open(TctiDriverOptions options) {
  if (options.config.empty()) return make_error(EINVAL, "empty TCTI config in 'tcti:'");
  TSS2_TCTI_CONTEXT* context = nullptr;
  if (TSS2_RC rc = Tss2_TctiLdr_Initialize(options.config.c_str(), &context); rc != TSS2_RC_SUCCESS) {
    return make_error(ENODEV, "cannot load or connect TCTI '" + options.config + "': " + tpm::rc_name(rc));
  }
  return std::unique_ptr<TctiDriver>(new TctiDriver(std::move(options), context));
}

TctiDriver::~TctiDriver() { Tss2_TctiLdr_Finalize(&context_); }

Error TctiDriver::broken(int code, const std::string& what) {
  alive_ = false;
  return make_error(code, "TCTI " + options_.config + ": " + what);
}

Result<Bytes> TctiDriver::receive(std::chrono::milliseconds timeout) {
  Bytes response(kMaxResponse);
  std::size_t size = response.size();
  TSS2_RC rc = Tss2_Tcti_Receive(context_, &size, response.data(), static_cast<std::int32_t>(timeout.count()));
  if (is_timeout(rc)) return make_error(ETIME, "no response before the deadline");
  if (rc != TSS2_RC_SUCCESS) return broken(EPIPE, "receive failed: " + tpm::rc_name(rc));
  response.resize(size);
  return response;
}

Result<Bytes> TctiDriver::exchange(ByteSpan command, std::chrono::milliseconds timeout) {
  if (!alive_) return make_error(EPIPE, "TCTI " + options_.config + " is no longer usable");
  late_response_.reset();
  if (TSS2_RC rc = Tss2_Tcti_Transmit(context_, command.size(), command.data()); rc != TSS2_RC_SUCCESS) {
    return broken(EPIPE, "transmit failed: " + tpm::rc_name(rc));
  }
  auto response = receive(timeout);
  if (response || response.error().code != ETIME) return response;

  // Deadline. Most TCTIs cannot cancel (Tss2_Tcti_Cancel is often unimplemented); either way the TPM owes
  // one response, which must be drained before the next command or the stream is out of step for good.
  TSS2_RC cancel = Tss2_Tcti_Cancel(context_);
  auto late = receive(options_.cancel_grace);
  if (!late) return broken(ETIME, "no response within the grace period after the deadline");
  late_response_ = std::move(*late);
  return make_error(ETIME, "command exceeded its " + std::to_string(timeout.count()) + " ms deadline" +
                               (cancel == TSS2_RC_SUCCESS ? " and was cancelled" : " (the TCTI cannot cancel)"));
}

Result<void> TctiDriver::set_locality(std::uint8_t locality) {
  TSS2_RC rc = Tss2_Tcti_SetLocality(context_, locality);
  if (rc == TSS2_RC_SUCCESS) return {};
  if ((rc & 0xFFFF) == TSS2_BASE_RC_NOT_IMPLEMENTED) return make_error(EOPNOTSUPP, "TCTI has no localities");
  return make_error(EIO, "TCTI set_locality(" + std::to_string(locality) + ") failed: " + tpm::rc_name(rc));
}

}  // namespace tpmrmd::chip
