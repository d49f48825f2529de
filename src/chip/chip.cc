#include "chip/chip.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include "chip/durations.h"
#include "tpm/cc_names.h"
#include "tpm/commands.h"
#include "tpm/header.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace tpmrmd::chip {
namespace {

Error enodev() { return make_error(ENODEV, "TPM chip is unregistered"); }

// A structure tag for an error message, e.g. 0x8001.
std::string hex16(TPM2_ST tag) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", tag);
  return buf;
}

// Four bytes of a property value as text, e.g. 0x49424d00 -> "IBM".
std::string fourcc(std::uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    char c = static_cast<char>((v >> shift) & 0xff);
    if (c != '\0') s.push_back(c);
  }
  return s;
}

}  // namespace

Chip::Chip(std::unique_ptr<Driver> driver, ChipOptions options)
    : options_(options), duration_scale_(options.duration_scale), driver_(std::move(driver)) {}

Chip::~Chip() { unregister(ShutdownMode::kNone); }

std::optional<Error> Chip::lost() const {
  std::lock_guard lock(lost_mutex_);
  return lost_;
}

std::string Chip::description() const {
  if (!registered()) return "unregistered";
  std::shared_lock ops(ops_lock_);
  return driver_ ? driver_->description() : "unregistered";
}

std::string Chip::identity() const {
  if (!registered()) return {};
  std::shared_lock ops(ops_lock_);
  return driver_ ? driver_->identity() : std::string{};
}

ChipCounters Chip::counters() const {
  std::lock_guard lock(counters_mutex_);
  return counters_;
}

std::chrono::milliseconds Chip::duration_for(TPM2_CC code) const {
  auto base = command_duration(code);
  auto scaled = std::chrono::milliseconds(static_cast<long long>(base.count() * duration_scale_.load()));
  return std::max(scaled, std::chrono::milliseconds(1));
}

Result<Bytes> Chip::transmit(ByteSpan command) {
  if (!registered()) return enodev();
  auto header = tpm::parse_command_header(command);
  if (!header) return header.error();
  if (header->tag != TPM2_ST_NO_SESSIONS && header->tag != TPM2_ST_SESSIONS) {
    return make_error(EINVAL, "bad command tag " + hex16(header->tag));
  }
  if (header->size != command.size()) {
    return make_error(EINVAL, "command header says " + std::to_string(header->size) + " bytes, buffer has " +
                                  std::to_string(command.size()));
  }

  std::lock_guard tpm(tpm_mutex_);
  Result<Bytes> result = enodev();
  {
    std::shared_lock ops(ops_lock_);
    // Also the answer for callers that queued behind the command whose transport broke: it dropped the driver
    // before releasing tpm_mutex_.
    if (!driver_) return enodev();
    if (!serving_) return make_error(EIO, "TPM is not serving (start-up did not succeed)");
    if (command.size() > info_.max_command_size) {
      return make_error(E2BIG, "command of " + std::to_string(command.size()) + " bytes exceeds the TPM's maximum of " +
                                   std::to_string(info_.max_command_size));
    }
    result = transmit_locked(command);
    if (result && header->code != TPM2_CC_Startup && tpm::parse_response_header(*result)->rc == TPM2_RC_INITIALIZE) {
      {
        std::lock_guard lock(counters_mutex_);
        ++counters_.resets_seen;
      }
      result = make_error(ENODEV, "the TPM was reset behind the daemon (it answers TPM_RC_INITIALIZE)");
    } else if (driver_->alive()) {
      return result;
    }
  }
  std::unique_lock ops(ops_lock_);
  if (driver_) drop_driver_locked(result ? make_error(EPIPE, "transport broke") : result.error());
  return result;
}

