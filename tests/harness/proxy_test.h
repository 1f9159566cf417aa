// The fixture most integration tests share: a real PostgreSQL (StartAppServer) with the real
// shardyard binary in front of it, and clients connected through it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/harness/shardyard.h"

namespace shardyard::testing {

class ProxyTest : public ::testing::Test {
 protected:
  // Starts PostgreSQL (with `pg_options`), then Shardyard with `pool_lines` under "pool:".
  void StartWith(const std::string& pool_lines, PgServer::Options pg_options = {},
                 ConfigOptions options = {}) {
    auto pg = StartAppServer(pg_options);
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    options.pool = pool_lines;
    StartProxy(options);
  }

  // Starts Shardyard in front of the PostgreSQL already in pg_.
  void StartProxy(const ConfigOptions& options) {
    auto sy = Shardyard::Start(MakeConfig(*pg_, options));
    ASSERT_TRUE(sy.ok()) << sy.status();
    sy_ = *std::move(sy);
  }

  // A connection through Shardyard, or the reason there is none.
  absl::StatusOr<PgConn> TryClient(const std::string& db = "app", const std::string& user = "app",
                                   const std::string& password = "secret",
                                   const std::string& extra = "") {
    return Connect(sy_->ConnInfo(db, user, password, extra));
  }

  // A connection through Shardyard as app/secret; the test fails if there is none.
  PgConn Client(const std::string& extra = "") {
    auto c = TryClient("app", "app", "secret", extra);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::unique_ptr<PgServer> pg_;
  std::unique_ptr<Shardyard> sy_;
};

}  // namespace shardyard::testing
