// Implements the duration and size grammar shared by the config loader and command-line flags.
#include "common/duration.h"

#include <array>
#include <limits>
#include <utility>

#include "common/strings.h"

namespace shardyard {
namespace {

std::string_view StripSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits "250ms" into (250, "ms"); fails on a missing or negative number.
absl::StatusOr<std::pair<int64_t, std::string_view>> SplitNumber(std::string_view text) {
  text = StripSpaces(text);
  size_t i = 0;
  while (i < text.size() && (text[i] >= '0' && text[i] <= '9')) ++i;
  int64_t value = 0;
  if (i == 0 || !ParseInt(text.substr(0, i), &value)) {
    return absl::InvalidArgumentError(Cat("\"", text, "\" does not start with a whole number"));
  }
  return std::make_pair(value, StripSpaces(text.substr(i)));
}

}  // namespace

absl::StatusOr<Duration> ParseDuration(std::string_view text) {
  auto split = SplitNumber(text);
  if (!split.ok()) return split.status();
  auto [value, unit] = *split;
  static constexpr std::array<std::pair<std::string_view, int64_t>, 6> kUnits = {{
      {"us", 1'000},
      {"ms", 1'000'000},
      {"s", 1'000'000'000},
      {"m", 60'000'000'000},
      {"h", 3'600'000'000'000},
      {"d", 86'400'000'000'000},
  }};
  if (unit.empty()) {
    if (value == 0) return Duration(0);
    return absl::InvalidArgumentError(
        Cat("\"", text, "\" needs a unit: us, ms, s, m, h or d (for example \"", value, "s\")"));
  }
  for (const auto& [name, nanos] : kUnits) {
    if (unit != name) continue;
    if (value > std::numeric_limits<int64_t>::max() / nanos) {
      return absl::InvalidArgumentError(Cat("\"", text, "\" is too long"));
    }
    return Duration(value * nanos);
  }
  return absl::InvalidArgumentError(
      Cat("\"", text, "\" has an unknown unit \"", unit, "\" (use us, ms, s, m, h or d)"));
}

std::string FormatDuration(Duration d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  static constexpr std::array<std::pair<std::string_view, int64_t>, 5> kUnits = {{
      {"h", 3'600'000'000'000},
      {"m", 60'000'000'000},
      {"s", 1'000'000'000},
      {"ms", 1'000'000},
      {"us", 1'000},
  }};
  for (const auto& [name, nanos] : kUnits) {
    if (ns % nanos == 0) return Cat(ns / nanos, name);
  }
  return Cat(ns, "ns");
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  auto split = SplitNumber(text);
  if (!split.ok()) return split.status();
  auto [value, unit] = *split;
  std::string u = ToLowerAscii(unit);
  int64_t mult = 0;
  if (u.empty() || u == "b") {
    mult = 1;
  } else if (u == "kb" || u == "k") {
    mult = int64_t{1} << 10;
  } else if (u == "mb" || u == "m") {
    mult = int64_t{1} << 20;
  } else if (u == "gb" || u == "g") {
    mult = int64_t{1} << 30;
  } else {
    return absl::InvalidArgumentError(
        Cat("\"", text, "\" has an unknown unit \"", unit, "\" (use B, kB, MB or GB)"));
  }
  if (value > std::numeric_limits<int64_t>::max() / mult) {
    return absl::InvalidArgumentError(Cat("\"", text, "\" is too large"));
  }
  return value * mult;
}

}  // namespace shardyard