Result<Bytes> Chip::transmit_locked(ByteSpan command) {
  const TPM2_CC code = tpm::parse_command_header(command)->code;
  auto delay = options_.retry_initial_delay;
  for (;;) {
    {
      std::lock_guard lock(counters_mutex_);
      ++counters_.commands;
    }
    auto response = driver_->exchange(command, duration_for(code));
    if (!response) {
      if (response.error().code == ETIME) {
        {
          std::lock_guard lock(counters_mutex_);
          ++counters_.timeouts;
        }
        if (driver_->alive() && options_.return_late_responses) {
          if (auto late = driver_->take_late_response(); late && tpm::response_code(*late)) {
            auto header = tpm::parse_response_header(*late);
            if (header && header->size == late->size()) {
              std::lock_guard lock(counters_mutex_);
              ++counters_.late_returned;
              return std::move(*late);
            }
          }
        } else if (driver_->alive()) {
          flush_late_response(code);
        }
      }
      return response;
    }
    auto header = tpm::parse_response_header(*response);
    if (!header || header->size != response->size()) {
      return make_error(EIO, "malformed response: " + std::to_string(response->size()) + " bytes" +
                                 (header ? ", header says " + std::to_string(header->size) : std::string()));
    }
    const TPM2_RC rc = header->rc;
    bool retryable = rc == TPM2_RC_RETRY || rc == TPM2_RC_YIELDED || (rc == TPM2_RC_TESTING && code != TPM2_CC_SelfTest);
    if (!retryable) return response;
    if (delay > options_.retry_max_delay) {
      spdlog::warn("event=tpm-retries-exhausted cc=0x{:08x} command={} rc=\"{}\"", code, tpm::cc_label(code),
                   tpm::rc_name(rc));
      return response;
    }
    std::this_thread::sleep_for(delay);
    delay *= 2;
    std::lock_guard lock(counters_mutex_);
    ++counters_.retries;
  }
}

void Chip::flush_late_response(TPM2_CC code) {
  auto late = driver_->take_late_response();
  if (!late) return;
  auto rc = tpm::response_code(*late);
  auto handle = tpm::handle_from_response(*late);
  auto attributes = info_.commands.find(code);
  if (!rc || *rc != TPM2_RC_SUCCESS || !handle) return;
  if (attributes ? !attributes->returns_handle()
                 : (code != TPM2_CC_CreatePrimary && code != TPM2_CC_Load && code != TPM2_CC_CreateLoaded)) {
    return;
  }
  auto flushed = driver_->exchange(tpm::make_flush_context(*handle), duration_for(TPM2_CC_FlushContext));
  spdlog::info("event=late-handle-flushed handle=0x{:08x} cc=0x{:08x} command={} result=\"{}\"", *handle, code,
               tpm::cc_label(code), flushed ? "ok" : describe(flushed.error()));
  std::lock_guard lock(counters_mutex_);
  ++counters_.late_flushes;
}

Result<void> Chip::startup() {
  if (!registered()) return enodev();
  std::lock_guard tpm(tpm_mutex_);
  // Exclusive: start-up rewrites info_ and serving_, which transmit() reads under the shared lock.
  std::unique_lock ops(ops_lock_);
  if (!driver_) return enodev();
  auto result = startup_locked();
  serving_ = result.ok();
  if (!driver_->alive()) drop_driver_locked(result ? make_error(EPIPE, "transport broke") : result.error());
  return result;
}

