// Fault-case labels (F-Cnn) are defined in docs/registers.md.
#include "chip/registers/crb_driver.h"

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
using namespace crb_reg;

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<std::unique_ptr<CrbDriver>> CrbDriver::open(std::shared_ptr<RegisterBus> bus, CrbOptions options) {
  if (bus->size() < kDataBuffer) return make_error(EINVAL, "register window too small for CRB");
  std::unique_ptr<CrbDriver> d(new CrbDriver(std::move(bus), options));
  d->exchange_deadline_ = d->now() + 10 * options.timeout_c;
  const std::uint32_t id = d->bus_->read32(kInterfaceId);
  if (id == 0xFFFFFFFF || (id & 0xF) != 1) {
    return make_error(ENODEV, "no CRB interface at " + d->bus_->description() + " (INTF_ID " + hex(id) + ")");
  }
  const std::uint32_t vid_did = d->bus_->read32(kInterfaceIdHigh);
  d->vid_ = static_cast<std::uint16_t>(vid_did);
  d->did_ = static_cast<std::uint16_t>(vid_did >> 16);
  if (auto r = d->request_locality(); !r) return make_error(r.error().code, "CRB probe: " + r.error().message);
  // Some parts lose the buffer registers while idle, so read them only after cmdReady.
  auto mapped = d->control_request(kReqCmdReady, "cmdReady");
  if (mapped) mapped = d->map_buffers();
  (void)d->control_request(kReqGoIdle, "goIdle");
  (void)d->relinquish_locality();
  if (!mapped) return make_error(mapped.error().code, "CRB probe: " + mapped.error().message);
  spdlog::info("event=crb-probed bus=\"{}\" cmd_offset={} cmd_size={} rsp_offset={} rsp_size={}",
               d->bus_->description(), hex(d->cmd_offset_), d->cmd_size_, hex(d->rsp_offset_), d->rsp_size_);
  return d;
}

Result<void> CrbDriver::map_buffers() {
  const std::uint64_t base = bus_->physical_base();
  const std::uint64_t cmd_pa = std::uint64_t{bus_->read32(kCmdPaHigh)} << 32 | bus_->read32(kCmdPaLow);
  std::uint32_t cmd_size = bus_->read32(kCmdSize);
  const std::uint64_t rsp_pa = std::uint64_t{bus_->read32(kRspPa + 4)} << 32 | bus_->read32(kRspPa);
  std::uint32_t rsp_size = bus_->read32(kRspSize);
  // Trust nothing the firmware reports: buffers must lie in the window we mapped.
  auto place = [&](const char* what, std::uint64_t pa, std::uint32_t& size, std::uint32_t& offset) -> Result<void> {
    if (pa < base + kDataBuffer || pa >= base + bus_->size()) {
      return make_error(EINVAL, std::string(what) + " buffer at " + hex(pa) + " lies outside the mapped window " +
                                    hex(base + kDataBuffer) + ".." + hex(base + bus_->size()));
    }
    offset = static_cast<std::uint32_t>(pa - base);
    const std::uint32_t room = bus_->size() - offset;
    if (size > room) {
      spdlog::warn("event=crb-buffer-clamped buffer={} size={} clamped_to={} cause=\"firmware bug\"", what, size,
                   room);
      ++counters_.clamped_sizes;
      size = room;
    }
    if (size < 10) return make_error(EINVAL, std::string(what) + " buffer of " + std::to_string(size) + " bytes");
    return {};
  };
  const std::uint32_t cmd_reported = cmd_size, rsp_reported = rsp_size;
  if (auto r = place("command", cmd_pa, cmd_size, cmd_offset_); !r) return r;
  if (auto r = place("response", rsp_pa, rsp_size, rsp_offset_); !r) return r;
  if (cmd_pa == rsp_pa && cmd_reported != rsp_reported) {
    return make_error(EINVAL, "command and response buffers overlap at " + hex(cmd_pa) + " with different sizes (" +
                                  std::to_string(cmd_reported) + " and " + std::to_string(rsp_reported) + ")");
  }
  cmd_size_ = cmd_size;
  rsp_size_ = rsp_size;
  return {};
}

std::string CrbDriver::description() const {
  return "CRB (VID " + hex(vid_) + " DID " + hex(did_) + ") on " + bus_->description();
}

std::string CrbDriver::identity() const { return "crb:" + bus_->identity(); }

Result<void> CrbDriver::wait_clear(std::uint32_t offset, std::uint32_t bit, const char* what) {
  const auto deadline = std::min(now() + options_.timeout_c, exchange_deadline_);
  auto backoff = this->backoff(100us);
  while (bus_->read32(offset) & bit) {
    if (now() >= deadline) {
      return make_error(ETIME, std::string(what) + " did not complete within " +
                                   std::to_string(options_.timeout_c.count()) + " ms");
    }
    backoff.wait();
  }
  return {};
}

Result<void> CrbDriver::request_locality() {
  constexpr std::uint32_t kHeld = kLocStateValid | kLocStateAssigned;
  bus_->write32(kLocCtrl, kLocCtrlRequest);
  const auto deadline = now() + options_.timeout_c;
  auto backoff = this->backoff(100us);
  while ((bus_->read32(kLocState) & kHeld) != kHeld) {
    if (now() >= deadline) {
      return make_error(ETIME, "locality 0 not assigned within " + std::to_string(options_.timeout_c.count()) +
                                   " ms (LOC_STATE " + hex(bus_->read32(kLocState)) + ")");
    }
    backoff.wait();
  }
  return {};
}

