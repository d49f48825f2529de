// Captures what the RM writes to the audit trail: registers the "audit" logger with an in-memory sink for the
// lifetime of the object.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rm/audit_log.h"

namespace tpmrmd::testing {

class AuditCapture {
 public:
  AuditCapture() : sink_(std::make_shared<Sink>()) {
    spdlog::drop(std::string(rm::kAuditLoggerName));
    auto logger = std::make_shared<spdlog::logger>(std::string(rm::kAuditLoggerName), sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::register_logger(logger);
  }
  ~AuditCapture() { spdlog::drop(std::string(rm::kAuditLoggerName)); }
  AuditCapture(const AuditCapture&) = delete;
  AuditCapture& operator=(const AuditCapture&) = delete;

  std::vector<std::string> lines() const {
    std::lock_guard lock(sink_->mutex);
    return sink_->lines;
  }
  // Lines containing every one of `parts`.
  std::size_t count(std::initializer_list<std::string_view> parts) const {
    auto all = lines();
    return std::count_if(all.begin(), all.end(), [&](const std::string& line) {
      return std::all_of(parts.begin(), parts.end(),
                         [&](std::string_view p) { return line.find(p) != std::string::npos; });
    });
  }

 private:
  struct Sink : spdlog::sinks::base_sink<std::mutex> {
    mutable std::mutex mutex;
    std::vector<std::string> lines;

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      std::lock_guard lock(mutex);
      lines.emplace_back(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}
  };
  std::shared_ptr<Sink> sink_;
};

}  // namespace tpmrmd::testing