Result<void> Chip::startup_locked() {
  auto probe_command = tpm::make_get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_TOTAL_COMMANDS, 1);
  auto probe = transmit_locked(probe_command);
  if (!probe) return make_error(probe.error().code, "probe failed: " + probe.error().message);
  if (auto tag = tpm::parse_response_header(*probe)->tag; tag != TPM2_ST_NO_SESSIONS) {
    return make_error(ENODEV, "not a TPM 2.0 (probe answered with tag " + hex16(tag) + ")");
  }
  if (*tpm::response_code(*probe) == TPM2_RC_FAILURE) {
    // Either an emulator that was never initialised or a TPM in failure mode; only the first can be helped.
    if (auto on = driver_->power_on(); on) {
      std::lock_guard lock(counters_mutex_);
      ++counters_.power_ons;
    }
  }

  auto self_test = [&]() -> Result<TPM2_RC> {
    auto r = transmit_locked(tpm::make_self_test(false));
    if (!r) return r.error();
    return tpm::response_code(*r);
  };
  auto rc = self_test();
  if (!rc) return rc.error();
  if (*rc == TPM2_RC_INITIALIZE) {
    spdlog::info("event=tpm-startup mode=clear");
    auto started = transmit_locked(tpm::make_startup(TPM2_SU_CLEAR));
    if (!started) return started.error();
    if (auto started_rc = *tpm::response_code(*started); started_rc != TPM2_RC_SUCCESS) {
      return make_error(EIO, "TPM2_Startup(CLEAR) failed with rc " + tpm::rc_name(started_rc));
    }
    {
      std::lock_guard lock(counters_mutex_);
      ++counters_.startups;
    }
    rc = self_test();
    if (!rc) return rc.error();
  }
  if (*rc == TPM2_RC_FAILURE) return make_error(EIO, "TPM is in failure mode (SelfTest answered TPM_RC_FAILURE)");
  if (*rc == TPM2_RC_UPGRADE) return make_error(EIO, "TPM is in field-upgrade mode (TPM_RC_UPGRADE)");
  if (*rc != TPM2_RC_SUCCESS && *rc != TPM2_RC_TESTING) {
    return make_error(EIO, "TPM2_SelfTest failed with rc " + tpm::rc_name(*rc));
  }
  return read_info_locked();
}

