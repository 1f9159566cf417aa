// Real client programs through Shardyard: psql running a script (transactions, errors, COPY) and
// pgbench in simple and extended mode over a small pool, with the results checked on the server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;

class ClientToolsTest : public ProxyTest {
 protected:
  void SetUp() override { StartWith("  size: 5\n  query_wait_timeout: 60s\n"); }
  std::map<std::string, std::string> Env() const {
    return {{"PGHOST", "127.0.0.1"}, {"PGPORT", std::to_string(sy_->port())},
            {"PGUSER", "app"},       {"PGPASSWORD", "secret"},
            {"PGDATABASE", "app"},   {"PGCONNECT_TIMEOUT", "10"}};
  }
};

TEST_F(ClientToolsTest, PsqlRunsAScriptWithTransactionsErrorsAndCopy) {
  const std::string script = R"(
\set ON_ERROR_STOP 0
CREATE TABLE ledger(id int PRIMARY KEY, amount numeric NOT NULL);
BEGIN;
INSERT INTO ledger VALUES (1, 10.5), (2, 20);
SAVEPOINT s;
INSERT INTO ledger VALUES (1, 99);
ROLLBACK TO SAVEPOINT s;
INSERT INTO ledger VALUES (3, 30);
COMMIT;
SELECT 1/0;
BEGIN;
INSERT INTO ledger VALUES (4, 40);
SELECT no_such_column FROM ledger;
COMMIT;
COPY ledger FROM STDIN;
5	50
6	60
\.
SELECT 'total=' || sum(amount) || ' rows=' || count(*) FROM ledger;
\copy (SELECT id, amount FROM ledger ORDER BY id) TO STDOUT
)";
  CommandResult r =
      RunCommand({PgBinDir() + "/psql", "-X", "-q", "-A", "-t", "-f", "-"}, Env(), false, script);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("duplicate key value violates unique constraint"));
  EXPECT_THAT(r.output, HasSubstr("division by zero"));
  EXPECT_THAT(r.output, HasSubstr("column \"no_such_column\" does not exist"));
  EXPECT_THAT(r.output, HasSubstr("total=170.5 rows=5"));
  EXPECT_THAT(r.output, HasSubstr("1\t10.5\n2\t20\n3\t30\n5\t50\n6\t60\n"));
  auto check = pg_->ConnectSuper("app");
  EXPECT_EQ(*QueryValue(check->get(), "SELECT count(*) FROM ledger WHERE id = 4"), "0")
      << "the failed transaction was rolled back";
}

// The number after `label` in pgbench's report.
long long Report(const std::string& output, const std::string& label) {
  std::smatch m;
  std::regex re(label + ":? ([0-9]+)");
  if (!std::regex_search(output, m, re)) return -1;
  return std::stoll(m[1].str());
}

TEST_F(ClientToolsTest, PgbenchOverAPoolOfFiveWithFiftyClientsHasNoFailuresAndConsistentTotals) {
  CommandResult init = RunCommand({PgBinDir() + "/pgbench", "-i", "-s", "1", "-q"}, Env());
  ASSERT_EQ(init.exit_code, 0) << init.output;
  long long processed = 0;
  for (const std::string mode : {"simple", "extended"}) {
    CommandResult run = RunCommand(
        {PgBinDir() + "/pgbench", "-c", "50", "-j", "2", "-T", "5", "-M", mode, "-n"}, Env());
    ASSERT_EQ(run.exit_code, 0) << run.output;
    long long n = Report(run.output, "number of transactions actually processed");
    EXPECT_GT(n, 100) << run.output;
    EXPECT_EQ(Report(run.output, "number of failed transactions"), 0) << run.output;
    processed += n;
  }
  auto c = pg_->ConnectSuper("app");
  ASSERT_TRUE(c.ok());
  // tpcb-like: one history row per transaction, and every balance moved by the same deltas.
  EXPECT_EQ(*QueryValue(c->get(), "SELECT count(*) FROM pgbench_history"),
            std::to_string(processed));
  auto sums = Query(c->get(),
                    "SELECT (SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
                    "(SELECT sum(abalance) FROM pgbench_accounts), "
                    "(SELECT sum(tbalance) FROM pgbench_tellers), "
                    "(SELECT sum(bbalance) FROM pgbench_branches)");
  ASSERT_TRUE(sums.ok());
  const auto& row = (*sums)[0];
  EXPECT_EQ(row[0], row[1]);
  EXPECT_EQ(row[0], row[2]);
  EXPECT_EQ(row[0], row[3]);
  EXPECT_LE(CountBackends(*pg_, "app"), 5);
}

TEST_F(ClientToolsTest, PgbenchSelectOnlyExtendedAndReconnectPerTransaction) {
  CommandResult init = RunCommand({PgBinDir() + "/pgbench", "-i", "-s", "1", "-q"}, Env());
  ASSERT_EQ(init.exit_code, 0) << init.output;
  CommandResult run = RunCommand({PgBinDir() + "/pgbench", "-S", "-C", "-c", "10", "-j", "2", "-T",
                                  "3", "-M", "extended", "-n"},
                                 Env());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_GT(Report(run.output, "number of transactions actually processed"), 50);
  EXPECT_EQ(Report(run.output, "number of failed transactions"), 0);
}

}  // namespace
}  // namespace shardyard::testing
