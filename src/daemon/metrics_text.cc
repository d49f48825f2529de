#include "daemon/metrics_text.h"

#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "tpm/cc_names.h"

namespace tpmrmd::daemon {
namespace {

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP tpmrmd_{} {}\n# TYPE tpmrmd_{} {}\n", name, help, name, type);
  }
  template <typename V>
  void sample(std::string_view name, V value, std::string_view labels = {}) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out_), "tpmrmd_{} {}\n", name, value);
    } else {
      fmt::format_to(std::back_inserter(out_), "tpmrmd_{}{{{}}} {}\n", name, labels, value);
    }
  }
  template <typename V>
  void single(std::string_view name, std::string_view type, std::string_view help, V value) {
    family(name, type, help);
    sample(name, value);
  }
  void histogram(std::string_view name, std::string_view help, const rm::LatencyHistogram& h) {
    family(name, "histogram", help);
    const std::string bucket = fmt::format("{}_bucket", name);
    for (std::size_t i = 0; i < rm::LatencyHistogram::kBoundsNs.size(); ++i) {
      const double le = static_cast<double>(rm::LatencyHistogram::kBoundsNs[i]) / 1e9;
      sample(bucket, h.cumulative(i), fmt::format("le=\"{}\"", le));
    }
    sample(bucket, h.count(), "le=\"+Inf\"");
    sample(fmt::format("{}_sum", name), h.sum_seconds());
    sample(fmt::format("{}_count", name), h.count());
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string metrics_text(const DaemonStatus& status) {
  Writer w;
  w.single("uptime_seconds", "gauge", "Seconds since the daemon started.",
           std::chrono::duration<double>(status.now - status.started_at).count());
  w.single("backend_up", "gauge", "1 while a TPM backend is registered, 0 between a loss and the next registration.",
           status.backend ? 1 : 0);
  if (!status.backend) return w.take();
  const BackendSnapshot& b = *status.backend;
  const rm::Counters& c = b.rm.counters;
  const rm::SlotUse& s = b.rm.slots;
  w.family("backend_info", "gauge", "The registered backend (always 1; its spec and TPM manufacturer as labels).");
  w.sample("backend_info", 1,
           fmt::format("spec=\"{}\",manufacturer=\"{}\"", escape_label_value(b.description),
                       escape_label_value(b.rm.tpm.manufacturer)));
  w.single("backend_generation", "gauge", "Registrations of a backend so far; the counters below restart with each.",
           b.generation);
  w.single("backend_uptime_seconds", "gauge", "Seconds since the current backend was registered.",
           std::chrono::duration<double>(status.now - b.registered_at).count());

  w.family("commands_total", "counter", "Client commands by command code and how they ended (rc class).");
  for (const auto& [cc, classes] : c.by_command) {
    const std::string name = escape_label_value(tpm::cc_label(cc));
    for (std::size_t i = 0; i < rm::kRcClasses; ++i) {
      if (!classes[i]) continue;
      w.sample("commands_total", classes[i],
               fmt::format("command=\"{}\",rc_class=\"{}\"", name, rm::rc_class_name(static_cast<rm::RcClass>(i))));
    }
  }
  w.family("tpm_commands_total", "counter",
           "Commands sent to the TPM by kind: for clients, and the RM's own context loads, saves and flushes.");
  for (const auto& [kind, value] : std::initializer_list<std::pair<const char*, std::uint64_t>>{
           {"client", c.client_commands}, {"load", c.context_loads}, {"save", c.context_saves}, {"flush", c.flushes}}) {
    w.sample("tpm_commands_total", value, fmt::format("kind=\"{}\"", kind));
  }
  w.single("evictions_total", "counter", "Contexts saved and flushed to make room in the TPM (drift evictions included).",
           c.evictions);
  w.single("drift_evictions_total", "counter",
           "Objects evicted before a command that may flush transients behind the RM.", c.drift_evictions);
  w.single("regaps_total", "counter", "Saved sessions reloaded and re-saved to close the context gap.", c.regaps);
  w.single("reconciliations_total", "counter",
           "Comparisons of the RM's picture with the TPM's handle lists after an unseen outcome.", c.reconciliations);
  w.single("physical_collisions_total", "counter",
           "Slots the TPM reused that the RM believed held by another context.", c.physical_collisions);
  w.family("refusals_total", "counter", "Client commands the RM answered itself, by reason.");
  for (std::size_t i = 0; i < rm::kRefusalReasons; ++i) {
    w.sample("refusals_total", c.refusals_by_reason[i],
             fmt::format("reason=\"{}\"", rm::refusal_reason_name(static_cast<rm::RefusalReason>(i))));
  }
  w.histogram("command_latency_seconds", "Client commands from submission to answer, queueing included.",
              c.command_latency);
  w.histogram("command_tpm_seconds", "Client commands' time in the RM and the TPM (what their uid is charged).",
              c.tpm_time);
  w.single("connections", "gauge", "Open connections.", c.connections_open);
  w.single("connections_opened_total", "counter", "Connections opened on the current backend.",
           c.connections_opened);
  w.family("slots_used", "gauge", "TPM slots in use by the RM's contexts, by kind (object, session).");
  w.sample("slots_used", s.objects_resident, "kind=\"object\"");
  w.sample("slots_used", s.sessions_resident, "kind=\"session\"");
  w.family("slots", "gauge", "TPM slots the RM plans with (the TPM's minimum less foreign handles and reserve).");
  w.sample("slots", s.object_slots, "kind=\"object\"");
  w.sample("slots", s.session_slots, "kind=\"session\"");
  w.single("objects", "gauge", "Transient objects the RM manages (resident or saved).", s.objects_total);
  w.family("sessions", "gauge", "Sessions the RM manages, by state.");
  w.sample("sessions", s.sessions_resident, "state=\"loaded\"");
  w.sample("sessions", s.sessions_saved > s.sessions_abandoned ? s.sessions_saved - s.sessions_abandoned : 0,
           "state=\"saved\"");
  w.sample("sessions", s.sessions_abandoned, "state=\"abandoned\"");
  w.single("active_sessions_max", "gauge", "The TPM's limit on active (loaded or saved) sessions.",
           s.active_sessions_max);
  w.single("context_gap", "gauge", "Context sequence distance from the oldest saved session to the newest.",
           s.context_gap);
  w.single("context_gap_max", "gauge", "The TPM's context gap limit (TPM_PT_CONTEXT_GAP_MAX).", s.context_gap_max);
  return w.take();
}

}  // namespace tpmrmd::daemon
