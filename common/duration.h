// Parses and prints the human units config files use: durations ("250ms", "5s") and sizes ("64MB").
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace shardyard {

using Duration = std::chrono::nanoseconds;

// Accepts an integer followed by one of us, ms, s, m, h, d ("0" alone is also allowed).
absl::StatusOr<Duration> ParseDuration(std::string_view text);
// The shortest exact form, e.g. "1500ms", "2m", "0s".
std::string FormatDuration(Duration d);

// Accepts a byte count, optionally followed by B, kB, MB, GB (powers of 1024).
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

}  // namespace shardyard
