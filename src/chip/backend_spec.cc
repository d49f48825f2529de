#include "chip/backend_spec.h"

#include <cerrno>
#include <charconv>

namespace tpmrmd::chip {

Result<BackendSpec> split_backend_spec(std::string_view spec) {
  if (spec.empty()) return make_error(EINVAL, "empty backend spec");
  auto colon = spec.find(':');
  BackendSpec out;
  out.text = std::string(spec);
  out.kind = std::string(spec.substr(0, colon));
  if (colon != std::string_view::npos) out.options = std::string(spec.substr(colon + 1));
  if (out.kind.empty()) return make_error(EINVAL, "missing backend kind in '" + out.text + "'");
  return out;
}

Result<std::map<std::string, std::string>> parse_key_values(const BackendSpec& spec,
                                                            const std::set<std::string>& allowed) {
  std::map<std::string, std::string> out;
  std::string_view rest = spec.options;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    auto eq = item.find('=');
    std::string key(item.substr(0, eq));
    if (eq == std::string_view::npos || eq + 1 == item.size()) {
      return make_error(EINVAL, "expected key=value, got '" + std::string(item) + "' in '" + spec.text + "'");
    }
    if (!allowed.count(key)) {
      std::string keys;
      for (const auto& k : allowed) keys += (keys.empty() ? "" : ", ") + k;
      return make_error(EINVAL, "unknown key '" + key + "' in '" + spec.text + "' (expected " + keys + ")");
    }
    if (!out.emplace(key, std::string(item.substr(eq + 1))).second) {
      return make_error(EINVAL, "key '" + key + "' given twice in '" + spec.text + "'");
    }
  }
  return out;
}

Result<unsigned long long> parse_number(const BackendSpec& spec, std::string_view what, std::string_view text,
                                        unsigned long long max) {
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  unsigned long long value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && end == digits.data() + digits.size() && value > max)) {
    return make_error(ERANGE, std::string(what) + " '" + std::string(text) + "' out of range (0.." +
                                  std::to_string(max) + ") in '" + spec.text + "'");
  }
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) {
    return make_error(EINVAL, std::string(what) + " '" + std::string(text) + "' is not a number in '" + spec.text + "'");
  }
  return value;
}

}  // namespace tpmrmd::chip
