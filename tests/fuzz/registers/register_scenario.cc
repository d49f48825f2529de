#include "register_scenario.h"

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <initializer_list>

#include "chip/registers/crb_driver.h"
#include "chip/registers/tis_fifo_driver.h"
#include "fuzz_check.h"
#include "tpm/endian.h"

namespace tpmrmd::fuzz {
namespace {

using namespace std::chrono_literals;

// Short enough that a device that never answers costs few polls, long enough (in wall-clock time too) for the
// emulated devices in front of swtpm that the seeds are recorded from.
constexpr auto kDeviceTimeout = 5ms;

std::chrono::milliseconds exchange_timeout(std::uint8_t selector) {
  constexpr std::chrono::milliseconds kTimeouts[] = {20ms, 2ms, 200ms, 0ms};
  return kTimeouts[(selector >> 2) & 3];
}

// The exchange's command: truncated (bit 4) or, for CRB, padded past any buffer (bit 5).
Bytes exchange_command(std::uint8_t selector, bool oversize) {
  Bytes c = scenario_command(selector);
  if (selector & 0x10) c.resize(9);
  if (oversize) {
    c.resize(0x1000, 0);
    tpm::store_u32(c, 2, static_cast<std::uint32_t>(c.size()));
  }
  return c;
}

// A response as the Chip receives it: at least a header, and exactly as long as its header says.
void check_framing(const Bytes& r, std::size_t max, const char* what) {
  FUZZ_CHECK(r.size() >= 10 && r.size() <= max, "%s: response of %zu bytes (10..%zu)", what, r.size(), max);
  FUZZ_CHECK(tpm::load_u32(r, 2) == r.size(), "%s: header says %u bytes, the response has %zu", what,
             tpm::load_u32(r, 2), r.size());
}

void check_code(int code, std::initializer_list<int> allowed, const char* what) {
  if (std::find(allowed.begin(), allowed.end(), code) != allowed.end()) return;
  // Only a failing check spells the list out: the passing ones run several times per input.
  std::string list;
  for (int a : allowed) list += std::to_string(a) + " ";
  FUZZ_CHECK(false, "%s failed with errno %d (%s); the contract allows %s", what, code, std::strerror(code),
             list.c_str());
}

}  // namespace

Scenario Scenario::consume(FuzzedDataProvider& in) {
  Scenario s;
  for (auto& b : s.config) b = in.ConsumeIntegral<std::uint8_t>();
  return s;
}

Bytes Scenario::tail() const { return Bytes(config.rbegin(), config.rend()); }

std::uint32_t Scenario::window_size(std::uint32_t full) const {
  switch (config[1] & 3) {
    case 2: return full / 5 > 0x80 ? 0x1000 : 0x100;  // TIS: one locality; CRB: a buffer clamped small
    case 3: return full / 5 > 0x80 ? 0x800 : 0x7F;    // too small for the interface
    default: return full;
  }
}

Bytes scenario_command(std::uint8_t selector) {
  // Parsed once: every exchange of every input builds one.
  static const Bytes kCommands[] = {
      from_hex("80010000000c0000017b0010"),                      // GetRandom(16)
      from_hex("8001000000160000017a000000060000010000000001"),  // GetCapability(properties)
      from_hex("80010000000c0000017b0030"),                      // GetRandom(48)
      from_hex("80010000000a00000181"),                          // ReadClock
  };
  return kCommands[selector & 3];
}

std::string Outcome::describe() const {
  std::string s;
  for (int c : codes) s += std::to_string(c) + " ";
  return s;
}

Outcome run_tis(std::shared_ptr<chip::RegisterBus> bus, std::shared_ptr<chip::PollClock> clock, const Scenario& s) {
  using namespace chip;
  TisFifoOptions o;
  o.timeout_a = o.timeout_b = o.timeout_c = o.burst_timeout = o.transport_allowance = kDeviceTimeout;
  o.clock = std::move(clock);
  o.vendor_cancel_quirks = s.config[0] & 1;
  o.ignore_expect = s.config[0] & 2;
  if (const int r = (s.config[0] >> 2) & 3; r == 1 || r == 2) o.status_valid_retry = r == 2;
  o.locality = static_cast<std::uint8_t>((s.config[0] >> 4) & 7);
  constexpr std::size_t kMaxResponses[] = {4096, 64, 1024, 10};
  o.max_response = kMaxResponses[(s.config[1] >> 4) & 3];

  Outcome out;
  const bool window_ok = bus->size() >= tis_reg::kWindowSize || bus->size() >= (o.locality + 1u) * tis_reg::kLocalityWindow;
  auto opened = TisFifoDriver::open(bus, o);
  out.codes.push_back(opened ? 0 : opened.error().code);
  if (!opened) {
    if (o.locality > 4 || !window_ok) {
      FUZZ_CHECK(opened.error().code == EINVAL, "open: locality %d on a %#x window: want EINVAL", o.locality,
                 bus->size());
    } else {
      check_code(opened.error().code, {ENODEV}, "open");
    }
    return out;
  }
  FUZZ_CHECK(o.locality <= 4 && window_ok, "open accepted locality %d on a %#x window", o.locality, bus->size());
  auto& d = **opened;
  for (int i = 0; i < s.exchanges(); ++i) {
    const std::uint8_t sel = s.config[2 + i];
    if (const int l = sel >> 5; l != 0) {
      auto set = d.set_locality(static_cast<std::uint8_t>(l - 1));
      const bool valid = l - 1 <= 4 && bus->size() >= static_cast<std::uint32_t>(l) * tis_reg::kLocalityWindow;
      FUZZ_CHECK(set.ok() == valid, "set_locality(%d) on a %#x window %s", l - 1, bus->size(),
                 set ? "accepted" : "refused");
    }
    const Bytes command = exchange_command(sel, false);
    auto r = d.exchange(command, exchange_timeout(sel));
    out.codes.push_back(r ? 0 : r.error().code);
    if (command.size() < 10) {
      FUZZ_CHECK(!r && r.error().code == EINVAL, "a 9-byte command: want EINVAL");
      continue;
    }
    if (r) {
      check_framing(*r, o.max_response, "tis exchange");
      continue;
    }
    // P-5: a command counts as cancelled by the TPM only under the vendor rules, and only when asked for.
    const bool cancel_rules = o.vendor_cancel_quirks && (d.vendor_id() == tis_reg::kVidWinbond ||
                                                          d.vendor_id() == tis_reg::kVidStm);
    if (cancel_rules) {
      check_code(r.error().code, {ETIME, EIO, EPIPE, ECANCELED}, "tis exchange");
    } else {
      check_code(r.error().code, {ETIME, EIO, EPIPE}, "tis exchange");
    }
  }
  return out;
}

Outcome run_crb(std::shared_ptr<chip::RegisterBus> bus, std::shared_ptr<chip::PollClock> clock, const Scenario& s) {
  using namespace chip;
  CrbOptions o;
  o.timeout_c = o.transport_allowance = kDeviceTimeout;
  o.clock = std::move(clock);

  Outcome out;
  auto opened = CrbDriver::open(bus, o);
  out.codes.push_back(opened ? 0 : opened.error().code);
  if (!opened) {
    if (bus->size() < crb_reg::kDataBuffer) {
      FUZZ_CHECK(opened.error().code == EINVAL, "open on a %#x window: want EINVAL", bus->size());
    } else {
      check_code(opened.error().code, {EINVAL, ENODEV, ETIME}, "open");
    }
    return out;
  }
  auto& d = **opened;
  // The buffers lie inside the window, after the registers, and hold at least a header.
  auto check_buffer = [&](std::uint32_t offset, std::uint32_t size, const char* what) {
    FUZZ_CHECK(offset >= crb_reg::kDataBuffer && offset <= bus->size() && size >= 10 && size <= bus->size() - offset,
               "%s buffer at %#x+%u in a %#x window", what, offset, size, bus->size());
  };
  check_buffer(d.command_offset(), d.command_size(), "command");
  check_buffer(d.response_offset(), d.response_size(), "response");
  for (int i = 0; i < s.exchanges(); ++i) {
    const std::uint8_t sel = s.config[2 + i];
    const bool oversize = sel & 0x20;
    const Bytes command = exchange_command(sel, oversize);
    auto r = d.exchange(command, exchange_timeout(sel));
    out.codes.push_back(r ? 0 : r.error().code);
    auto late = d.take_late_response();
    FUZZ_CHECK(!late || (!r && r.error().code == ETIME), "a late response after %s",
               r ? "success" : std::strerror(r.error().code));
    if (late) check_framing(*late, d.response_size(), "crb late response");
    if (command.size() < 10) {
      FUZZ_CHECK(!r && r.error().code == EINVAL, "a 9-byte command: want EINVAL");
      continue;
    }
    if (r) {
      FUZZ_CHECK(command.size() <= d.command_size(), "a %zu-byte command ran in a %u-byte buffer", command.size(),
                 d.command_size());
      check_framing(*r, d.response_size(), "crb exchange");
      continue;
    }
    if (command.size() > d.command_size()) {  // E2BIG exactly when the command does not fit
      check_code(r.error().code, {E2BIG, ETIME, EIO, EPIPE}, "crb exchange (larger than the buffer)");
    } else {
      check_code(r.error().code, {ETIME, EIO, EPIPE, ECANCELED}, "crb exchange");
    }
  }
  return out;
}

}  // namespace tpmrmd::fuzz
