// Unit tests for command-line parsing and for the fleet's canary /
// stop-on-failure ordering.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "migrate/commands.h"
#include "migrate/fleet.h"

namespace shardyard::migrate {
namespace {

ShardOutcome Outcome(int shard, ShardResult result) {
  ShardOutcome o;
  o.shard = shard;
  o.result = result;
  return o;
}

TEST(CommandLineTest, ParsesOptionsInAnyOrder) {
  auto o = ParseCommandLine({"--config",
                             "c.yaml",
                             "apply",
                             "--database=app",
                             "--dir",
                             "m",
                             "--to",
                             "7",
                             "--shards",
                             "0,2",
                             "--canary",
                             "2",
                             "--parallel=3",
                             "--dry-run",
                             "--allow",
                             "drop-column,rename-table",
                             "--lock-timeout",
                             "500ms",
                             "--lock-retry-deadline",
                             "30s"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, "apply");
  EXPECT_EQ(o->config_path, "c.yaml");
  EXPECT_EQ(o->database, "app");
  EXPECT_EQ(o->dir, "m");
  EXPECT_EQ(o->to, 7);
  EXPECT_EQ(o->shards, (std::vector<int>{0, 2}));
  EXPECT_EQ(o->canary, 2);
  EXPECT_EQ(o->parallel, 3);
  EXPECT_TRUE(o->dry_run);
  EXPECT_EQ(o->allow, (std::vector<std::string>{"drop-column", "rename-table"}));
  EXPECT_EQ(o->lock_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(o->lock_retry_deadline, std::chrono::seconds(30));
}

TEST(CommandLineTest, Defaults) {
  auto o = ParseCommandLine({"status"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->canary, 1);
  EXPECT_EQ(o->parallel, 4);
  EXPECT_EQ(o->lock_timeout, std::chrono::seconds(1));
  EXPECT_EQ(o->lock_retry_deadline, std::chrono::minutes(10));
  EXPECT_EQ(o->max_replica_lag, std::chrono::seconds(5));
}

TEST(CommandLineTest, RejectsMistakes) {
  EXPECT_FALSE(ParseCommandLine({}).ok());
  EXPECT_FALSE(ParseCommandLine({"migrate"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--parallel", "0"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--shards", "a"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--allow", "no-such-rule"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--lock-timeout", "fast"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--to"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "--frobnicate"}).ok());
  EXPECT_FALSE(ParseCommandLine({"apply", "extra"}).ok());
  EXPECT_FALSE(ParseCommandLine({"new"}).ok());
  EXPECT_FALSE(ParseCommandLine({"lint"}).ok());
  EXPECT_TRUE(ParseCommandLine({"lint", "a.sql", "b.sql"}).ok());
}

TEST(CommandLineTest, UsageErrorsExitTwo) {
  CliOptions o;
  o.command = "status";
  EXPECT_EQ(RunCommand(o, stdout, stderr), kExitUsage);  // no --config
  o.config_path = "/nonexistent/shardyard.yaml";
  o.database = "app";
  EXPECT_EQ(RunCommand(o, stdout, stderr), kExitUsage);
}

TEST(FleetTest, CanaryRunsAloneFirstThenTheRest) {
  StopSignal stop;
  std::mutex mu;
  std::vector<int> started;
  FleetOrder order{{0, 1, 2, 3}, 1, 4};
  auto outcomes = RunFleet(
      order,
      [&](int shard) {
        {
          std::lock_guard<std::mutex> lock(mu);
          started.push_back(shard);
        }
        return Outcome(shard, ShardResult::kDone);
      },
      stop);
  ASSERT_EQ(started.size(), 4u);
  EXPECT_EQ(started[0], 0);
  EXPECT_EQ(ExitCodeFor(outcomes), kExitDone);
  for (size_t i = 0; i < outcomes.size(); ++i) EXPECT_EQ(outcomes[i].shard, static_cast<int>(i));
}

TEST(FleetTest, CanaryFailureStartsNoOtherShard) {
  StopSignal stop;
  int runs = 0;
  auto outcomes = RunFleet(
      FleetOrder{{2, 0, 1}, 1, 4},
      [&](int shard) {
        ++runs;
        return Outcome(shard, ShardResult::kFailed);
      },
      stop);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(outcomes[0].result, ShardResult::kFailed);
  EXPECT_EQ(outcomes[1].result, ShardResult::kNotStarted);
  EXPECT_EQ(ExitCodeFor(outcomes), kExitFailed);
}

TEST(FleetTest, FailureStopsNewShardsOneAtATime) {
  StopSignal stop;
  std::vector<int> ran;
  auto outcomes = RunFleet(
      FleetOrder{{0, 1, 2, 3}, 1, 1},
      [&](int shard) {
        ran.push_back(shard);
        return Outcome(shard, shard == 1 ? ShardResult::kFailed : ShardResult::kDone);
      },
      stop);
  EXPECT_EQ(ran, (std::vector<int>{0, 1}));
  EXPECT_EQ(outcomes[2].result, ShardResult::kNotStarted);
}

// The shards of one batch are in flight together: a failure on one must not
// keep the others of its batch from starting, however late their threads start;
// it only keeps the next batch from starting.
TEST(FleetTest, FailureInABatchLetsTheRestOfTheBatchRunAndStartsNoMore) {
  for (int round = 0; round < 50; ++round) {
    StopSignal stop;
    std::mutex mu;
    std::set<int> ran;
    auto outcomes = RunFleet(
        FleetOrder{{0, 1, 2, 3, 4, 5}, 0, 3},
        [&](int shard) {
          {
            std::lock_guard<std::mutex> lock(mu);
            ran.insert(shard);
          }
          if (shard == 0) return Outcome(shard, ShardResult::kFailed);
          // Still in flight when the failure is recorded (a bounded wait, so
          // that a broken fleet fails the test instead of hanging it).
          auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
          while (!stop.fleet_failed() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::yield();
          }
          return Outcome(shard, ShardResult::kDone);
        },
        stop);
    ASSERT_EQ(ran, (std::set<int>{0, 1, 2})) << "round " << round;
    EXPECT_EQ(outcomes[0].result, ShardResult::kFailed);
    EXPECT_EQ(outcomes[1].result, ShardResult::kDone);
    EXPECT_EQ(outcomes[2].result, ShardResult::kDone);
    for (size_t i = 3; i < outcomes.size(); ++i)
      EXPECT_EQ(outcomes[i].result, ShardResult::kNotStarted);
    EXPECT_EQ(ExitCodeFor(outcomes), kExitFailed);
  }
}

TEST(FleetTest, ExitCodes) {
  auto make = [](std::vector<ShardResult> results) {
    std::vector<ShardOutcome> out;
    for (ShardResult r : results) out.push_back(Outcome(0, r));
    return out;
  };
  EXPECT_EQ(ExitCodeFor(make({ShardResult::kDone, ShardResult::kDone})), kExitDone);
  EXPECT_EQ(ExitCodeFor(make({ShardResult::kDone, ShardResult::kGaveUp, ShardResult::kStopped,
                              ShardResult::kNotStarted})),
            kExitLockContention);
  EXPECT_EQ(ExitCodeFor(make({ShardResult::kGaveUp, ShardResult::kFailed})), kExitFailed);
  EXPECT_EQ(ExitCodeFor(make({ShardResult::kStopped})), kExitFailed);
}

}  // namespace
}  // namespace shardyard::migrate
