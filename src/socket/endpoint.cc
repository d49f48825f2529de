#include "socket/endpoint.h"

#include <charconv>

namespace tpmrmd::socket {

Endpoint Endpoint::companion() const {
  Endpoint other = *this;
  if (kind == Kind::kUnix) other.path += ".ctrl";
  else other.port = static_cast<std::uint16_t>(port + 1);
  return other;
}

std::string Endpoint::describe() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return "tcp:" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool Endpoint::loopback() const {
  if (kind == Kind::kUnix) return true;
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  if (text.empty()) return make_error(EINVAL, "an empty socket address");
  Endpoint e;
  if (text.find('/') != std::string_view::npos) {
    e.kind = Endpoint::Kind::kUnix;
    e.path = std::string(text);
    return e;
  }
  e.kind = Endpoint::Kind::kTcp;
  std::string_view port = text;
  if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    std::string_view host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) return make_error(EINVAL, "'" + std::string(text) + "': an empty host");
    e.host = std::string(host);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65534) {
    return make_error(EINVAL, "'" + std::string(text) + "' is neither a path (with a '/') nor HOST:PORT with a "
                              "port from 1 to 65534");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

}  // namespace tpmrmd::socket
