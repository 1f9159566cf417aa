// Pipelining through Shardyard: a waiting client's plain statement is written behind the one a
// busy server connection is running, and whatever happens to the client in front (its cancel,
// its departure, a transaction it opens) never reaches the client behind.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using namespace std::chrono_literals;

class PipeliningTest : public ProxyTest {
 protected:
  // One server connection and one worker: clients that queue are served on it in order.
  void StartOne(const std::string& pool_lines = "") {
    ConfigOptions options;
    options.workers = 1;
    options.log_level = "debug";
    StartWith("  size: 1\n" + pool_lines, {}, options);
  }

  struct Outcome {
    std::string value;  // first column of the first row
    std::string state;  // SQLSTATE of an error, "" if none
  };
  // The outcome of a query sent with PQsendQuery (all its results read).
  static Outcome Await(PGconn* c) {
    Outcome out;
    bool first = true;
    while (PGresult* r = PQgetResult(c)) {
      if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) out.state = s;
      if (first && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        out.value = PQgetvalue(r, 0, 0);
        first = false;
      }
      PQclear(r);
    }
    return out;
  }

  // Sends `sql` and gives Shardyard time to queue it (or start it) before the next client.
  static void SendAndSettle(PGconn* c, const std::string& sql) {
    ASSERT_TRUE(PQsendQuery(c, sql.c_str())) << PQerrorMessage(c);
    std::this_thread::sleep_for(100ms);
  }

  // Three clients of the one server connection: `busy` holds it for `busy_seconds` while `lead`
  // and then `follower` queue with their statements. Returns 0.1 s after busy's statement is
  // over, when lead's runs and follower's waits (behind it, if both are plain statements).
  struct Queue {
    PgConn busy;
    PgConn lead;
    PgConn follower;
  };
  Queue LeadAndFollow(const std::string& lead_sql, const std::string& follower_sql,
                      double busy_seconds = 0.3) {
    Queue q{Client(), Client(), Client()};
    SendAndSettle(q.busy.get(), "SELECT pg_sleep(" + std::to_string(busy_seconds) + ")");
    SendAndSettle(q.lead.get(), lead_sql);
    EXPECT_TRUE(PQsendQuery(q.follower.get(), follower_sql.c_str()));
    EXPECT_EQ(Await(q.busy.get()).state, "");
    std::this_thread::sleep_for(100ms);
    return q;
  }

  // PipelinedRequests() once it reaches `n`, or after 5 s: the log line is written when the
  // follower is granted, which a loaded machine (or a sanitizer build) may take a while to do.
  int PipelinedRequestsOnce(int n) const {
    for (auto deadline = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (PipelinedRequests() >= n) break;
    }
    return PipelinedRequests();
  }

  int PipelinedRequests() const {
    std::string log = sy_->Log();
    int n = 0;
    for (size_t at = 0; (at = log.find("pipelined behind", at)) != std::string::npos; ++at) ++n;
    return n;
  }
};

