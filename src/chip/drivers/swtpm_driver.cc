#include "chip/drivers/swtpm_driver.h"

#include <limits.h>
#include <stdlib.h>

#include <cerrno>

#include "chip/drivers/stream_io.h"

namespace tpmrmd::chip {
namespace {

// swtpm's own buffer limit (CMD_SET_BUFFERSIZE reports 4096 as the maximum).
constexpr std::size_t kMaxResponse = 4096;

Result<UniqueFd> connect(const SwtpmEndpoint& e) {
  return e.kind == SwtpmEndpoint::Kind::kUnix ? connect_unix(e.path) : connect_tcp(e.host, e.port);
}

}  // namespace

Result<std::unique_ptr<SwtpmDriver>> SwtpmDriver::open(SwtpmDriverOptions options) {
  auto fd = connect(options.data);
  if (!fd) return make_error(fd.error().code, "swtpm data channel: " + fd.error().message);
  return std::unique_ptr<SwtpmDriver>(new SwtpmDriver(std::move(options), std::move(*fd)));
}

SwtpmDriver::SwtpmDriver(SwtpmDriverOptions options, UniqueFd data)
    : options_(std::move(options)), data_(std::move(data)) {
  if (options_.control) control_.emplace(*options_.control);
}

std::string SwtpmDriver::description() const {
  std::string d = "swtpm " + options_.data.to_string();
  if (options_.control) d += " (control " + options_.control->to_string() + ")";
  return d;
}

std::string SwtpmDriver::identity() const {
  if (options_.data.kind == SwtpmEndpoint::Kind::kUnix) {
    char real[PATH_MAX];
    if (::realpath(options_.data.path.c_str(), real)) return std::string("swtpm:unix:") + real;
  }
  return "swtpm:" + options_.data.to_string();
}

Error SwtpmDriver::broken(const Error& cause) {
  alive_ = false;
  data_.reset();
  return make_error(cause.code == ETIME ? ETIME : EPIPE, "swtpm connection lost: " + cause.message);
}

Result<void> SwtpmDriver::power_on() {
  if (!control_) return make_error(EOPNOTSUPP, "swtpm without a control channel cannot be initialised");
  return control_->init();
}

Result<void> SwtpmDriver::set_locality(std::uint8_t locality) {
  if (!control_) return make_error(EOPNOTSUPP, "swtpm without a control channel has no localities");
  return control_->set_locality(locality);
}

Result<Bytes> SwtpmDriver::exchange(ByteSpan command, std::chrono::milliseconds timeout) {
  if (!alive_) return make_error(EPIPE, "swtpm connection is closed");
  late_response_.reset();
  if (auto w = write_all(data_.get(), command); !w) return broken(w.error());
  auto response = read_tpm_response(data_.get(), Clock::now() + timeout, kMaxResponse);
  if (response) return response;
  if (response.error().code != ETIME) return broken(response.error());

  // Deadline: ask swtpm to cancel, then drain the response it still owes us so the next command does not
  // read it. Without a control channel, or if the response never comes, the stream is out of step for good.
  if (!control_) return broken(make_error(ETIME, "command timed out and swtpm has no control channel to cancel"));
  auto cancelled = control_->cancel();
  auto late = read_tpm_response(data_.get(), Clock::now() + options_.cancel_grace, kMaxResponse);
  if (!late) return broken(make_error(ETIME, "no response within the grace period after cancel"));
  late_response_ = std::move(*late);
  return make_error(ETIME, std::string("command exceeded its ") + std::to_string(timeout.count()) +
                               " ms deadline and was cancelled" + (cancelled ? "" : " (cancel failed)"));
}

}  // namespace tpmrmd::chip
