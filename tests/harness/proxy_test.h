// The fixture most integration tests share: a real PostgreSQL (StartAppServer) with the real
// shardyard binary in front of it, and clients connected through it.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

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

  // Cancel requests and asynchronous queries.
  static bool SendCancel(PGconn* c) {
    PGcancel* cancel = PQgetCancel(c);
    char err[256];
    bool ok = PQcancel(cancel, err, sizeof(err)) == 1;
    PQfreeCancel(cancel);
    return ok;
  }
  // PostgreSQL's postmaster, which receives CancelRequests (0 if unknown).
  pid_t Postmaster() const {
    pid_t pid = 0;
    std::ifstream(pg_->data_dir() + "/postmaster.pid") >> pid;
    return pid;
  }
  // A cancel for `c`, held back: PostgreSQL's postmaster, which receives CancelRequests, is
  // stopped (running backends go on) and PQcancel waits in its own thread until Release() lets
  // the postmaster go on and the cancel land. The destructor releases too, so a failed
  // assertion never leaves the postmaster stopped.
  class HeldCancel {
   public:
    HeldCancel(pid_t postmaster, PGconn* c) : postmaster_(postmaster) {
      held_ = postmaster_ > 0 && kill(postmaster_, SIGSTOP) == 0;
      if (held_) {
        thread_ = std::thread([this, c] {
          SendCancel(c);
          returned_ = true;
        });
      }
    }
    ~HeldCancel() { Release(); }
    bool held() const { return held_; }
    bool returned() const { return returned_; }  // PQcancel has returned
    void Release() {
      if (held_) kill(postmaster_, SIGCONT);
      held_ = false;
      if (thread_.joinable()) thread_.join();
    }

   private:
    pid_t postmaster_;
    bool held_ = false;
    std::atomic<bool> returned_{false};
    std::thread thread_;
  };

  // Waits for the result of a query sent with PQsendQuery; returns its SQLSTATE ("" if none).
  static std::string ResultState(PGconn* c) {
    std::string state;
    while (PGresult* r = PQgetResult(c)) {
      if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) state = s;
      PQclear(r);
    }
    return state;
  }

  std::unique_ptr<PgServer> pg_;
  std::unique_ptr<Shardyard> sy_;
};

}  // namespace shardyard::testing
