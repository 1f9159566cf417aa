// Canary-then-parallel scheduling with threads; each shard's job runs entirely
// on one thread.
#include "migrate/fleet.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/strings.h"

namespace shardyard::migrate {

std::string_view ShardResultName(ShardResult result) {
  switch (result) {
    case ShardResult::kNotStarted:
      return "not started";
    case ShardResult::kDone:
      return "done";
    case ShardResult::kFailed:
      return "FAILED";
    case ShardResult::kStopped:
      return "stopped";
    case ShardResult::kGaveUp:
      return "gave up";
  }
  return "?";
}

namespace {

// Runs a wave `parallel` shards at a time. The first `parallel` shards are in
// flight together from the start: a failure on one of them does not keep the
// others from starting (whichever thread happens to start last), it only keeps
// further shards from starting. Ctrl-C keeps every shard not yet started from
// starting.
void RunWave(const std::vector<int>& shards, int parallel,
             const std::function<ShardOutcome(int)>& job, StopSignal& stop,
             std::vector<ShardOutcome>* outcomes, const std::vector<int>& all) {
  const size_t threads =
      static_cast<size_t>(std::max(1, std::min<int>(parallel, static_cast<int>(shards.size()))));
  std::atomic<size_t> next{threads};
  auto run = [&](size_t i) {
    int shard = shards[i];
    ShardOutcome outcome = job(shard);
    if (outcome.result != ShardResult::kDone) stop.FleetFailed();
    size_t slot = static_cast<size_t>(std::find(all.begin(), all.end(), shard) - all.begin());
    (*outcomes)[slot] = std::move(outcome);
  };
  auto worker = [&](size_t first) {
    if (first >= shards.size() || stop.interrupted()) return;
    run(first);
    while (!stop.ShouldStop()) {
      size_t i = next.fetch_add(1);
      if (i >= shards.size()) return;
      run(i);
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (std::thread& t : pool) t.join();
}

}  // namespace

std::vector<ShardOutcome> RunFleet(const FleetOrder& order,
                                   const std::function<ShardOutcome(int)>& job, StopSignal& stop) {
  std::vector<ShardOutcome> outcomes(order.shards.size());
  for (size_t i = 0; i < order.shards.size(); ++i) outcomes[i].shard = order.shards[i];
  size_t canaries =
      std::min<size_t>(static_cast<size_t>(std::max(order.canary, 0)), order.shards.size());
  std::vector<int> first(order.shards.begin(), order.shards.begin() + canaries);
  std::vector<int> rest(order.shards.begin() + canaries, order.shards.end());
  RunWave(first, order.parallel, job, stop, &outcomes, order.shards);
  if (!stop.ShouldStop()) RunWave(rest, order.parallel, job, stop, &outcomes, order.shards);
  return outcomes;
}

int ExitCodeFor(const std::vector<ShardOutcome>& outcomes) {
  bool failed = false, gave_up = false, unfinished = false;
  for (const ShardOutcome& o : outcomes) {
    failed = failed || o.result == ShardResult::kFailed;
    gave_up = gave_up || o.result == ShardResult::kGaveUp;
    unfinished =
        unfinished || o.result == ShardResult::kStopped || o.result == ShardResult::kNotStarted;
  }
  // Shards stopped because another gave up on contention share its exit code.
  if (failed) return 1;
  if (gave_up) return 3;
  return unfinished ? 1 : 0;
}

std::string SummaryTable(const std::vector<ShardOutcome>& outcomes) {
  std::string out = absl::StrFormat("%-6s %-22s %-12s %-24s %-24s %-10s %-9s %-8s %-10s %s\n",
                                    "shard", "endpoint", "result", "from", "to", "migrations",
                                    "elapsed", "retries", "rows", "note");
  for (const ShardOutcome& o : outcomes) {
    out += absl::StrFormat("%-6d %-22s %-12s %-24s %-24s %-10d %-9s %-8d %-10d %s\n", o.shard,
                           o.endpoint, ShardResultName(o.result), o.from.empty() ? "-" : o.from,
                           o.to.empty() ? "-" : o.to, o.migrations, FormatElapsed(o.elapsed),
                           o.retries, o.rows_backfilled, o.error);
  }
  return out;
}

}  // namespace shardyard::migrate
