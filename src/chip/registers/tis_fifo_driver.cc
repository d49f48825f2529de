// Pitfall labels (P-n) are defined in docs/registers.md.
#include "chip/registers/tis_fifo_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "chip/registers/poll_backoff.h"
#include "tpm/endian.h"

namespace tpmrmd::chip {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace tis_reg;

// Internal code for "the status read as invalid": the locality is gone, so neither a retry nor waiting helps.
// Leaves the driver as EIO (P-4).
constexpr int kLocalityLost = ENXIO;

std::string hex(std::uint32_t v, int width = 2) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
  return buf;
}

// The single retry table (P-1): an Expect mismatch (EIO) and, on devices flagged for it, an stsValid timeout
// (EAGAIN) make the send start over; nothing else does.
bool send_retryable(int code) { return code == EIO || code == EAGAIN; }

}  // namespace

Result<std::unique_ptr<TisFifoDriver>> TisFifoDriver::open(std::shared_ptr<RegisterBus> bus, TisFifoOptions options) {
  if (options.locality > 4) return make_error(EINVAL, "TIS locality " + std::to_string(options.locality) + " (0..4)");
  if (bus->size() < kWindowSize && bus->size() < (options.locality + 1u) * kLocalityWindow) {
    return make_error(EINVAL, "register window of " + hex(bus->size()) + " bytes is too small for TIS");
  }
  std::unique_ptr<TisFifoDriver> d(new TisFifoDriver(std::move(bus), options));
  // Startup: ACCESS(0).VALID within A, or there is no usable TPM behind the window.
  const auto deadline = d->now() + options.timeout_a;
  auto backoff = d->backoff(1ms);
  for (;;) {
    const std::uint8_t access = d->bus_->read8(kAccess);
    if (access != 0xFF && (access & kAccessValid)) break;
    if (d->now() >= deadline) {
      return make_error(ENODEV, "no TIS TPM at " + d->bus_->description() + ": ACCESS reads " + hex(access) +
                                    ", VALID not set within " + std::to_string(options.timeout_a.count()) + " ms");
    }
    backoff.wait();
  }
  const std::uint32_t did_vid = d->bus_->read32(kDidVid);
  d->vid_ = static_cast<std::uint16_t>(did_vid);
  d->did_ = static_cast<std::uint16_t>(did_vid >> 16);
  d->rid_ = d->bus_->read8(kRid);
  if (!d->options_.status_valid_retry) d->options_.status_valid_retry = d->vid_ == kVidInfineon;
  spdlog::info("event=tis-probed bus=\"{}\" vid={} did={} rid={}", d->bus_->description(), hex(d->vid_, 4),
               hex(d->did_, 4), hex(d->rid_));
  return d;
}

TisFifoDriver::TisFifoDriver(std::shared_ptr<RegisterBus> bus, TisFifoOptions options)
    : bus_(std::move(bus)), options_(options) {}

std::string TisFifoDriver::description() const {
  return "TIS FIFO (VID " + hex(vid_, 4) + " DID " + hex(did_, 4) + ") locality " +
         std::to_string(options_.locality) + " on " + bus_->description();
}

std::string TisFifoDriver::identity() const { return "tis:" + bus_->identity(); }

Result<void> TisFifoDriver::set_locality(std::uint8_t locality) {
  if (locality > 4) return make_error(EINVAL, "TIS locality " + std::to_string(locality) + " (0..4)");
  // As open() checks: a locality past the window would read all-ones and look like a device that never grants.
  if (bus_->size() < (locality + 1u) * kLocalityWindow) {
    return make_error(EINVAL, "TIS locality " + std::to_string(locality) + " lies outside the register window of " +
                                  hex(bus_->size()) + " bytes");
  }
  options_.locality = locality;
  return {};
}

Result<std::uint8_t> TisFifoDriver::status() {
  const std::uint8_t s = bus_->read8(reg(kSts));
  if (s & kStsMustBeZero) {
    ++counters_.invalid_status;
    const std::uint8_t access = bus_->read8(reg(kAccess));
    return make_error(kLocalityLost, "invalid TPM_STS " + hex(s) + " (ACCESS " + hex(access) +
                                         "): locality " + std::to_string(options_.locality) + " lost");
  }
  return s;
}

Result<std::uint8_t> TisFifoDriver::wait_status(std::uint8_t mask, std::uint8_t value,
                                                std::chrono::milliseconds timeout, int timeout_code,
                                                const char* what) {
  const auto deadline = std::min(now() + timeout, exchange_deadline_);
  auto backoff = this->backoff(500us);
  for (;;) {
    auto s = status();
    if (!s) return s;
    if ((*s & mask) == value) return s;
    if (now() >= deadline) {
      return make_error(timeout_code, std::string(what) + " not reached within " + std::to_string(timeout.count()) +
                                          " ms (TPM_STS " + hex(*s) + ")");
    }
    backoff.wait();
  }
}

