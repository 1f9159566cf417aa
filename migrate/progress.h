// Progress output shared by shard threads, and the stop flag that Ctrl-C and
// failures raise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include "common/duration.h"

namespace shardyard::migrate {

// Writes whole lines to one stream from many threads.
class Reporter {
 public:
  explicit Reporter(std::FILE* out) : out_(out) {}
  void Line(std::string_view text);

 private:
  std::FILE* out_;
  std::mutex mu_;
};

// "0.4s", "12.0s", "3m05s", "1h02m".
std::string FormatElapsed(Duration d);

// Raised by SIGINT/SIGTERM (between steps, runs stop cleanly) and by the first
// shard failure (no new shard starts; shards in flight stop after their current
// step).
class StopSignal {
 public:
  // Counts SIGINT/SIGTERM; safe to call from a signal handler.
  static void OnSignal();
  static int SignalCount();

  void FleetFailed() { fleet_failed_.store(true); }
  bool fleet_failed() const { return fleet_failed_.load(); }
  bool interrupted() const { return SignalCount() > 0; }
  bool ShouldStop() const { return interrupted() || fleet_failed(); }
  // Sleeps for `d`; returns false early on Ctrl-C (a failure elsewhere lets the
  // current step finish, so it does not cut sleeps short).
  bool SleepFor(Duration d) const;

 private:
  std::atomic<bool> fleet_failed_{false};
};

}  // namespace shardyard::migrate