Result<void> Chip::read_info_locked() {
  auto query = [&](TPM2_CAP cap, std::uint32_t property, std::uint32_t count) -> Result<tpm::CapabilityPage> {
    auto r = transmit_locked(tpm::make_get_capability(cap, property, count));
    if (!r) return r.error();
    TPM2_RC rc = *tpm::response_code(*r);
    if (rc == TPM2_RC_FAILURE) return make_error(EIO, "TPM is in failure mode (GetCapability answered TPM_RC_FAILURE)");
    if (rc == TPM2_RC_UPGRADE) return make_error(EIO, "TPM is in field-upgrade mode (TPM_RC_UPGRADE)");
    if (rc != TPM2_RC_SUCCESS) return make_error(EIO, "GetCapability failed with rc " + tpm::rc_name(rc));
    return tpm::parse_get_capability(*r);
  };

  std::map<TPM2_PT, std::uint32_t> props;
  std::uint32_t next = TPM2_PT_FIXED;
  for (int page = 0; page < 16; ++page) {
    auto p = query(TPM2_CAP_TPM_PROPERTIES, next, TPM2_MAX_TPM_PROPERTIES);
    if (!p) return p.error();
    const auto& list = p->data.data.tpmProperties;
    if (list.count == 0 || list.count > TPM2_MAX_TPM_PROPERTIES) break;
    for (std::uint32_t i = 0; i < list.count; ++i) props[list.tpmProperty[i].property] = list.tpmProperty[i].value;
    std::uint32_t last = list.tpmProperty[list.count - 1].property;
    if (!p->more_data || last < next || last >= TPM2_PT_VAR) break;
    next = last + 1;
  }
  auto get = [&](TPM2_PT pt, std::uint32_t fallback) { return props.count(pt) ? props[pt] : fallback; };
  tpm::TpmInfo info;
  info.manufacturer = fourcc(get(TPM2_PT_MANUFACTURER, 0));
  info.vendor_string = fourcc(get(TPM2_PT_VENDOR_STRING_1, 0)) + fourcc(get(TPM2_PT_VENDOR_STRING_2, 0)) +
                       fourcc(get(TPM2_PT_VENDOR_STRING_3, 0)) + fourcc(get(TPM2_PT_VENDOR_STRING_4, 0));
  info.firmware_version = (std::uint64_t{get(TPM2_PT_FIRMWARE_VERSION_1, 0)} << 32) | get(TPM2_PT_FIRMWARE_VERSION_2, 0);
  info.family = get(TPM2_PT_FAMILY_INDICATOR, 0);
  info.revision = get(TPM2_PT_REVISION, 0);
  info.max_command_size = std::min<std::uint32_t>(get(TPM2_PT_MAX_COMMAND_SIZE, 4096), 65536);
  info.max_response_size = std::min<std::uint32_t>(get(TPM2_PT_MAX_RESPONSE_SIZE, 4096), 65536);
  info.max_object_context = get(TPM2_PT_MAX_OBJECT_CONTEXT, 0);
  info.max_session_context = get(TPM2_PT_MAX_SESSION_CONTEXT, 0);
  info.hr_transient_min = get(TPM2_PT_HR_TRANSIENT_MIN, 3);
  info.hr_loaded_min = get(TPM2_PT_HR_LOADED_MIN, 3);
  info.active_sessions_max = get(TPM2_PT_ACTIVE_SESSIONS_MAX, 64);
  info.context_gap_max = get(TPM2_PT_CONTEXT_GAP_MAX, 0xFFFF);
  info.total_commands = get(TPM2_PT_TOTAL_COMMANDS, 0);

  // The command table, page by page. Bounded however the TPM answers: a bounded number of pages, counts
  // must fit the page, and only entries above the last one kept are taken (a page that repeats or goes back
  // adds nothing and ends the loop), so the table stays sorted and free of duplicates.
  std::vector<tpm::CommandAttributes> commands;
  std::uint32_t next_cc = TPM2_CC_FIRST;
  for (int page = 0; page < 64; ++page) {
    auto p = query(TPM2_CAP_COMMANDS, next_cc, TPM2_MAX_CAP_CC);
    if (!p) return p.error();
    const auto& list = p->data.data.command;
    if (list.count > TPM2_MAX_CAP_CC) return make_error(EIO, "TPM reported an oversized command list");
    bool progressed = false;
    for (std::uint32_t i = 0; i < list.count; ++i) {
      tpm::CommandAttributes entry(list.commandAttributes[i]);
      if (entry.code() < next_cc) continue;
      commands.push_back(entry);
      next_cc = entry.code() + 1;
      progressed = true;
    }
    if (!progressed || !p->more_data) break;
  }
  if (commands.empty()) return make_error(EIO, "TPM reported no commands (field-upgrade mode?)");
  info.commands = tpm::CommandTable(std::move(commands));
  info_ = std::move(info);
  spdlog::info("event=tpm-probed manufacturer=\"{}\" vendor=\"{}\" family=\"{}\" commands={} object_slots={} "
               "session_slots={}",
               info_.manufacturer, info_.vendor_string, fourcc(info_.family), info_.commands.size(), info_.hr_transient_min,
               info_.hr_loaded_min);
  return {};
}

void Chip::unregister(ShutdownMode mode) {
  std::unique_lock ops(ops_lock_);  // waits for the command in flight
  if (!driver_) return;
  if (mode != ShutdownMode::kNone && serving_ && driver_->alive()) {
    auto r = driver_->exchange(tpm::make_shutdown(mode == ShutdownMode::kState ? TPM2_SU_STATE : TPM2_SU_CLEAR),
                               duration_for(TPM2_CC_Shutdown));
    if (!r) spdlog::warn("event=tpm-shutdown-failed error=\"{}\"", describe(r.error()));
  }
  drop_driver_locked(std::nullopt);
}

void Chip::drop_driver_locked(std::optional<Error> cause) {
  const Presence next = cause ? Presence::kLost : Presence::kUnregistered;
  if (cause) {
    spdlog::error("event=chip-lost action=unregister cause=\"{}\"", describe(*cause));
    std::lock_guard lock(lost_mutex_);
    lost_ = std::move(cause);
  }
  driver_.reset();
  presence_.store(next, std::memory_order_release);
}

}  // namespace tpmrmd::chip