Result<std::uint16_t> TisFifoDriver::wait_burst() {
  const auto deadline = std::min(now() + options_.burst_timeout, exchange_deadline_);
  auto backoff = this->backoff(500us);
  for (;;) {
    const std::uint32_t sts = bus_->read32(reg(kSts));
    if (sts & kStsMustBeZero) {
      ++counters_.invalid_status;
      return make_error(kLocalityLost, "invalid TPM_STS " + hex(sts, 8) + ": locality lost");
    }
    const auto burst = static_cast<std::uint16_t>(sts >> 8);
    if (burst != 0) return burst;
    if (now() >= deadline) {  // P-3: a device timeout, not EBUSY
      return make_error(ETIME, "burstCount stayed 0 for " + std::to_string(options_.burst_timeout.count()) + " ms");
    }
    backoff.wait();
  }
}

Result<void> TisFifoDriver::request_locality() {
  auto held = [&] { return (bus_->read8(reg(kAccess)) & 0xA2) == (kAccessValid | kAccessActive); };
  if (held()) return {};
  bus_->write8(reg(kAccess), kAccessRequestUse);
  const auto deadline = now() + options_.timeout_a;
  auto backoff = this->backoff(1ms);
  while (!held()) {
    if (!bus_->alive()) return make_error(EPIPE, "TIS device lost (" + bus_->description() + ")");
    if (now() >= deadline) {
      return make_error(EPIPE, "locality " + std::to_string(options_.locality) + " not granted within " +
                                   std::to_string(options_.timeout_a.count()) + " ms (ACCESS " +
                                   hex(bus_->read8(reg(kAccess))) + ")");
    }
    backoff.wait();
  }
  return {};
}

void TisFifoDriver::relinquish_locality() { bus_->write8(reg(kAccess), kAccessActive); }

Result<void> TisFifoDriver::send_data(ByteSpan command) {
  auto s = status();
  if (!s) return s.error();
  if (!(*s & kStsCommandReady)) {
    bus_->write8(reg(kSts), kStsCommandReady);
    auto ready = wait_status(kStsCommandReady, kStsCommandReady, options_.timeout_b, ETIME, "commandReady");
    if (!ready) return ready.error();
  }
  const int valid_timeout_code = options_.status_valid_retry.value_or(false) ? EAGAIN : ETIME;
  const std::size_t len = command.size();
  std::size_t sent = 0;
  while (sent < len - 1) {
    auto burst = wait_burst();
    if (!burst) return burst.error();
    const std::size_t n = std::min<std::size_t>(*burst, len - 1 - sent);
    bus_->write_fifo(reg(kDataFifo), command.subspan(sent, n));
    sent += n;
    auto valid = wait_status(kStsValid, kStsValid, options_.timeout_c, valid_timeout_code, "stsValid after a write");
    if (!valid) return valid.error();
    if (!options_.ignore_expect && !(*valid & kStsExpect)) {
      return make_error(EIO, "Expect dropped after " + std::to_string(sent) + " of " + std::to_string(len) + " bytes");
    }
  }
  auto burst = wait_burst();
  if (!burst) return burst.error();
  bus_->write8(reg(kDataFifo), command[len - 1]);
  auto valid = wait_status(kStsValid, kStsValid, options_.timeout_c, valid_timeout_code, "stsValid after the last byte");
  if (!valid) return valid.error();
  if (!options_.ignore_expect && (*valid & kStsExpect)) {
    return make_error(EIO, "Expect still set after all " + std::to_string(len) + " command bytes");
  }
  return {};
}

Result<void> TisFifoDriver::send(ByteSpan command) {
  Error last;
  for (int attempt = 1;; ++attempt) {
    auto r = send_data(command);
    if (r) return r;
    last = r.error();
    bus_->write8(reg(kSts), kStsCommandReady);  // aborts the partial command
    if (!send_retryable(last.code) || attempt >= options_.send_attempts || now() >= exchange_deadline_) break;
    ++counters_.send_retries;
    PollClock::sleep_for(options_.clock.get(), 100us);
  }
  if (last.code == EAGAIN) last.code = ETIME;  // stsValid never came, even after the retries
  return make_error(last.code, "send: " + last.message);
}

