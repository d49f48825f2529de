#include "tis/register_driver_specs.h"

#include <cerrno>

#include "tis/crb_driver.h"
#include "tis/driver_factory.h"
#include "tis/emulated_crb_device.h"
#include "tis/emulated_tis_device.h"
#include "tis/mmio_bus.h"
#include "tis/tis_fifo_driver.h"

namespace tpmrmd::tis {
namespace {

struct RegisterSpec {
  bool emulated = false;
  std::map<std::string, std::string> keys;
  std::string backend;  // emulated only
};

// Splits off "emulated" and "backend=REST", then parses the remaining key=value pairs.
Result<RegisterSpec> parse(const BackendSpec& spec, const std::set<std::string>& mmio_keys) {
  RegisterSpec out;
  std::string head = spec.options;
  if (head == "emulated" || head.rfind("emulated,", 0) == 0) {
    out.emulated = true;
    head = head.size() > 8 ? head.substr(9) : std::string();
    std::string::size_type at = head.rfind("backend=", 0) == 0 ? 0 : head.find(",backend=");
    if (at == std::string::npos) {
      return make_error(EINVAL, "'" + spec.text + "' needs backend=SPEC last (e.g. " + spec.kind +
                                    ":emulated,backend=swtpm:path=/run/swtpm.sock)");
    }
    out.backend = head.substr(at == 0 ? 8 : at + 9);
    head = head.substr(0, at);
    if (out.backend.empty()) return make_error(EINVAL, "empty backend= in '" + spec.text + "'");
    BackendSpec rest{spec.kind, head, spec.text};
    auto kv = parse_key_values(rest, {"vid"});
    if (!kv) return kv.error();
    out.keys = std::move(*kv);
    return out;
  }
  auto kv = parse_key_values(spec, mmio_keys);
  if (!kv) return kv.error();
  if (!kv->count("mmio")) {
    return make_error(EINVAL, "'" + spec.text + "' needs mmio=ADDR or emulated,backend=SPEC");
  }
  out.keys = std::move(*kv);
  return out;
}

Result<std::uint16_t> vid_of(const BackendSpec& spec, const RegisterSpec& r, std::uint16_t fallback) {
  if (!r.keys.count("vid")) return fallback;
  auto v = parse_number(spec, "vid", r.keys.at("vid"), 0xFFFF);
  if (!v) return v.error();
  return static_cast<std::uint16_t>(*v);
}

}  // namespace

Result<std::unique_ptr<Driver>> make_tis_driver(const BackendSpec& spec) {
  auto r = parse(spec, {"mmio", "locality"});
  if (!r) return r.error();
  std::shared_ptr<RegisterBus> bus;
  TisFifoOptions options;
  if (r->emulated) {
    auto backend = make_driver(r->backend);
    if (!backend) return make_error(backend.error().code, "tis:emulated backend: " + backend.error().message);
    EmulatedTisOptions device;
    auto vid = vid_of(spec, *r, device.vid);
    if (!vid) return vid.error();
    device.vid = *vid;
    bus = std::make_shared<EmulatedTisDevice>(std::move(*backend), device);
  } else {
    auto base = parse_number(spec, "mmio", r->keys.at("mmio"), 0xFFFFFFFFFFFFull);
    if (!base) return base.error();
    if (r->keys.count("locality")) {
      auto l = parse_number(spec, "locality", r->keys.at("locality"), 4);
      if (!l) return l.error();
      options.locality = static_cast<std::uint8_t>(*l);
    }
    auto mmio = MmioBus::open(*base, tis_reg::kWindowSize);
    if (!mmio) return mmio.error();
    bus = std::move(*mmio);
  }
  auto driver = TisFifoDriver::open(std::move(bus), options);
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

Result<std::unique_ptr<Driver>> make_crb_driver(const BackendSpec& spec) {
  auto r = parse(spec, {"mmio", "size"});
  if (!r) return r.error();
  std::shared_ptr<RegisterBus> bus;
  if (r->emulated) {
    auto backend = make_driver(r->backend);
    if (!backend) return make_error(backend.error().code, "crb:emulated backend: " + backend.error().message);
    EmulatedCrbOptions device;
    auto vid = vid_of(spec, *r, device.vid);
    if (!vid) return vid.error();
    device.vid = *vid;
    bus = std::make_shared<EmulatedCrbDevice>(std::move(*backend), device);
  } else {
    auto base = parse_number(spec, "mmio", r->keys.at("mmio"), 0xFFFFFFFFFFFFull);
    if (!base) return base.error();
    std::uint32_t size = crb_reg::kWindowSize;
    if (r->keys.count("size")) {
      auto s = parse_number(spec, "size", r->keys.at("size"), 0x100000);
      if (!s) return s.error();
      if (*s < crb_reg::kDataBuffer + 10) return make_error(ERANGE, "size too small for a CRB window in '" + spec.text + "'");
      size = static_cast<std::uint32_t>(*s);
    }
    auto mmio = MmioBus::open(*base, size);
    if (!mmio) return mmio.error();
    bus = std::move(*mmio);
  }
  auto driver = CrbDriver::open(std::move(bus), {});
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

}  // namespace tpmrmd::tis
