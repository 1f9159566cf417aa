// Writes log lines to stderr with one write(2) each, so lines from worker threads never interleave.
#include "common/log.h"

#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/strings.h"

namespace shardyard {
namespace log_internal {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

void Emit(LogLevel level, std::string_view line) {
  std::string out = absl::FormatTime("%Y-%m-%d %H:%M:%E3S %Z", absl::Now(), absl::LocalTimeZone());
  absl::StrAppendFormat(&out, " [%d] %s %s\n", getpid(), LogLevelName(level), line);
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // Nowhere better to report a failing stderr.
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace log_internal

void SetLogLevel(LogLevel level) {
  log_internal::g_min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  std::string n = ToLowerAscii(name);
  if (n == "debug") return LogLevel::kDebug;
  if (n == "info" || n == "log") return LogLevel::kInfo;
  if (n == "warning" || n == "warn") return LogLevel::kWarning;
  if (n == "error") return LogLevel::kError;
  return absl::InvalidArgumentError("must be one of debug, info, warning, error");
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "LOG";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "LOG";
}

}  // namespace shardyard
