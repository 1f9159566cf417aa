// Unit tests for statement facts (lock levels) and for compiling scripts into
// runner steps.
#include "migrate/plan.h"

#include <gtest/gtest.h>

namespace shardyard::migrate {
namespace {

Script Parse(const std::string& text) {
  auto s = ParseScriptText("test.sql", text);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : Script{};
}

StatementFacts Facts(const std::string& sql) {
  Script s = Parse(sql);
  EXPECT_EQ(s.statements.size(), 1u);
  return AnalyzeStatement(s.statements.at(0));
}

TEST(StatementFactsTest, LockLevelsFollowPostgresDocs) {
  EXPECT_EQ(Facts("ALTER TABLE t ADD COLUMN a int").strongest, LockMode::kAccessExclusive);
  EXPECT_EQ(Facts("ALTER TABLE t VALIDATE CONSTRAINT c").strongest,
            LockMode::kShareUpdateExclusive);
  EXPECT_EQ(Facts("ALTER TABLE t SET (fillfactor = 70)").strongest,
            LockMode::kShareUpdateExclusive);
  EXPECT_EQ(Facts("CREATE INDEX i ON t (a)").strongest, LockMode::kShare);
  EXPECT_EQ(Facts("CREATE INDEX CONCURRENTLY i ON t (a)").strongest,
            LockMode::kShareUpdateExclusive);
  EXPECT_EQ(Facts("DROP INDEX i").strongest, LockMode::kAccessExclusive);
  EXPECT_EQ(Facts("DROP INDEX CONCURRENTLY i").strongest, LockMode::kShareUpdateExclusive);
  EXPECT_EQ(Facts("VACUUM FULL t").strongest, LockMode::kAccessExclusive);
  EXPECT_EQ(Facts("VACUUM t").strongest, LockMode::kShareUpdateExclusive);
  EXPECT_EQ(Facts("LOCK TABLE t IN SHARE MODE").strongest, LockMode::kShare);
  EXPECT_EQ(Facts("LOCK TABLE t").strongest, LockMode::kAccessExclusive);
  EXPECT_EQ(Facts("UPDATE t SET a = 1").strongest, LockMode::kRowExclusive);
  EXPECT_EQ(Facts("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE "
                  "FUNCTION f()")
                .strongest,
            LockMode::kShareRowExclusive);
  EXPECT_EQ(Facts("CREATE TABLE n (id int)").strongest, LockMode::kNone);
  EXPECT_EQ(Facts("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").strongest,
            LockMode::kNone);
}

TEST(StatementFactsTest, ForeignKeyLocksBothTables) {
  StatementFacts f = Facts("ALTER TABLE s.orders ADD FOREIGN KEY (c) REFERENCES customers (id)");
  ASSERT_EQ(f.locks.size(), 2u);
  EXPECT_EQ(f.locks[0], (RelationLock{"s.orders", LockMode::kShareRowExclusive}));
  EXPECT_EQ(f.locks[1], (RelationLock{"customers", LockMode::kShareRowExclusive}));
}

TEST(StatementFactsTest, ExecutionModes) {
  StatementFacts cic = Facts("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t (a)");
  EXPECT_EQ(cic.execution, Execution::kCreateIndexConcurrently);
  EXPECT_EQ(cic.index_name, "s.i");
  EXPECT_EQ(cic.index_table, "s.t");
  EXPECT_EQ(Facts("DROP INDEX CONCURRENTLY i").execution, Execution::kDropIndexConcurrently);
  EXPECT_EQ(Facts("REINDEX INDEX CONCURRENTLY i").execution, Execution::kReindexConcurrently);
  EXPECT_EQ(Facts("VACUUM t").execution, Execution::kOutsideTransaction);
  EXPECT_EQ(Facts("ANALYZE t").execution, Execution::kAnywhere);
  EXPECT_EQ(Facts("BEGIN").execution, Execution::kTransactionControl);
  EXPECT_TRUE(Facts("DO $$ BEGIN NULL; END $$").locks_unknown);
}

TEST(StatementFactsTest, SameRelationIgnoresAMissingSchema) {
  EXPECT_TRUE(SameRelation("orders", "public.orders"));
  EXPECT_TRUE(SameRelation("a.orders", "a.orders"));
  EXPECT_FALSE(SameRelation("a.orders", "b.orders"));
  EXPECT_FALSE(SameRelation("orders", "order"));
}

TEST(PlanTest, TransactionalMigrationIsOneStepWithTheStrongestLock) {
  auto plan = PlanScript(Parse("CREATE TABLE n (id int);\nALTER TABLE t ADD COLUMN a int;\n"), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->transactional);
  ASSERT_EQ(plan->steps.size(), 1u);
  EXPECT_EQ(plan->steps[0].kind, StepKind::kTransaction);
  EXPECT_EQ(plan->steps[0].lock, LockMode::kAccessExclusive);
  EXPECT_EQ(plan->steps[0].sql.size(), 2u);
  EXPECT_EQ(plan->steps[0].lines, (std::vector<int>{1, 2}));
  EXPECT_EQ(plan->lock_timeout, std::chrono::seconds(1));
}

TEST(PlanTest, NoTransactionMigrationHasOneStepPerStatement) {
  auto plan = PlanScript(Parse("-- shardyard: no-transaction\n"
                               "-- shardyard: lock-timeout 250ms\n"
                               "-- shardyard: statement-timeout 2h\n"
                               "ALTER TABLE t ADD COLUMN a int;\n"
                               "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                               "DROP INDEX CONCURRENTLY t_old;\n"
                               "VACUUM t;\n"),
                         {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->transactional);
  ASSERT_EQ(plan->steps.size(), 4u);
  EXPECT_EQ(plan->steps[0].kind, StepKind::kStatement);
  EXPECT_EQ(plan->steps[1].kind, StepKind::kCreateIndexConcurrently);
  EXPECT_EQ(plan->steps[1].index_name, "t_a");
  EXPECT_FALSE(plan->steps[1].UsesLockTimeout());
  EXPECT_EQ(plan->steps[2].kind, StepKind::kDropIndexConcurrently);
  EXPECT_EQ(plan->steps[3].kind, StepKind::kOutsideTransaction);
  EXPECT_EQ(plan->lock_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(plan->statement_timeout, std::chrono::hours(2));
  EXPECT_EQ(plan->concurrent_statement_timeout, std::chrono::hours(2));
}

TEST(PlanTest, ConcurrentStepsHaveNoStatementTimeoutUnlessAsked) {
  auto plan = PlanScript(Parse("-- shardyard: no-transaction\nCREATE INDEX "
                               "CONCURRENTLY i ON t (a);\n"),
                         {});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->concurrent_statement_timeout, Duration(0));
  EXPECT_EQ(plan->statement_timeout, std::chrono::minutes(10));
}

TEST(PlanTest, BackfillAddsTheKeyRangeToAnUpdateWithoutWhere) {
  auto plan = PlanScript(Parse("-- shardyard: backfill table=orders key=id batch=10\n"
                               "ALTER TABLE orders ADD COLUMN c bigint;\n"
                               "UPDATE orders SET c = total * 100;\n"),
                         {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->transactional);
  ASSERT_EQ(plan->steps.size(), 2u);
  EXPECT_EQ(plan->steps[1].kind, StepKind::kBackfill);
  EXPECT_EQ(plan->steps[1].sql[0], "UPDATE orders SET c = total * 100 WHERE id BETWEEN $1 AND $2");
  EXPECT_EQ(plan->steps[1].backfill->batch, 10);
}

TEST(PlanTest, BackfillKeepsAnExplicitRange) {
  auto plan = PlanScript(Parse("-- shardyard: backfill table=orders key=id\n"
                               "UPDATE orders SET c = 1 WHERE c IS NULL AND id "
                               "BETWEEN $1 AND $2;\n"),
                         {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->steps[0].sql[0],
            "UPDATE orders SET c = 1 WHERE c IS NULL AND id BETWEEN $1 AND $2");
}

TEST(PlanTest, BackfillErrors) {
  EXPECT_FALSE(PlanScript(Parse("-- shardyard: backfill table=orders key=id\n"
                                "UPDATE orders SET c = 1 WHERE c IS NULL;\n"),
                          {})
                   .ok());
  EXPECT_FALSE(PlanScript(Parse("-- shardyard: backfill table=orders key=id\n"
                                "UPDATE other SET c = 1;\n"),
                          {})
                   .ok());
  EXPECT_FALSE(PlanScript(Parse("-- shardyard: no-transaction\nUPDATE t SET c = $1;\n"), {}).ok());
  EXPECT_FALSE(PlanScript(Parse("-- shardyard: no-transaction\nBEGIN;\nCOMMIT;\n"), {}).ok());
}

TEST(PlanTest, EmptyScripts) {
  auto tx = PlanScript(Parse("-- nothing\n"), {});
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->steps.size(), 1u);
  auto steps = PlanScript(Parse("-- shardyard: no-transaction\n"), {});
  ASSERT_TRUE(steps.ok());
  EXPECT_TRUE(steps->steps.empty());
}

}  // namespace
}  // namespace shardyard::migrate
