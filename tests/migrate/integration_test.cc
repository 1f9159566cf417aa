// shardyard-migrate against real PostgreSQL shards:
// apply/status/rollback/verify, failures, resume.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "common/strings.h"
#include "tests/migrate/cluster.h"

namespace shardyard::migrate::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class MigrateTest : public ::testing::Test {
 protected:
  void StartCluster(Cluster::Options options = {}) {
    auto c = Cluster::Start(options);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  Cluster& c() { return *cluster_; }

  // Runs the tool and shows its output when the exit code is not the expected
  // one.
  CommandResult Expect(int exit_code, const std::vector<std::string>& args) {
    CommandResult r = c().Migrate(args);
    if (getenv("SHARDYARD_MIGRATE_SHOW_OUTPUT")) {
      std::printf("$ shardyard-migrate %s  # exit %d\n%s\n", Join(args, " ").c_str(), r.exit_code,
                  r.output.c_str());
    }
    EXPECT_EQ(r.exit_code, exit_code) << Join(args, " ") << "\n" << r.output;
    return r;
  }

  std::unique_ptr<Cluster> cluster_;
};

constexpr const char* kCreateOrders =
    "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL "
    "DEFAULT 0);\n";

TEST_F(MigrateTest, ApplyStatusRollbackAndVerifyOnFourShards) {
  StartCluster();
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  c().WriteMigration("0001_create_orders.down.sql", "DROP TABLE IF EXISTS orders;\n");
  c().WriteMigration("0002_add_note.sql", "ALTER TABLE orders ADD COLUMN note text;\n");
  c().WriteMigration("0002_add_note.down.sql", "ALTER TABLE orders DROP COLUMN IF EXISTS note;\n");

  CommandResult before = Expect(0, {"status"});
  EXPECT_NE(before.output.find("4 shard(s), 2 migration(s)"), std::string::npos) << before.output;

  Expect(0, {"apply", "--to", "1"});
  EXPECT_EQ(c().Value(2, "SELECT string_agg(version::text, ',') FROM shardyard_migrations"), "1");
  CommandResult applied = Expect(0, {"apply"});
  EXPECT_NE(applied.output.find("summary:"), std::string::npos);
  EXPECT_NE(applied.output.find("ACCESS EXCLUSIVE on orders"), std::string::npos) << applied.output;
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(c().Value(s,
                        "SELECT count(*) FROM shardyard_migrations WHERE "
                        "status = 'applied'"),
              "2");
    EXPECT_EQ(c().Value(s,
                        "SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'orders' AND column_name = 'note'"),
              "1");
    EXPECT_EQ(c().Value(s, "SELECT count(*) FROM shardyard_migrate_lock"), "0");
  }
  CommandResult status = Expect(0, {"status"});
  EXPECT_NE(status.output.find("0002_add_note"), std::string::npos) << status.output;
  CommandResult json = Expect(0, {"status", "--json"});
  EXPECT_NE(json.output.find("\"current\":\"0002_add_note\""), std::string::npos) << json.output;
  EXPECT_NE(json.output.find("\"checksum_matches\":true"), std::string::npos);

  Expect(0, {"apply"});  // nothing to do
  Expect(0, {"verify"});
  ASSERT_TRUE(c().Exec(3, "ALTER TABLE orders ADD COLUMN drift int").ok());
  CommandResult drift = Expect(1, {"verify"});
  EXPECT_NE(drift.output.find("+ column public.orders.drift: integer"), std::string::npos)
      << drift.output;
  ASSERT_TRUE(c().Exec(3, "ALTER TABLE orders DROP COLUMN drift").ok());

  Expect(0, {"rollback"});
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(c().Value(s,
                        "SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'orders' AND column_name = 'note'"),
              "0");
    EXPECT_EQ(c().Value(s, "SELECT string_agg(version::text, ',') FROM shardyard_migrations"), "1");
  }
  Expect(0, {"rollback", "--to", "0"});
  EXPECT_EQ(c().Value(2, "SELECT to_regclass('orders') IS NULL"), "t");
  Expect(0, {"apply"});
  Expect(0, {"verify"});
  EXPECT_EQ(c().Value(1, "SELECT count(*) FROM shardyard_migrations"), "2");
}

