// tpmrmctl: asks a running tpmrmd over its control socket (status, clients, metrics) and, as root, changes it
// (flush-abandoned, log-level). One JSON request line, one JSON response line; see src/daemon/control_server.h.
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the daemon refused or could not be reached
constexpr int kExitUsage = 2;

struct Failure {
  std::string message;
};

json ask(const std::string& path, const json& request) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw Failure{"socket path too long: " + path};
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Failure{std::string("socket: ") + std::strerror(errno)};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    if (e == EACCES || e == EPERM) {
      throw Failure{fmt::format("permission denied on {}: tpmrmctl needs root or membership in the TPM node's group",
                                path)};
    }
    if (e == ENOENT || e == ECONNREFUSED) {
      throw Failure{fmt::format("cannot reach tpmrmd at {}: {} (is it running, with this --control-socket?)", path,
                                std::strerror(e))};
    }
    throw Failure{fmt::format("connect {}: {}", path, std::strerror(e))};
  }
  const std::string line = request.dump() + "\n";
  for (std::size_t off = 0; off < line.size();) {
    const ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n <= 0) throw Failure{std::string("write: ") + std::strerror(errno)};
    off += static_cast<std::size_t>(n);
  }
  std::string response;
  char buf[4096];
  while (response.find('\n') == std::string::npos) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<std::size_t>(n));
  }
  json parsed = json::parse(response, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) throw Failure{"the daemon's answer is not JSON"};
  return parsed;
}

std::string str(const json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number_float()) return fmt::format("{:.3f}", j.get<double>());
  return j.dump();
}

std::string duration(double seconds) {
  const auto s = static_cast<long long>(seconds);
  if (s >= 86400) return fmt::format("{}d{:02}h{:02}m", s / 86400, s % 86400 / 3600, s % 3600 / 60);
  if (s >= 3600) return fmt::format("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{:.1f}s", seconds);
}

void print_status(const json& r) {
  const json& d = r["daemon"];
  fmt::print("daemon      pid {}, up {} (since {})\n", str(d["pid"]), duration(d["uptime_seconds"].get<double>()),
             str(d["started_at"]));
  if (r["backend"].is_null()) {
    fmt::print("backend     none registered (being restarted)\n");
    return;
  }
  const json& b = r["backend"];
  fmt::print("backend     {} (identity {})\n", str(b["spec"]), str(b["identity"]));
  fmt::print("generation  {}, up {} (since {})\n", str(b["generation"]), duration(b["uptime_seconds"].get<double>()),
             str(b["registered_at"]));
  const json& t = r["tpm"];
  fmt::print("tpm         manufacturer \"{}\" vendor \"{}\" firmware {} family {} revision {}\n", str(t["manufacturer"]),
             str(t["vendor"]), str(t["firmware"]), str(t["family"]), str(t["revision"]));
  const json& s = r["slots"];
  fmt::print("objects     {} resident / {} slots (TPM {}), {} managed\n", str(s["objects_resident"]),
             str(s["object_slots"]), str(s["tpm_object_slots"]), str(s["objects_total"]));
  fmt::print("sessions    {} loaded / {} slots (TPM {}), {} saved ({} abandoned), {} of {} active\n",
             str(s["sessions_resident"]), str(s["session_slots"]), str(s["tpm_session_slots"]),
             str(s["sessions_saved"]), str(s["sessions_abandoned"]), str(s["sessions_total"]),
             str(s["active_sessions_max"]));
  fmt::print("context gap {} of {} ({} to the limit)\n", str(s["context_gap"]), str(s["context_gap_max"]),
             str(s["context_gap_remaining"]));
  fmt::print("connections {} open, {} opened\n", str(r["connections"]["open"]), str(r["connections"]["opened"]));
  const json& c = r["counters"];
  fmt::print("tpm traffic {} commands: {} client, {} loads, {} saves, {} flushes\n", str(c["tpm_commands"]),
             str(c["client_commands"]), str(c["context_loads"]), str(c["context_saves"]), str(c["flushes"]));
  fmt::print("rm          {} evictions ({} drift), {} regaps, {} reconciliations, {} collisions\n", str(c["evictions"]),
             str(c["drift_evictions"]), str(c["regaps"]), str(c["reconciliations"]), str(c["physical_collisions"]));
  std::string reasons;
  for (const auto& [reason, n] : c["refusals_by_reason"].items()) {
    if (n.get<std::uint64_t>()) reasons += fmt::format(" {}={}", reason, n.get<std::uint64_t>());
  }
  fmt::print("refusals    {}{}\n", str(c["refusals"]), reasons);
  fmt::print("policy      {}\n", str(r["policy"]));
}

