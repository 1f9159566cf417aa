// Checks that no pooled server connection keeps a prepared statement or cursor a client left.
//
// Issue 18; used by prepared_isolation_test.cc and the driver tests (tests/drivers).
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/strings.h"
#include "tests/harness/pg_server.h"

namespace shardyard::testing {

// Opens `pool_size` clients with `conninfo` (through Shardyard) at once, each holding a
// transaction open so that each is lent a server connection of its own, and expects that they
// cover `pool_size` distinct backends (so every pooled connection is looked at, the pool never
// opening more) and that none of them lists a prepared statement (pg_prepared_statements) or a
// cursor (pg_cursors). libpq's simple queries make neither, so whatever is listed was left by
// an earlier client.
inline void ExpectPooledServersClean(const std::string& conninfo, int pool_size) {
  SCOPED_TRACE(Cat("every pooled server connection (", pool_size, ") is clean"));
  std::vector<PgConn> clients;
  std::set<std::string> pids;
  for (int i = 0; i < pool_size; ++i) {
    auto c = Connect(conninfo);
    ASSERT_TRUE(c.ok()) << c.status();
    absl::Status begin = Exec(c->get(), "BEGIN");
    ASSERT_TRUE(begin.ok()) << begin;
    auto pid = QueryValue(c->get(), "SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok()) << pid.status();
    pids.insert(*pid);
    for (const char* view : {"pg_prepared_statements", "pg_cursors"}) {
      auto rows = Query(c->get(), Cat("SELECT name || ': ' || statement FROM ", view));
      ASSERT_TRUE(rows.ok()) << rows.status();
      std::string listed;
      for (const auto& row : *rows) Append(&listed, "\n  ", row[0]);
      EXPECT_TRUE(rows->empty()) << "server backend " << *pid << " still has in " << view << ":"
                                 << listed;
    }
    clients.push_back(*std::move(c));
  }
  EXPECT_EQ(pids.size(), static_cast<size_t>(pool_size))
      << "clients holding a transaction each should cover every pooled server connection";
  for (PgConn& c : clients) {
    absl::Status commit = Exec(c.get(), "COMMIT");
    EXPECT_TRUE(commit.ok()) << commit;
  }
}

}  // namespace shardyard::testing
