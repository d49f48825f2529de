#include "chip/registers/register_driver_specs.h"

#include <cerrno>

#include "chip/driver_factory.h"
#include "chip/registers/crb_driver.h"
#include "chip/registers/mmio_bus.h"
#include "chip/registers/tis_fifo_driver.h"

namespace tpmrmd::chip {
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

EmulatedBusMaker& emulated_bus_maker() {
  static EmulatedBusMaker maker;
  return maker;
}

// "KIND:emulated,...,backend=SPEC": the backend driver, then whatever bus the installed maker builds around it.
Result<std::shared_ptr<RegisterBus>> make_emulated_bus(const BackendSpec& spec, const RegisterSpec& r) {
  if (!emulated_bus_maker()) {
    return make_error(EINVAL, "'" + spec.text + "': emulated register devices exist only in tests and benches");
  }
  std::optional<std::uint16_t> vid;
  if (r.keys.count("vid")) {
    auto v = parse_number(spec, "vid", r.keys.at("vid"), 0xFFFF);
    if (!v) return v.error();
    vid = static_cast<std::uint16_t>(*v);
  }
  auto backend = make_driver(r.backend);
  if (!backend) return make_error(backend.error().code, spec.kind + ":emulated backend: " + backend.error().message);
  return emulated_bus_maker()(spec.kind, vid, std::move(*backend));
}

}  // namespace

void set_emulated_bus_maker(EmulatedBusMaker maker) { emulated_bus_maker() = std::move(maker); }

namespace {

Result<std::shared_ptr<RegisterBus>> open_tis_mmio(const BackendSpec& spec, const RegisterSpec& r,
                                                   TisFifoOptions& options) {
  auto base = parse_number(spec, "mmio", r.keys.at("mmio"), 0xFFFFFFFFFFFFull);
  if (!base) return base.error();
  if (r.keys.count("locality")) {
    auto l = parse_number(spec, "locality", r.keys.at("locality"), 4);
    if (!l) return l.error();
    options.locality = static_cast<std::uint8_t>(*l);
  }
  auto mmio = MmioBus::open(*base, tis_reg::kWindowSize);
  if (!mmio) return mmio.error();
  return std::shared_ptr<RegisterBus>(std::move(*mmio));
}

Result<std::shared_ptr<RegisterBus>> open_crb_mmio(const BackendSpec& spec, const RegisterSpec& r) {
  auto base = parse_number(spec, "mmio", r.keys.at("mmio"), 0xFFFFFFFFFFFFull);
  if (!base) return base.error();
  std::uint32_t size = crb_reg::kWindowSize;
  if (r.keys.count("size")) {
    auto s = parse_number(spec, "size", r.keys.at("size"), 0x100000);
    if (!s) return s.error();
    if (*s < crb_reg::kDataBuffer + 10) {
      return make_error(ERANGE, "size too small for a CRB window in '" + spec.text + "'");
    }
    size = static_cast<std::uint32_t>(*s);
  }
  auto mmio = MmioBus::open(*base, size);
  if (!mmio) return mmio.error();
  return std::shared_ptr<RegisterBus>(std::move(*mmio));
}

}  // namespace

Result<std::unique_ptr<Driver>> make_tis_driver(const BackendSpec& spec) {
  auto r = parse(spec, {"mmio", "locality"});
  if (!r) return r.error();
  TisFifoOptions options;
  auto bus = r->emulated ? make_emulated_bus(spec, *r) : open_tis_mmio(spec, *r, options);
  if (!bus) return bus.error();
  auto driver = TisFifoDriver::open(std::move(*bus), options);
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

Result<std::unique_ptr<Driver>> make_crb_driver(const BackendSpec& spec) {
  auto r = parse(spec, {"mmio", "size"});
  if (!r) return r.error();
  auto bus = r->emulated ? make_emulated_bus(spec, *r) : open_crb_mmio(spec, *r);
  if (!bus) return bus.error();
  auto driver = CrbDriver::open(std::move(*bus), {});
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

}  // namespace tpmrmd::chip
