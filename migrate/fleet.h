// Orders work across shards: canary shards first, then the rest N at a time,
// stopping on failure.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/duration.h"
#include "migrate/progress.h"

namespace shardyard::migrate {

enum class ShardResult { kNotStarted, kDone, kFailed, kStopped, kGaveUp };
std::string_view ShardResultName(ShardResult result);

struct ShardOutcome {
  int shard = 0;
  std::string endpoint;
  ShardResult result = ShardResult::kNotStarted;
  std::string from;    // version before the run ("-" for none)
  std::string to;      // version after the run
  int migrations = 0;  // migrations applied (or rolled back) in this run
  Duration elapsed{0};
  int retries = 0;
  int64_t rows_backfilled = 0;
  std::string error;
};

struct FleetOrder {
  std::vector<int> shards;  // in order; the first `canary` are the canaries
  int canary = 1;
  int parallel = 4;
};

// Runs `job` for every shard: the canaries (up to `parallel` at once) and, only
// if they all finished, the others `parallel` at a time. After the first
// failure no new shard starts; shards in flight see `stop` and stop after their
// current step. Shards never started keep kNotStarted.
std::vector<ShardOutcome> RunFleet(const FleetOrder& order,
                                   const std::function<ShardOutcome(int shard)>& job,
                                   StopSignal& stop);

// The exit code for a set of outcomes: 0 all done; 1 a shard failed (or
// stopped, or never started, with no lock contention to blame); 3 a shard gave
// up on lock contention.
int ExitCodeFor(const std::vector<ShardOutcome>& outcomes);

// The final summary table.
std::string SummaryTable(const std::vector<ShardOutcome>& outcomes);

}  // namespace shardyard::migrate
