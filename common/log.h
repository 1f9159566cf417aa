// One-line-per-event logging to stderr, with a level that can change at runtime (config reload).
#pragma once

#include <atomic>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"

namespace shardyard {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
std::string_view LogLevelName(LogLevel level);

namespace log_internal {
extern std::atomic<int> g_min_level;
void Emit(LogLevel level, std::string_view line);
}  // namespace log_internal

void SetLogLevel(LogLevel level);
inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= log_internal::g_min_level.load(std::memory_order_relaxed);
}

// Formats only when the level is enabled.
template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (!LogEnabled(level)) return;
  log_internal::Emit(level, absl::StrFormat(format, args...));
}

// The level is checked before the arguments are evaluated (they may be costly to build).
#define SY_LOG_AT(level, ...)                                                 \
  do {                                                                        \
    if (::shardyard::LogEnabled(level)) ::shardyard::Log(level, __VA_ARGS__); \
  } while (0)
#define SY_LOG_DEBUG(...) SY_LOG_AT(::shardyard::LogLevel::kDebug, __VA_ARGS__)
#define SY_LOG_INFO(...) SY_LOG_AT(::shardyard::LogLevel::kInfo, __VA_ARGS__)
#define SY_LOG_WARNING(...) SY_LOG_AT(::shardyard::LogLevel::kWarning, __VA_ARGS__)
#define SY_LOG_ERROR(...) SY_LOG_AT(::shardyard::LogLevel::kError, __VA_ARGS__)

}  // namespace shardyard