TEST_F(MigrateTest, RefusesAnAppliedFileThatChanged) {
  StartCluster({.shards = 2});
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  Expect(0, {"apply"});
  c().WriteMigration("0001_create_orders.sql",
                     "CREATE TABLE orders (id bigint PRIMARY KEY, total bigint);\n");
  c().WriteMigration("0002_add_note.sql", "ALTER TABLE orders ADD COLUMN note text;\n");
  CommandResult r = Expect(1, {"apply"});
  EXPECT_NE(r.output.find("changed after it was applied"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("recorded checksum  sha256:"), std::string::npos);
  EXPECT_NE(r.output.find("file checksum      sha256:"), std::string::npos);
  EXPECT_EQ(c().Value(0, "SELECT count(*) FROM shardyard_migrations"),
            "1");  // 0002 not run
  CommandResult status = Expect(1, {"status"});
  EXPECT_NE(status.output.find("CHECKSUM MISMATCH 0001_create_orders"), std::string::npos)
      << status.output;
}

TEST_F(MigrateTest, ConflictOnOneShardFailsWhileTheOthersFinishAndApplyConvergesAfterTheFix) {
  StartCluster();
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  Expect(0, {"apply"});
  ASSERT_TRUE(c().Exec(2, "CREATE TABLE customers (id text)").ok());  // the conflicting object
  c().WriteMigration("0002_create_customers.sql",
                     "CREATE TABLE customers (id bigint PRIMARY KEY, name text);\n");
  CommandResult failed = Expect(1, {"apply"});
  EXPECT_NE(failed.output.find("already exists"), std::string::npos) << failed.output;
  for (int s : {0, 1, 3}) {
    EXPECT_EQ(c().Value(s, "SELECT status FROM shardyard_migrations WHERE version = 2"), "applied");
  }
  EXPECT_EQ(c().Value(2, "SELECT status FROM shardyard_migrations WHERE version = 2"), "failed");
  CommandResult status = Expect(1, {"status"});
  EXPECT_NE(status.output.find("FAILED 0002_create_customers"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("relation \"customers\" already exists"), std::string::npos);
  Expect(1, {"verify"});

  ASSERT_TRUE(c().Exec(2, "DROP TABLE customers").ok());  // the operator's fix
  Expect(0, {"apply"});
  Expect(0, {"status"});
  Expect(0, {"verify"});
}

TEST_F(MigrateTest, CanaryFailureStartsNoOtherShard) {
  StartCluster({.shards = 3});
  ASSERT_TRUE(c().Exec(0, "CREATE TABLE orders (id int)").ok());
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  CommandResult r = Expect(1, {"apply"});
  EXPECT_NE(r.output.find("not started"), std::string::npos) << r.output;
  EXPECT_EQ(c().Value(1, "SELECT to_regclass('orders') IS NULL"), "t");
  EXPECT_EQ(c().Value(2, "SELECT to_regclass('orders') IS NULL"), "t");
  // Nothing of it was applied anywhere, so the file may still be fixed.
  c().WriteMigration("0001_create_orders.sql",
                     "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY "
                     "KEY, total numeric NOT NULL);\n");
  CommandResult status = Expect(1, {"status"});
  EXPECT_EQ(status.output.find("CHECKSUM MISMATCH"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("FAILED 0001_create_orders"), std::string::npos);
  // --shards and --canary 0 pick the shards and order.
  Expect(0, {"apply", "--shards", "1,2", "--canary", "0"});
  EXPECT_EQ(c().Value(2, "SELECT to_regclass('orders') IS NOT NULL"), "t");
  EXPECT_EQ(c().Value(0, "SELECT status FROM shardyard_migrations"), "failed");
  Expect(0, {"apply"});
  EXPECT_EQ(c().Value(0, "SELECT status FROM shardyard_migrations"), "applied");
}

TEST_F(MigrateTest, PlanAndDryRunChangeNothingAndLintRefusesUnsafeApply) {
  StartCluster({.shards = 2});
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  Expect(0, {"apply"});
  c().WriteMigration("0002_index.sql", "CREATE INDEX orders_total_idx ON orders (total);\n");
  CommandResult plan = Expect(1, {"plan"});
  EXPECT_NE(plan.output.find("SHARE on orders"), std::string::npos) << plan.output;
  EXPECT_NE(plan.output.find("create-index-non-concurrently"), std::string::npos);
  EXPECT_NE(plan.output.find("CREATE INDEX CONCURRENTLY"), std::string::npos);
  CommandResult refused = Expect(1, {"apply"});
  EXPECT_NE(refused.output.find("refusing to apply"), std::string::npos) << refused.output;
  EXPECT_EQ(c().Value(0, "SELECT to_regclass('orders_total_idx') IS NULL"), "t");

  c().WriteMigration("0002_index.sql",
                     "-- shardyard: no-transaction\n"
                     "CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total);\n");
  CommandResult safe_plan = Expect(0, {"plan"});
  EXPECT_NE(safe_plan.output.find("SHARE UPDATE EXCLUSIVE on orders"), std::string::npos)
      << safe_plan.output;
  EXPECT_NE(safe_plan.output.find("shards 0,1"), std::string::npos);
  CommandResult dry = Expect(0, {"apply", "--dry-run"});
  EXPECT_NE(dry.output.find("dry run"), std::string::npos);
  EXPECT_EQ(c().Value(1, "SELECT to_regclass('orders_total_idx') IS NULL"), "t");
  EXPECT_EQ(c().Value(1, "SELECT count(*) FROM shardyard_migrations"), "1");
  Expect(0, {"apply"});
  EXPECT_EQ(c().Value(1,
                      "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                      "'orders_total_idx'::regclass"),
            "t");

  c().WriteMigration("0003_drop.sql", "ALTER TABLE orders DROP COLUMN total;\n");
  Expect(1, {"apply"});
  Expect(0, {"apply", "--allow", "drop-column"});
}

TEST_F(MigrateTest, AnotherLiveRunnerHoldingTheLockMeansExitThree) {
  StartCluster({.shards = 2});
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  Expect(0, {"apply"});
  c().WriteMigration("0002_add_note.sql", "ALTER TABLE orders ADD COLUMN note text;\n");
  ASSERT_TRUE(c().Exec(1,
                       "INSERT INTO shardyard_migrate_lock VALUES "
                       "(1, 'elsewhere:4242:1', now(), now(), now() + interval "
                       "'1 minute')")
                  .ok());
  CommandResult r = Expect(3, {"apply"});
  EXPECT_NE(r.output.find("another run holds the runner lock"), std::string::npos) << r.output;
  EXPECT_EQ(c().Value(0, "SELECT count(*) FROM shardyard_migrations"), "1");
  EXPECT_EQ(c().Value(0, "SELECT count(*) FROM shardyard_migrate_lock"),
            "0");  // released
  ASSERT_TRUE(c().Exec(1,
                       "UPDATE shardyard_migrate_lock SET expires_at = now() - "
                       "interval '1s'")
                  .ok());
  Expect(0, {"apply"});  // an expired lock is taken over
}

TEST_F(MigrateTest, GivesUpWithExitThreeWhenTheLockNeverFrees) {
  StartCluster({.shards = 1});
  c().WriteMigration("0001_create_orders.sql", kCreateOrders);
  Expect(0, {"apply"});
  c().WriteMigration("0002_add_note.sql", "ALTER TABLE orders ADD COLUMN note text;\n");
  auto blocker = c().Connect(0);
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE(shardyard::testing::Exec(blocker->get(), "BEGIN; SELECT * FROM orders").ok());
  auto start = std::chrono::steady_clock::now();
  CommandResult r =
      Expect(3, {"apply", "--lock-timeout", "100ms", "--lock-retry-deadline", "1500ms"});
  EXPECT_LT(MillisSince(start), 5000);
  EXPECT_NE(r.output.find("gave up on lock contention"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("canceling statement due to lock timeout"), std::string::npos);
  ASSERT_TRUE(shardyard::testing::Exec(blocker->get(), "COMMIT").ok());
  Expect(0, {"apply"});
}

// Waits for `needle` in a background run's log; fails the test with the log
// otherwise.
void WaitForLog(Daemon& run, const std::string& needle, seconds timeout = seconds(30)) {
  ASSERT_TRUE(run.WaitForLog(needle, timeout)) << "no \"" << needle << "\" in:\n" << run.Log();
}

TEST_F(MigrateTest, KillNineMidNonTransactionalMigrationAndReRunConvergesWithoutRepeatingSteps) {
  StartCluster();
  c().WriteMigration("0001_tables.sql",
                     "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric);\n"
                     "CREATE TABLE step_log (step int NOT NULL);\n"
                     "INSERT INTO orders SELECT g, g FROM generate_series(1, 2000) g;\n");
  Expect(0, {"apply"});
  // Every INSERT is a step whose repetition would show; the sleeps widen the
  // windows to kill in.
  c().WriteMigration("0002_steps.sql",
                     "-- shardyard: no-transaction\n"
                     "INSERT INTO step_log VALUES (1);\n"
                     "SELECT pg_sleep(0.3);\n"
                     "ALTER TABLE orders ADD COLUMN a int;\n"
                     "INSERT INTO step_log VALUES (2);\n"
                     "CREATE INDEX CONCURRENTLY orders_a_idx ON orders (a);\n"
                     "INSERT INTO step_log VALUES (3);\n"
                     "SELECT pg_sleep(1);\n"
                     "ALTER TABLE orders ADD COLUMN b int;\n"
                     "INSERT INTO step_log VALUES (4);\n");
  // An old snapshot on shard 1 makes its concurrent index build wait, so the
  // kill lands inside it.
  auto blocker = c().Connect(1);
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE(shardyard::testing::Exec(blocker->get(),
                                       "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                                       "SELECT count(*) FROM step_log")
                  .ok());
  {
    auto run = c().MigrateInBackground({"apply", "--canary", "0"}, "run1.log");
    ASSERT_TRUE(run.ok());
    WaitForLog(**run, "shard 1 0002_steps step 5/9: CREATE INDEX CONCURRENTLY");
    std::this_thread::sleep_for(milliseconds(400));
    (*run)->Signal(SIGKILL);
    ASSERT_TRUE((*run)->Wait(seconds(10)).has_value());
  }
  {
    // The dead runner's lock is taken over at once. The re-run finds the
    // INVALID index the killed build left on shard 1 and rebuilds it; kill it
    // again inside that rebuild.
    auto run = c().MigrateInBackground({"apply", "--canary", "0"}, "run2.log");
    ASSERT_TRUE(run.ok());
    WaitForLog(**run, "shard 1 0002_steps step 5/9: dropping INVALID index");
    std::this_thread::sleep_for(milliseconds(400));
    (*run)->Signal(SIGKILL);
    ASSERT_TRUE((*run)->Wait(seconds(10)).has_value());
    EXPECT_NE((*run)->Log().find("shard 0 0002_steps step 7/9"), std::string::npos)
        << "shard 0 should have resumed at the step it was killed in:\n"
        << (*run)->Log();
  }
  CommandResult dirty = Expect(1, {"status"});
  EXPECT_NE(dirty.output.find("DIRTY 0002_steps"), std::string::npos) << dirty.output;
  ASSERT_TRUE(shardyard::testing::Exec(blocker->get(), "COMMIT").ok());

  CommandResult last = Expect(0, {"apply"});
  for (int s = 0; s < 4; ++s) {
    SCOPED_TRACE(s);
    EXPECT_EQ(c().Value(s, "SELECT string_agg(step::text, ',' ORDER BY step) FROM step_log"),
              "1,2,3,4");
    EXPECT_EQ(c().Value(s,
                        "SELECT count(*) FROM information_schema.columns "
                        "WHERE table_name = 'orders' AND column_name IN ('a', 'b')"),
              "2");
    EXPECT_EQ(c().Value(s, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "0");
    EXPECT_EQ(c().Value(s, "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_a_idx'"),
              "1");
    EXPECT_EQ(c().Value(s,
                        "SELECT status || ' ' || steps_done FROM shardyard_migrations "
                        "WHERE version = 2"),
              "applied 9");
  }
  Expect(0, {"status"});
  Expect(0, {"verify"});
}

TEST_F(MigrateTest, CtrlCStopsBetweenStepsAndApplyResumes) {
  StartCluster({.shards = 1});
  c().WriteMigration("0001_log.sql", "CREATE TABLE step_log (step int NOT NULL);\n");
  c().WriteMigration("0002_steps.sql",
                     "-- shardyard: no-transaction\n"
                     "INSERT INTO step_log VALUES (1);\n"
                     "SELECT pg_sleep(0.5);\n"
                     "INSERT INTO step_log VALUES (2);\n"
                     "INSERT INTO step_log VALUES (3);\n");
  auto run = c().MigrateInBackground({"apply"}, "run.log");
  ASSERT_TRUE(run.ok());
  WaitForLog(**run, "step 2/4: SELECT pg_sleep");
  (*run)->Signal(SIGINT);
  auto code = (*run)->Wait(seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE((*run)->Log().find("stopped before this step (interrupted)"), std::string::npos)
      << (*run)->Log();
  EXPECT_EQ(c().Value(0, "SELECT string_agg(step::text, ',' ORDER BY step) FROM step_log"), "1");
  CommandResult status = Expect(0, {"status"});
  EXPECT_NE(status.output.find("stopped 0002_steps (step 2/4 done)"), std::string::npos)
      << status.output;
  Expect(0, {"apply"});
  EXPECT_EQ(c().Value(0, "SELECT string_agg(step::text, ',' ORDER BY step) FROM step_log"),
            "1,2,3");
}

TEST_F(MigrateTest, FailedConcurrentIndexBuildLeavesNoInvalidIndexAndRepairCleansUp) {
  StartCluster({.shards = 2});
  c().WriteMigration("0001_t.sql",
                     "CREATE TABLE t (id int PRIMARY KEY, v int);\n"
                     "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;\n");
  Expect(0, {"apply"});
  ASSERT_TRUE(c().Exec(1, "UPDATE t SET v = 1 WHERE id <= 3").ok());  // duplicates on shard 1
  c().WriteMigration("0002_unique_v.sql",
                     "-- shardyard: no-transaction\n"
                     "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\n");
  CommandResult failed = Expect(1, {"apply"});
  EXPECT_NE(failed.output.find("dropping INVALID index"), std::string::npos) << failed.output;
  EXPECT_NE(failed.output.find("could not create unique index"), std::string::npos);
  EXPECT_EQ(c().Value(1, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "0");
  EXPECT_EQ(c().Value(1, "SELECT to_regclass('t_v_key') IS NULL"), "t");
  EXPECT_EQ(c().Value(0,
                      "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                      "'t_v_key'::regclass"),
            "t");

  // A build that failed outside the tool leaves an INVALID index; repair drops
  // it.
  auto conn = c().Connect(1);
  ASSERT_TRUE(conn.ok());
  EXPECT_FALSE(
      shardyard::testing::Exec(conn->get(), "CREATE UNIQUE INDEX CONCURRENTLY manual_v ON t (v)")
          .ok());
  EXPECT_EQ(c().Value(1, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "1");
  CommandResult dry = Expect(0, {"repair", "--dry-run"});
  EXPECT_NE(dry.output.find("would drop INVALID index manual_v"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("would clear failed 0002_unique_v"), std::string::npos);
  CommandResult repaired = Expect(0, {"repair"});
  EXPECT_NE(repaired.output.find("dropped INVALID index manual_v"), std::string::npos)
      << repaired.output;
  EXPECT_NE(repaired.output.find("cleared failed 0002_unique_v"), std::string::npos);
  EXPECT_EQ(c().Value(1, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"), "0");
  Expect(0, {"status"});

  ASSERT_TRUE(c().Exec(1, "UPDATE t SET v = id").ok());
  Expect(0, {"apply"});
  Expect(0, {"verify"});
}

TEST_F(MigrateTest, BackfillRunsInBatchesAndPausesWhileTheReplicaLags) {
  StartCluster({.shards = 1, .replica_of_shard0 = true});
  c().WriteMigration("0001_orders.sql",
                     "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL);\n"
                     "INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g;\n");
  Expect(0, {"apply"});
  auto replica = c().replica()->ConnectSuper(Cluster::kDatabase);
  ASSERT_TRUE(replica.ok());
  for (int i = 0; i < 100; ++i) {
    auto n = shardyard::testing::QueryValue(
        replica->get(), "SELECT count(*) FROM pg_class WHERE relname = 'orders'");
    if (n.ok() && *n == "1" &&
        shardyard::testing::QueryValue(replica->get(), "SELECT count(*) FROM orders")
                .value_or("") == "20000") {
      break;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(shardyard::testing::Exec(replica->get(), "SELECT pg_wal_replay_pause()").ok());
  c().WriteMigration("0002_total_cents.sql",
                     "-- shardyard: backfill table=orders key=id batch=1000 sleep=5ms\n"
                     "ALTER TABLE orders ADD COLUMN total_cents bigint;\n"
                     "UPDATE orders SET total_cents = total * 100;\n");
  auto run = c().MigrateInBackground({"apply", "--max-replica-lag", "300ms"}, "backfill.log");
  ASSERT_TRUE(run.ok());
  WaitForLog(**run, "backfill paused: replica 127.0.0.1:");
  std::string rows_then =
      c().Value(0, "SELECT backfill_rows FROM shardyard_migrations WHERE version = 2");
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(c().Value(0, "SELECT backfill_rows FROM shardyard_migrations WHERE version = 2"),
            rows_then);
  EXPECT_TRUE((*run)->Running());
  ASSERT_TRUE(shardyard::testing::Exec(replica->get(), "SELECT pg_wal_replay_resume()").ok());
  auto code = (*run)->Wait(seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << (*run)->Log();
  std::string log = (*run)->Log();
  if (getenv("SHARDYARD_MIGRATE_SHOW_OUTPUT")) std::printf("%s\n", log.c_str());
  EXPECT_NE(log.find("backfill resumed"), std::string::npos) << log;
  EXPECT_NE(log.find("backfilled 20000 rows of orders"), std::string::npos) << log;
  EXPECT_EQ(c().Value(0,
                      "SELECT count(*) FROM orders WHERE total_cents IS "
                      "DISTINCT FROM total * 100"),
            "0");
  EXPECT_EQ(c().Value(0, "SELECT backfill_rows FROM shardyard_migrations WHERE version = 2"),
            "20000");
}

TEST_F(MigrateTest, HeartbeatKeepsTheRunnerLockThroughALongStep) {
  StartCluster({.shards = 1});
  c().WriteMigration("0001_slow.sql", "SELECT pg_sleep(3);\n");
  auto run = c().MigrateInBackground({"apply", "--lock-ttl", "1s"}, "slow.log");
  ASSERT_TRUE(run.ok());
  WaitForLog(**run, "0001_slow step 1/1: SELECT pg_sleep");
  std::this_thread::sleep_for(milliseconds(2000));  // twice the TTL: renewed, not expired
  CommandResult second = Expect(3, {"apply", "--lock-ttl", "1s"});
  EXPECT_NE(second.output.find("another run holds the runner lock"), std::string::npos)
      << second.output;
  CommandResult status = Expect(0, {"status"});
  EXPECT_NE(status.output.find("runner lock held by"), std::string::npos) << status.output;
  auto code = (*run)->Wait(seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << (*run)->Log();
  EXPECT_EQ(c().Value(0, "SELECT count(*) FROM shardyard_migrate_lock"), "0");
}

}  // namespace
}  // namespace shardyard::migrate::testing