void print_clients(const json& r) {
  fmt::print("{:>6} {:>7} {:>6} {:<15} {:<20} {:>8} {:>8} {:>4} {:>4} {:>9} {}\n", "CONN", "PID", "UID", "COMM",
             "OPENED", "COMMANDS", "REFUSALS", "OBJ", "SESS", "TPM-TIME", "LAST");
  for (const json& c : r["clients"]) {
    const std::string last =
        c["last_command"].is_null() ? "-" : fmt::format("{} -> {}", str(c["last_command"]), str(c["last_rc"]));
    fmt::print("{:>6} {:>7} {:>6} {:<15} {:<20} {:>8} {:>8} {:>4} {:>4} {:>8.3f}s {}\n", str(c["connection"]),
               str(c["pid"]), str(c["uid"]), str(c["comm"]), str(c["opened_at"]), str(c["commands"]),
               str(c["refusals"]), str(c["objects"]), str(c["sessions"]), c["tpm_time_seconds"].get<double>(), last);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tpmrmctl: look into a running tpmrmd (status, clients, Prometheus metrics) and, as root, change it."};
  std::string socket = "/run/tpmrmd/control";
  bool as_json = false;
  app.add_option("--socket", socket, "tpmrmd's control socket")->capture_default_str();
  app.add_flag("--json", as_json, "Print the daemon's JSON answer instead of a table");
  app.require_subcommand(1);
  std::string level;
  auto add = [&](const char* name, const char* help) {
    auto* sub = app.add_subcommand(name, help);
    sub->add_flag("--json", as_json, "Print the daemon's JSON answer");
    sub->add_option("--socket", socket, "tpmrmd's control socket");
    return sub;
  };
  add("status", "Backend, TPM, generation and uptime, slot use, connections, counters, policy");
  add("clients", "One line per connection: pid, uid, comm, counts, TPM time, last command and its rc");
  add("metrics", "Prometheus text exposition format 0.0.4");
  add("flush-abandoned", "Root: flush the client-saved sessions kept after their connections closed");
  add("log-level", "Root: change the daemon's log level")
      ->add_option("LEVEL", level, "trace, debug, info, warn, error, critical, off")
      ->required()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  const std::string verb = app.get_subcommands().front()->get_name();
  json request = {{"verb", verb}};
  if (verb == "log-level") request["level"] = level;
  json response;
  try {
    response = ask(socket, request);
  } catch (const Failure& f) {
    fmt::print(stderr, "tpmrmctl: {}\n", f.message);
    return kExitFailed;
  }
  if (!response.value("ok", false)) {
    if (as_json) fmt::print("{}\n", response.dump(2));
    fmt::print(stderr, "tpmrmctl: {}\n", response.value("error", std::string("the daemon refused")));
    return kExitFailed;
  }
  const json& result = response["result"];
  if (as_json) {
    fmt::print("{}\n", result.dump(2));
    return kExitOk;
  }
  try {
    if (verb == "status") {
      print_status(result);
    } else if (verb == "clients") {
      print_clients(result);
    } else if (verb == "metrics") {
      fmt::print("{}", result.value("text", std::string()));
    } else if (verb == "flush-abandoned") {
      fmt::print("flushed {} abandoned session(s)\n", str(result["flushed"]));
    } else {
      fmt::print("log level {} (was {})\n", str(result["level"]), str(result["previous"]));
    }
  } catch (const json::exception& e) {
    fmt::print(stderr, "tpmrmctl: unexpected answer from the daemon: {}\n", e.what());
    return kExitFailed;
  }
  return kExitOk;
}