Result<void> TisFifoDriver::wait_complete(Clock::time_point deadline, std::chrono::milliseconds timeout) {
  auto backoff = this->backoff(1ms);
  for (;;) {
    auto s = status();
    if (!s) return s.error();
    if ((*s & (kStsValid | kStsDataAvail)) == (kStsValid | kStsDataAvail)) return {};
    // P-5: only the vendor rules, only when asked for, only for their VIDs; the default "exactly 0x40" rule is
    // not applied because a command counts as cancelled only after our own cancel.
    if (options_.vendor_cancel_quirks &&
        ((vid_ == kVidWinbond && (*s == 0x80 || *s == 0xC0)) || (vid_ == kVidStm && *s == 0xC0))) {
      return make_error(ECANCELED, "TPM reported the command cancelled (TPM_STS " + hex(*s) + ")");
    }
    if (!bus_->alive()) return make_error(EPIPE, "TIS device lost during execution (" + bus_->description() + ")");
    if (now() >= deadline) {
      s = status();
      if (s && (*s & 0x90) == 0x90) return {};
      ++counters_.cancels;
      return make_error(ETIME, "command exceeded its " + std::to_string(timeout.count()) + " ms deadline and was "
                                                                                         "cancelled (commandReady)");
    }
    backoff.wait();
  }
}

Result<void> TisFifoDriver::read_chunk(Bytes& out, std::size_t target) {
  while (out.size() < target) {
    auto avail = wait_status(kStsValid | kStsDataAvail, kStsValid | kStsDataAvail, options_.timeout_c, ETIME,
                             "dataAvail");
    if (!avail) {
      return make_error(avail.error().code, "response ended after " + std::to_string(out.size()) + " of " +
                                                std::to_string(target) + " bytes: " + avail.error().message);
    }
    auto burst = wait_burst();
    if (!burst) return burst.error();
    const std::size_t n = std::min<std::size_t>(*burst, target - out.size());
    const std::size_t at = out.size();
    out.resize(at + n);
    bus_->read_fifo(reg(kDataFifo), std::span<std::uint8_t>(out).subspan(at, n));
  }
  return {};
}

Result<Bytes> TisFifoDriver::recv_data() {
  Bytes out;
  out.reserve(256);
  if (auto r = read_chunk(out, 10); !r) return r.error();
  const std::uint32_t expected = tpm::load_u32(out, 2);
  if (expected < 10 || expected > options_.max_response) {
    return make_error(EIO, "response header announces " + std::to_string(expected) + " bytes (10.." +
                               std::to_string(options_.max_response) + ")");
  }
  if (auto r = read_chunk(out, expected); !r) return r.error();
  auto after = wait_status(kStsValid, kStsValid, options_.timeout_c, ETIME, "stsValid after the response");
  if (!after) return after.error();
  if (*after & kStsDataAvail) return make_error(EIO, "left over data after " + std::to_string(expected) + " bytes");
  return out;
}

Result<Bytes> TisFifoDriver::receive() {
  Error last;
  for (int attempt = 1;; ++attempt) {
    auto r = recv_data();
    if (r) return r;
    last = r.error();
    if (last.code != EIO || attempt >= options_.receive_attempts || now() >= exchange_deadline_) break;
    ++counters_.receive_retries;
    bus_->write8(reg(kSts), kStsResponseRetry);
  }
  return make_error(last.code, "receive: " + last.message);
}

Result<Bytes> TisFifoDriver::exchange_held(ByteSpan command, std::chrono::milliseconds timeout) {
  if (auto r = send(command); !r) return r.error();
  bus_->write8(reg(kSts), kStsGo);
  if (auto r = wait_complete(std::min(now() + timeout, exchange_deadline_), timeout); !r) {
    bus_->write8(reg(kSts), kStsCommandReady);  // cancel: aborts the command and drops any response
    return r.error();
  }
  auto response = receive();
  bus_->write8(reg(kSts), kStsCommandReady);  // always: back to Ready, the response is consumed or abandoned
  return response;
}

Result<Bytes> TisFifoDriver::exchange(ByteSpan command, std::chrono::milliseconds timeout) {
  if (command.size() < 10) return make_error(EINVAL, "command of " + std::to_string(command.size()) + " bytes");
  if (!bus_->alive()) return make_error(EPIPE, "TIS device lost (" + bus_->description() + ")");
  exchange_deadline_ = now() + timeout + options_.transport_allowance;
  if (auto r = request_locality(); !r) return r.error();
  auto response = exchange_held(command, timeout);
  relinquish_locality();
  if (!response && response.error().code == kLocalityLost) {
    return make_error(EIO, response.error().message);
  }
  if (!response && !bus_->alive()) {
    return make_error(EPIPE, "TIS device lost (" + bus_->description() + "): " + response.error().message);
  }
  return response;
}

}  // namespace tpmrmd::chip
