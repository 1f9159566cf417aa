// node-postgres (npm pg, pinned in package.json) through Shardyard: node_pg_driver.js scenarios.
#include "tests/drivers/driver_fixture.h"

namespace shardyard::testing {
namespace {

using NodePgTest = DriverTest;

TEST_F(NodePgTest, TypesRoundTripWithSimpleExtendedAndRowLimitedQueries) {
  RunScenario(Driver::kNodePg, "types", Stack::Transaction(2));
}

TEST_F(NodePgTest, TransactionsSavepointsAndConcurrentClientsShareTwoServers) {
  RunScenario(Driver::kNodePg, "transactions", Stack::Transaction(2));
}

TEST_F(NodePgTest, PoolOfTwentyClientsRunsThreeHundredQueriesOverThreeServers) {
  RunScenario(Driver::kNodePg, "pool", Stack::Transaction(3));
}

TEST_F(NodePgTest, PipelineModeWithAnErrorInTheMiddle) {
  RunScenario(Driver::kNodePg, "pipeline", Stack::Transaction(2));
}

TEST_F(NodePgTest, SessionParametersStayPerClientOnOneSharedServer) {
  RunScenario(Driver::kNodePg, "session_params", Stack::Transaction(1));
}

TEST_F(NodePgTest, CopyTenThousandRowsBothWaysThroughASubmittable) {
  RunScenario(Driver::kNodePg, "copy", Stack::Transaction(2));
}

TEST_F(NodePgTest, CancelRequestAndStatementTimeout) {
  RunScenario(Driver::kNodePg, "cancel", Stack::Transaction(1));
}

TEST_F(NodePgTest, ServerAndShardyardErrorsKeepTheirSqlstate) {
  RunScenario(Driver::kNodePg, "errors", Stack::Transaction(1, "  query_wait_timeout: 1s\n"));
}

TEST_F(NodePgTest, ScramMd5AndTrustLoginsGetTheirOwnPools) {
  RunScenario(Driver::kNodePg, "auth", Stack::Transaction(1).WithMoreUsers());
}

TEST_F(NodePgTest, SessionModeKeepsNamedPreparedStatements) {
  RunScenario(Driver::kNodePg, "session_mode", Stack::Session(3));
}

// Issue 18: two clients name different queries alike ('getitem'), interleaved, in autocommit and
// in transactions: no result is the other client's (errors are 26000 with a hint), and no
// server connection keeps a statement.
TEST_F(NodePgTest, SameNamedQueriesNeverGiveAnotherClientsResults) {
  const Stack stack = Stack::Transaction(2);
  RunScenario(Driver::kNodePg, "named_statement_isolation", stack);
  ExpectPooledServersClean(stack);
}

// The same scenario against PostgreSQL itself: every result right, no error.
TEST_F(NodePgTest, SameNamedQueriesScenarioOnPostgresqlItself) {
  RunDirect(Driver::kNodePg, "named_statement_isolation", Stack::Transaction(2));
}

// Gap until Shardyard supports named prepared statements in transaction mode: a query with a
// `name` fails with 42P05 "prepared statement "add" already exists" once clients share a server.
TEST_F(NodePgTest, DISABLED_NamedStatementsInTransactionMode) {
  RunScenario(Driver::kNodePg, "named_statements_in_transaction_mode", Stack::Transaction(2));
}

}  // namespace
}  // namespace shardyard::testing
