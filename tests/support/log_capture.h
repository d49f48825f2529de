// Captures what is logged to the default logger for the lifetime of the object: an spdlog ringbuffer sink takes
// the place of the default logger's sinks, at trace level, and the previous logger comes back afterwards.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tpmrmd::testing {

class LogCapture {
 public:
  explicit LogCapture(std::size_t lines = 4096)
      : previous_(spdlog::default_logger()), sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(lines)) {
    sink_->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // "LEVEL payload", oldest first.
  std::vector<std::string> lines() const { return sink_->last_formatted(); }
  // Lines containing every one of `parts`.
  std::vector<std::string> matching(std::initializer_list<std::string_view> parts) const {
    std::vector<std::string> out;
    for (auto& line : lines()) {
      if (std::all_of(parts.begin(), parts.end(), [&](std::string_view p) { return line.find(p) != std::string::npos; })) {
        out.push_back(line);
      }
    }
    return out;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

}  // namespace tpmrmd::testing
