#include "chip/driver_factory.h"

#include <cerrno>
#include <functional>
#include <vector>

#include "chip/backend_spec.h"
#include "chip/drivers/device_driver.h"
#include "chip/registers/register_driver_specs.h"
#include "chip/drivers/swtpm_driver.h"
#include "chip/drivers/tcti_driver.h"

namespace tpmrmd::chip {
namespace {

Result<std::unique_ptr<Driver>> make_swtpm(const BackendSpec& spec) {
  auto kv = parse_key_values(spec, {"host", "port", "path", "ctrl"});
  if (!kv) return kv.error();
  SwtpmDriverOptions options;
  const auto& m = *kv;
  if (m.count("path")) {
    if (m.count("host") || m.count("port")) {
      return make_error(EINVAL, "'path' excludes 'host' and 'port' in '" + spec.text + "'");
    }
    options.data = {SwtpmEndpoint::Kind::kUnix, m.at("path"), "", 0};
    if (m.count("ctrl")) options.control = SwtpmEndpoint{SwtpmEndpoint::Kind::kUnix, m.at("ctrl"), "", 0};
  } else {
    std::string host = m.count("host") ? m.at("host") : "localhost";
    unsigned long long port = 2321;
    if (m.count("port")) {
      auto p = parse_number(spec, "port", m.at("port"), 65534);  // the control channel uses port + 1
      if (!p) return p.error();
      if (*p == 0) return make_error(ERANGE, "port '0' out of range (1..65534) in '" + spec.text + "'");
      port = *p;
    }
    options.data = {SwtpmEndpoint::Kind::kTcp, "", host, static_cast<std::uint16_t>(port)};
    if (m.count("ctrl")) {
      auto c = parse_number(spec, "ctrl port", m.at("ctrl"), 65535);
      if (!c) return c.error();
      options.control = SwtpmEndpoint{SwtpmEndpoint::Kind::kTcp, "", host, static_cast<std::uint16_t>(*c)};
    } else {
      options.control = SwtpmEndpoint{SwtpmEndpoint::Kind::kTcp, "", host, static_cast<std::uint16_t>(port + 1)};
    }
  }
  auto driver = SwtpmDriver::open(std::move(options));
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

Result<std::unique_ptr<Driver>> make_device(const BackendSpec& spec) {
  std::string path = spec.options.empty() ? "/dev/tpm0" : spec.options;
  if (path.rfind("path=", 0) == 0) path = path.substr(5);
  auto driver = DeviceDriver::open(path);
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

// Everything after "tcti:" goes to tss2-tctildr unchanged, e.g. "tcti:swtpm:host=127.0.0.1,port=2321".
Result<std::unique_ptr<Driver>> make_tcti(const BackendSpec& spec) {
  auto driver = TctiDriver::open({.config = spec.options});
  if (!driver) return driver.error();
  return std::unique_ptr<Driver>(std::move(*driver));
}

struct BackendKind {
  const char* kind;
  const char* usage;
  std::function<Result<std::unique_ptr<Driver>>(const BackendSpec&)> make;
};

const std::vector<BackendKind>& kinds() {
  static const std::vector<BackendKind> table = {
      {"swtpm", "swtpm:host=HOST,port=PORT[,ctrl=PORT] | swtpm:path=SOCKET[,ctrl=SOCKET]", make_swtpm},
      {"device", "device:/dev/tpmN", make_device},
      {"tcti", "tcti:NAME[:CONF] (any tpm2-tss TCTI, e.g. tcti:swtpm:host=H,port=P)", make_tcti},
      {"tis", kTisSpecUsage, make_tis_driver},
      {"crb", kCrbSpecUsage, make_crb_driver},
  };
  return table;
}

}  // namespace

Result<std::unique_ptr<Driver>> make_driver(std::string_view text) {
  auto spec = split_backend_spec(text);
  if (!spec) return spec.error();
  std::string known;
  for (const auto& k : kinds()) {
    if (spec->kind == k.kind) return k.make(*spec);
    known += (known.empty() ? "" : ", ") + std::string(k.kind);
  }
  return make_error(EINVAL, "unknown backend '" + spec->kind + "' in '" + spec->text + "' (expected " + known + ")");
}

std::string backend_spec_help() {
  std::string out;
  for (const auto& k : kinds()) out += std::string(k.usage) + "\n";
  return out;
}

}  // namespace tpmrmd::chip
