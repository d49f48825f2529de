#include "daemon/status_json.h"

#include <fmt/format.h>
#include <time.h>

#include <cstring>

#include "tpm/cc_names.h"
#include "tpm/rc_names.h"

namespace tpmrmd::daemon {
namespace {

using nlohmann::json;

double seconds_between(std::chrono::system_clock::time_point from, std::chrono::system_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

json histogram_json(const rm::LatencyHistogram& h) {
  json buckets = json::array();
  for (std::size_t i = 0; i < rm::LatencyHistogram::kBuckets; ++i) {
    json b;
    if (i < rm::LatencyHistogram::kBoundsNs.size()) {
      b["le"] = static_cast<double>(rm::LatencyHistogram::kBoundsNs[i]) / 1e9;
    } else {
      b["le"] = "+Inf";
    }
    b["count"] = h.cumulative(i);
    buckets.push_back(std::move(b));
  }
  return {{"count", h.count()}, {"sum_seconds", h.sum_seconds()}, {"buckets", std::move(buckets)}};
}

std::string firmware(std::uint64_t v) {
  // FIRMWARE_VERSION_1 and _2 as the TPM reports them: their meaning is the vendor's (swtpm: a date, then 0).
  return fmt::format("{:08x}.{:08x}", v >> 32, v & 0xFFFFFFFFu);
}

std::string family(std::uint32_t f) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    const char c = static_cast<char>((f >> shift) & 0xFF);
    if (c) s += c;
  }
  return s;
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json status_json(const DaemonStatus& status) {
  json out;
  out["daemon"] = {{"pid", status.pid},
                   {"started_at", rfc3339(status.started_at)},
                   {"uptime_seconds", seconds_between(status.started_at, status.now)}};
  if (!status.backend) {
    out["backend"] = nullptr;
    return out;
  }
  const BackendSnapshot& b = *status.backend;
  out["backend"] = {{"spec", b.description},
                    {"identity", b.identity},
                    {"generation", b.generation},
                    {"registered_at", rfc3339(b.registered_at)},
                    {"uptime_seconds", seconds_between(b.registered_at, status.now)}};
  const rm::TpmIdentity& t = b.rm.tpm;
  out["tpm"] = {{"manufacturer", t.manufacturer},
                {"vendor", t.vendor_string},
                {"firmware", firmware(t.firmware_version)},
                {"family", family(t.family)},
                {"revision", t.revision}};
  const rm::SlotUse& s = b.rm.slots;
  out["slots"] = {{"objects_resident", s.objects_resident},
                  {"objects_total", s.objects_total},
                  {"object_slots", s.object_slots},
                  {"tpm_object_slots", s.tpm_object_slots},
                  {"sessions_resident", s.sessions_resident},
                  {"sessions_total", s.sessions_total},
                  {"sessions_saved", s.sessions_saved},
                  {"sessions_abandoned", s.sessions_abandoned},
                  {"session_slots", s.session_slots},
                  {"tpm_session_slots", s.tpm_session_slots},
                  {"active_sessions_max", s.active_sessions_max},
                  {"context_gap", s.context_gap},
                  {"context_gap_max", s.context_gap_max},
                  {"context_gap_remaining",
                   s.context_gap_max > s.context_gap ? s.context_gap_max - s.context_gap : 0}};
  const rm::Counters& c = b.rm.counters;
  out["connections"] = {{"open", c.connections_open}, {"opened", c.connections_opened}};
  json reasons = json::object();
  for (std::size_t i = 0; i < rm::kRefusalReasons; ++i) {
    reasons[std::string(rm::refusal_reason_name(static_cast<rm::RefusalReason>(i)))] = c.refusals_by_reason[i];
  }
  out["counters"] = {{"client_commands", c.client_commands},
                     {"context_loads", c.context_loads},
                     {"context_saves", c.context_saves},
                     {"flushes", c.flushes},
                     {"tpm_commands", c.tpm_commands()},
                     {"evictions", c.evictions},
                     {"drift_evictions", c.drift_evictions},
                     {"physical_collisions", c.physical_collisions},
                     {"reconciliations", c.reconciliations},
                     {"reconciled_entries", c.reconciled_entries},
                     {"leftovers_flushed", c.leftovers_flushed},
                     {"regaps", c.regaps},
                     {"refusals", c.refusals},
                     {"refusals_by_reason", std::move(reasons)}};
  json commands = json::array();
  for (const auto& [cc, classes] : c.by_command) {
    json entry = {{"code", fmt::format("0x{:08x}", cc)}, {"name", tpm::cc_label(cc)}};
    for (std::size_t i = 0; i < rm::kRcClasses; ++i) {
      entry[std::string(rm::rc_class_name(static_cast<rm::RcClass>(i)))] = classes[i];
    }
    commands.push_back(std::move(entry));
  }
  out["commands"] = std::move(commands);
  out["latency"] = {{"command", histogram_json(c.command_latency)}, {"tpm", histogram_json(c.tpm_time)}};
  out["policy"] = b.rm.policy;
  return out;
}

json clients_json(const DaemonStatus& status) {
  json clients = json::array();
  if (status.backend) {
    for (const auto& [id, c] : status.backend->rm.counters.per_connection) {
      json entry = {{"connection", id},
                    {"pid", c.pid},
                    {"uid", c.uid},
                    {"comm", c.comm},
                    {"opened_at", rfc3339(c.opened_at)},
                    {"commands", c.commands},
                    {"refusals", c.refusals},
                    {"objects", c.objects},
                    {"sessions", c.sessions},
                    {"tpm_time_seconds", std::chrono::duration<double>(c.tpm_time).count()}};
      if (c.last_cc) {
        entry["last_command"] = tpm::cc_label(*c.last_cc);
        entry["last_rc"] = c.last_errno ? fmt::format("errno {} ({})", c.last_errno, std::strerror(c.last_errno))
                                        : tpm::rc_name(c.last_rc);
      } else {
        entry["last_command"] = nullptr;
        entry["last_rc"] = nullptr;
      }
      clients.push_back(std::move(entry));
    }
  }
  return {{"generation", status.backend ? status.backend->generation : 0}, {"clients", std::move(clients)}};
}

}  // namespace tpmrmd::daemon