TEST_F(PipeliningTest, WaitingClientsArePipelinedAndEachGetsItsOwnResults) {
  ConfigOptions options;
  options.log_level = "debug";
  StartWith("  size: 2\n", {}, options);  // two workers
  ASSERT_TRUE(pg_->ExecSuper("CREATE TABLE ledger (client int, n int); "
                             "GRANT ALL ON ledger TO app",
                             "app")
                  .ok());
  constexpr int kClients = 12;
  constexpr int kRounds = 150;
  std::vector<std::thread> threads;
  for (int id = 0; id < kClients; ++id) {
    threads.emplace_back([this, id] {
      // Two kinds of clients, with different settings: neither may see the other's.
      const std::string name = id % 2 == 0 ? "even" : "odd";
      PgConn c = Client("application_name=" + name);
      ASSERT_NE(c, nullptr);
      for (int i = 0; i < kRounds; ++i) {
        const std::string n = std::to_string(id * 100000 + i);
        if (i % 3 == 0) {
          // Extended protocol: the unnamed Parse/Bind/Execute/Sync drivers send.
          const char* params[] = {n.c_str()};
          PGresult* r = PQexecParams(c.get(), "SELECT $1::int, current_setting('application_name')",
                                     1, nullptr, params, nullptr, nullptr, 0);
          ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQerrorMessage(c.get());
          EXPECT_EQ(PQgetvalue(r, 0, 0), n);
          EXPECT_EQ(PQgetvalue(r, 0, 1), name);
          PQclear(r);
        } else if (i % 10 == 1) {
          ASSERT_TRUE(Exec(c.get(), "BEGIN").ok());
          ASSERT_TRUE(
              Exec(c.get(), "INSERT INTO ledger VALUES (" + std::to_string(id) + ", " + n + ")")
                  .ok());
          ASSERT_TRUE(Exec(c.get(), "COMMIT").ok());
        } else {
          auto v = QueryValue(c.get(), "SELECT " + n + " || current_setting('application_name')");
          ASSERT_TRUE(v.ok()) << v.status();
          EXPECT_EQ(*v, n + name);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // Every client's committed rows are there, once each.
  auto conn = pg_->ConnectSuper("app");
  ASSERT_TRUE(conn.ok());
  auto rows = QueryValue(conn->get(),
                         "SELECT count(*) || '/' || count(DISTINCT (client, n)) "
                         "FROM ledger");
  ASSERT_TRUE(rows.ok());
  int expected = 0;  // the rounds that insert, per client
  for (int i = 0; i < kRounds; ++i) expected += (i % 3 != 0 && i % 10 == 1) ? 1 : 0;
  EXPECT_EQ(*rows, std::to_string(expected * kClients) + "/" + std::to_string(expected * kClients));
  EXPECT_GT(PipelinedRequests(), 0) << "no request was pipelined: the test proves nothing";
}

TEST_F(PipeliningTest, TheFollowersRepliesNeverReachTheLeadEvenInOneRead) {
  StartOne();
  // About 5 MB that the lead reads only later: the follower's reply then arrives with the end
  // of the lead's, in the same reads.
  auto [busy, lead, follower] =
      LeadAndFollow("SELECT repeat('x', 1000) FROM generate_series(1, 5000)", "SELECT 'follower'");
  // libpq drops (and reports here) messages that arrive while it expects none.
  std::string lead_notices;
  PQsetNoticeProcessor(
      lead.get(),
      [](void* out, const char* message) { *static_cast<std::string*>(out) += message; },
      &lead_notices);
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(PipelinedRequestsOnce(1), 1);
  int rows = 0;
  int results = 0;
  while (PGresult* r = PQgetResult(lead.get())) {
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    rows += PQntuples(r);
    ++results;
    PQclear(r);
  }
  EXPECT_EQ(rows, 5000);
  EXPECT_EQ(results, 1);
  EXPECT_EQ(Await(follower.get()).value, "follower");
  EXPECT_EQ(*QueryValue(lead.get(), "SELECT 'lead again'"), "lead again");
  EXPECT_EQ(*QueryValue(follower.get(), "SELECT 'follower again'"), "follower again");
  EXPECT_EQ(lead_notices, "");
}

TEST_F(PipeliningTest, ALeadsCancelThatLandsOnTheRequestBehindIsUndone) {
  StartOne();
  auto [busy, lead, follower] = LeadAndFollow("SELECT 'lead' FROM pg_sleep(0.4)",
                                              "SELECT 'follower' FROM pg_sleep(0.5)", 0.4);
  ASSERT_EQ(PipelinedRequestsOnce(1), 1);
  // The lead's cancel reaches Shardyard, which forwards it, but PostgreSQL's stopped postmaster
  // holds it back until the lead's query is over and the follower's runs.
  HeldCancel cancel(Postmaster(), lead.get());
  ASSERT_TRUE(cancel.held());
  Outcome lead_outcome = Await(lead.get());
  EXPECT_EQ(lead_outcome.value, "lead");
  EXPECT_EQ(lead_outcome.state, "");
  std::this_thread::sleep_for(150ms);  // the follower's pg_sleep runs now
  cancel.Release();                    // and the cancel stops it
  Outcome follower_outcome = Await(follower.get());
  EXPECT_EQ(follower_outcome.state, "") << "the lead's cancel reached the follower";
  EXPECT_EQ(follower_outcome.value, "follower");
  EXPECT_NE(sy_->Log().find("sent again"), std::string::npos);
  EXPECT_EQ(*QueryValue(follower.get(), "SELECT 'next'"), "next");
}

TEST_F(PipeliningTest, ALeadsCancelStopsTheLeadOnly) {
  StartOne();
  auto [busy, lead, follower] =
      LeadAndFollow("SELECT 'lead' FROM pg_sleep(10)", "SELECT 'follower'");
  ASSERT_EQ(PipelinedRequestsOnce(1), 1);
  ASSERT_TRUE(SendCancel(lead.get()));
  EXPECT_EQ(Await(lead.get()).state, "57014");
  Outcome follower_outcome = Await(follower.get());  // held back until the cancel landed
  EXPECT_EQ(follower_outcome.state, "");
  EXPECT_EQ(follower_outcome.value, "follower");
  EXPECT_EQ(sy_->Log().find("sent again"), std::string::npos);
}

TEST_F(PipeliningTest, AReservedFollowerStartsOnlyOnceTheLeadsCancelHasLanded) {
  StartOne();
  // Not a plain statement (set_config): it is granted the server but not written behind.
  auto [busy, lead, follower] =
      LeadAndFollow("SELECT 'lead' FROM pg_sleep(0.3)",
                    "SELECT set_config('app.step', 'follower', false) FROM pg_sleep(0.5)");
  HeldCancel cancel(Postmaster(), lead.get());
  ASSERT_TRUE(cancel.held());
  EXPECT_EQ(Await(lead.get()).value, "lead");  // over before its cancel could land
  std::this_thread::sleep_for(300ms);
  cancel.Release();  // lands on an idle backend: the follower's statement has not started
  Outcome follower_outcome = Await(follower.get());
  EXPECT_EQ(follower_outcome.state, "") << "the lead's cancel stopped the follower's statement";
  EXPECT_EQ(follower_outcome.value, "follower");
  EXPECT_EQ(PipelinedRequests(), 0);
}

TEST_F(PipeliningTest, AFollowersOwnCancelWaitsForItsTurn) {
  StartOne();
  auto [busy, lead, follower] =
      LeadAndFollow("SELECT 'lead' FROM pg_sleep(0.5)", "SELECT 'follower' FROM pg_sleep(10)", 0.4);
  ASSERT_EQ(PipelinedRequestsOnce(1), 1);
  auto sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(SendCancel(follower.get()));  // returns once it has landed, after the lead's query
  Outcome lead_outcome = Await(lead.get());
  EXPECT_EQ(lead_outcome.state, "") << "the follower's cancel stopped the lead's query";
  EXPECT_EQ(lead_outcome.value, "lead");
  Outcome follower_outcome = Await(follower.get());
  EXPECT_EQ(follower_outcome.state, "57014");
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 2s);
  EXPECT_EQ(*QueryValue(follower.get(), "SELECT 'next'"), "next");
}

TEST_F(PipeliningTest, ALeadThatLeavesMidReplyLeavesTheRestToNobody) {
  StartOne();
  // About 50 MB that the lead never reads.
  auto [busy, lead, follower] = LeadAndFollow(
      "SELECT repeat('x', 1000) FROM generate_series(1, 50000)", "SELECT 'follower'", 0.4);
  std::this_thread::sleep_for(200ms);  // the lead's rows fill its socket
  ASSERT_EQ(PipelinedRequestsOnce(1), 1);
  lead.reset();  // gone, with most of its rows still to come
  Outcome follower_outcome = Await(follower.get());
  EXPECT_EQ(follower_outcome.state, "");
  EXPECT_EQ(follower_outcome.value, "follower");
  EXPECT_EQ(*QueryValue(follower.get(), "SELECT 'next'"), "next");
  PgConn other = Client();
  EXPECT_EQ(*QueryValue(other.get(), "SELECT 'other'"), "other");
}

TEST_F(PipeliningTest, AStatementThatOpensATransactionLeadsNobody) {
  StartOne();
  ASSERT_TRUE(pg_->ExecSuper("CREATE TABLE marks (v text); GRANT ALL ON marks TO app", "app").ok());
  auto [busy, opener, next] =
      LeadAndFollow("SELECT pg_sleep(0.2); BEGIN", "INSERT INTO marks VALUES ('kept')");
  EXPECT_EQ(Await(opener.get()).state, "");
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(Exec(opener.get(), "ROLLBACK").ok());  // the open transaction was the opener's only
  EXPECT_EQ(Await(next.get()).state, "");
  auto conn = pg_->ConnectSuper("app");
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(*QueryValue(conn->get(), "SELECT count(*) FROM marks"), "1");
  EXPECT_EQ(PipelinedRequests(), 0);
}

TEST_F(PipeliningTest, OffMeansEveryClientWaitsForAnIdleServer) {
  StartOne("  pipelining: off\n");
  auto [busy, first, second] =
      LeadAndFollow("SELECT 'first' FROM pg_sleep(0.1)", "SELECT 'second'");
  EXPECT_EQ(Await(first.get()).value, "first");
  EXPECT_EQ(Await(second.get()).value, "second");
  EXPECT_EQ(PipelinedRequests(), 0);
}

// A request longer than a read block waits for a server in an activation coroutine, not on
// the fast path. Such a wait must never be granted a server still running the lead's statement
// (a follow grant): the coroutine would use it at once, and the request was never answered.
TEST_F(PipeliningTest, ALongRequestQueuedBehindALeadRunsOnceTheLeadIsDone) {
  StartOne();
  const std::string padding(20000, ' ');
  Queue q = LeadAndFollow("SELECT pg_sleep(0.2), 'lead'", "SELECT 'follower'" + padding);
  Outcome lead = Await(q.lead.get());
  EXPECT_EQ(lead.state, "");
  auto done = std::async(std::launch::async, [&] { return Await(q.follower.get()); });
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready) << "the follower's request never ran";
  Outcome follower = done.get();
  EXPECT_EQ(follower.state, "");
  EXPECT_EQ(follower.value, "follower");
}

}  // namespace
}  // namespace shardyard::testing