Result<void> CrbDriver::relinquish_locality() {
  bus_->write32(kLocCtrl, kLocCtrlRelinquish);
  const auto deadline = now() + options_.timeout_c;
  auto backoff = this->backoff(100us);
  for (;;) {
    const std::uint32_t s = bus_->read32(kLocState);
    if ((s & kLocStateValid) && !(s & kLocStateAssigned)) return {};
    if (now() >= deadline) {
      return make_error(ETIME, "locality 0 still assigned " + std::to_string(options_.timeout_c.count()) +
                                   " ms after relinquish (LOC_STATE " + hex(s) + ")");
    }
    backoff.wait();
  }
}

Result<void> CrbDriver::control_request(std::uint32_t bit, const char* what) {
  bus_->write32(kCtrlReq, bit);
  return wait_clear(kCtrlReq, bit, what);
}

Result<Bytes> CrbDriver::read_response() {
  if (bus_->read32(kCtrlSts) & kStsError) {
    failed_ = true;  // fatal until the device is reset (F-C07)
    return make_error(EIO, "CRB CTRL_STS.error is set: the TPM reported a fatal error");
  }
  // The header as two 32-bit reads (the bus has no 64-bit access). The response stays in the buffer until the next
  // command, so a bad header is worth one re-read before failing.
  std::uint8_t header[8];
  std::uint32_t expected = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bus_->read_block(rsp_offset_, header);
    expected = tpm::load_u32(header, 2);
    if (expected >= 10 && expected <= rsp_size_) break;
    if (attempt == 0) ++counters_.header_rereads;
    else
      return make_error(EIO, "response header announces " + std::to_string(expected) + " bytes (10.." +
                                 std::to_string(rsp_size_) + ")");
  }
  Bytes out(expected);
  std::copy(std::begin(header), std::end(header), out.begin());
  bus_->read_block(rsp_offset_ + 8, std::span<std::uint8_t>(out).subspan(8));
  return out;
}

Result<void> CrbDriver::cancel() {
  ++counters_.cancels;
  bus_->write32(kCtrlCancel, 1);
  auto done = wait_clear(kCtrlStart, 1, "START after cancel");
  bus_->write32(kCtrlCancel, 0);
  return done;
}

Result<Bytes> CrbDriver::run(ByteSpan command, std::chrono::milliseconds timeout) {
  if (command.size() > cmd_size_) {
    return make_error(E2BIG, "command of " + std::to_string(command.size()) + " bytes exceeds the CRB buffer of " +
                                 std::to_string(cmd_size_));
  }
  if (bus_->read32(kCtrlStart) & 1) {  // a command we gave up on is still running: stop it first
    if (auto quiet = cancel(); !quiet) return make_error(ETIME, "device still busy with an earlier command: " + quiet.error().message);
  }
  bus_->write32(kCtrlCancel, 0);  // a stale CANCEL=1 would make this command look cancelled at once
  bus_->write_block(cmd_offset_, command);
  bus_->write32(kCtrlStart, 1);
  const auto deadline = std::min(now() + timeout, exchange_deadline_);
  auto backoff = this->backoff(1ms);
  while (bus_->read32(kCtrlStart) & 1) {
    if (bus_->read32(kCtrlCancel) & 1) {
      (void)cancel();  // make sure the command is over, so its answer cannot be read as the next one's
      return make_error(ECANCELED, "TPM reported the command cancelled (CTRL_CANCEL)");
    }
    if (!bus_->alive()) return make_error(EPIPE, "CRB device lost during execution (" + bus_->description() + ")");
    if (now() >= deadline) {
      if (!(bus_->read32(kCtrlStart) & 1)) break;
      (void)cancel();
      return make_error(ETIME, "command exceeded its " + std::to_string(timeout.count()) +
                                   " ms deadline and was cancelled (CTRL_CANCEL)");
    }
    backoff.wait();
  }
  return read_response();
}

Result<Bytes> CrbDriver::exchange(ByteSpan command, std::chrono::milliseconds timeout) {
  late_response_.reset();
  if (command.size() < 10) return make_error(EINVAL, "command of " + std::to_string(command.size()) + " bytes");
  if (!alive()) {
    return make_error(EPIPE, failed_ ? "CRB device failed (CTRL_STS.error)" : "CRB device lost (" + bus_->description() + ")");
  }
  exchange_deadline_ = now() + timeout + options_.transport_allowance;
  if (auto r = request_locality(); !r) return r.error();
  Result<Bytes> response = make_error(EIO, "unreachable");
  if (auto ready = control_request(kReqCmdReady, "cmdReady"); !ready) {
    response = ready.error();
  } else {
    response = run(command, timeout);
  }
  // goIdle and relinquish on every path; if either fails after a good response, the caller gets ETIME and the
  // response becomes the late response, so the Chip can still flush what it created.
  auto idle = control_request(kReqGoIdle, "goIdle");
  auto released = relinquish_locality();
  if (response && (!idle || !released)) {
    late_response_ = std::move(*response);
    return make_error(ETIME, !idle ? idle.error().message : released.error().message);
  }
  if (!response && !bus_->alive()) {
    return make_error(EPIPE, "CRB device lost (" + bus_->description() + "): " + response.error().message);
  }
  return response;
}

}  // namespace tpmrmd::chip
