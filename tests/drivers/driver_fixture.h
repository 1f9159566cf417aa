// The fixture for real-driver tests: PostgreSQL 15 and Shardyard started per test, then one
// scenario of a driver program (psycopg, node-postgres, JDBC) run against Shardyard and checked.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/harness/shardyard.h"

namespace shardyard::testing {

enum class Driver { kPsycopg, kNodePg, kJdbc };

// The pool a test runs against.
struct Stack {
  // `extra_pool_lines`: more lines under "pool:", each indented two spaces.
  static Stack Transaction(int size, std::string extra_pool_lines = "") {
    return Stack{size, "transaction", std::move(extra_pool_lines), false};
  }
  static Stack Session(int size) { return Stack{size, "session", "", false}; }
  // Besides app/secret (SCRAM): md5user/md5pw with auth_type md5 and trustuser (password
  // trustpw, used only towards PostgreSQL) with auth_type trust.
  Stack WithMoreUsers() && {
    more_users = true;
    return std::move(*this);
  }

  int size;
  std::string mode;
  std::string extra_pool_lines;
  bool more_users = false;
};

class DriverTest : public ::testing::Test {
 protected:
  // Starts PostgreSQL and Shardyard with `stack`, runs `scenario` of `driver` through Shardyard,
  // and expects it to pass (exit code 0 and its PASS line). Also checks what holds for every
  // scenario: Shardyard logged no protocol violation, and in transaction mode kept at most
  // `stack.size` server connections. Returns the driver's output.
  std::string RunScenario(Driver driver, const std::string& scenario, const Stack& stack);
  // Checks that `driver` can run here and starts PostgreSQL into pg_; false (the test failed)
  // otherwise.
  bool StartPostgres(Driver driver);
  // Runs `scenario` of `driver` against PostgreSQL itself (SY_DIRECT=1; no Shardyard, the
  // scenario skips its checks about pooling): what PostgreSQL answers, for reference. Starts
  // PostgreSQL; expects the scenario to pass and returns its output.
  std::string RunDirect(Driver driver, const std::string& scenario, const Stack& stack);
  // After RunScenario: one client per pooled server connection (stack.size), each holding a
  // transaction open, finds no prepared statement and no cursor an earlier client left there.
  void ExpectPooledServersClean(const Stack& stack);

  std::unique_ptr<PgServer> pg_;
  std::unique_ptr<Shardyard> sy_;

 private:
  // Fails (with what to install) when the driver is missing.
  void CheckDriverAvailable(Driver driver);
  std::vector<std::string> Command(Driver driver, const std::string& scenario) const;
};

}  // namespace shardyard::testing
