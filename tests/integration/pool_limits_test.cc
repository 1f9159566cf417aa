// Pool limits and timers against a real PostgreSQL: sharing a small pool among many clients,
// and each limit or timer with the exact error a client sees.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class PoolLimitsTest : public ProxyTest {
 protected:
  std::string PoolName() const { return Cat("app/app@127.0.0.1:", pg_->port()); }
};

TEST_F(PoolLimitsTest, FiveHundredClientsShareTenServerConnections) {
  StartWith("  size: 10\n  query_wait_timeout: 60s\n");
  {
    auto setup = TryClient();
    ASSERT_TRUE(setup.ok());
    ASSERT_TRUE(
        Exec(setup->get(), "CREATE TABLE counter(n int); INSERT INTO counter VALUES (0)").ok());
  }
  std::atomic<bool> done{false};
  std::atomic<int> max_backends{0};
  std::thread monitor([&] {
    while (!done) {
      int n = CountBackends(*pg_, "app");
      int seen = max_backends.load();
      while (n > seen && !max_backends.compare_exchange_weak(seen, n)) {
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  constexpr int kClients = 500;
  constexpr int kTransactions = 4;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      auto c = TryClient();
      if (!c.ok()) {
        ++failed;
        return;
      }
      for (int t = 0; t < kTransactions; ++t) {
        if (Exec(c->get(), "BEGIN; UPDATE counter SET n = n + 1; COMMIT").ok()) {
          ++ok;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  done = true;
  monitor.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(ok.load(), kClients * kTransactions);
  EXPECT_LE(max_backends.load(), 10) << "never more server connections than the pool size";
  EXPECT_GE(max_backends.load(), 2) << "the monitor saw the pool at work";
  auto check = TryClient();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(*QueryValue(check->get(), "SELECT n FROM counter"),
            std::to_string(kClients * kTransactions));
}

TEST_F(PoolLimitsTest, QueryWaitTimeoutFailsTheWaitingRequestWith57014NamingThePool) {
  StartWith("  size: 1\n  query_wait_timeout: 1s\n");
  auto holder = TryClient();
  auto waiter = TryClient();
  ASSERT_TRUE(holder.ok() && waiter.ok());
  ASSERT_TRUE(Exec(holder->get(), "BEGIN; SELECT 1").ok());
  auto start = std::chrono::steady_clock::now();
  PgResult r(PQexec(waiter->get(), "SELECT 1"));
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_THAT(PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY),
              AllOf(HasSubstr("query_wait_timeout"), HasSubstr(PoolName())));
  EXPECT_GE(waited, 900ms);
  EXPECT_LT(waited, 3s);
  // The waiting client keeps its connection and is served once the pool frees up.
  ASSERT_TRUE(Exec(holder->get(), "COMMIT").ok());
  EXPECT_EQ(*QueryValue(waiter->get(), "SELECT 'served'"), "served");
}

TEST_F(PoolLimitsTest, QueryWaitTimeoutInExtendedProtocolSkipsToSync) {
  StartWith("  size: 1\n  query_wait_timeout: 500ms\n");
  auto holder = TryClient();
  auto waiter = TryClient();
  ASSERT_TRUE(holder.ok() && waiter.ok());
  ASSERT_TRUE(Exec(holder->get(), "BEGIN").ok());
  const char* v[] = {"5"};
  PgResult r(PQexecParams(waiter->get(), "SELECT $1::int", 1, nullptr, v, nullptr, nullptr, 0));
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "57014");
  ASSERT_TRUE(Exec(holder->get(), "COMMIT").ok());
  PgResult again(PQexecParams(waiter->get(), "SELECT $1::int", 1, nullptr, v, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(again.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(again.get());
  EXPECT_STREQ(PQgetvalue(again.get(), 0, 0), "5");
}

TEST_F(PoolLimitsTest, MaxClientConnectionsRefusesWith53300) {
  StartWith("  size: 2\n  max_client_connections: 3\n");
  std::vector<PgConn> held;
  for (int i = 0; i < 3; ++i) {
    auto c = TryClient();
    ASSERT_TRUE(c.ok()) << c.status();
    held.push_back(*std::move(c));
  }
  auto refused = TryClient();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("too many clients"));
  held.pop_back();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(TryClient().ok()) << "a slot frees when a client leaves";
}

TEST_F(PoolLimitsTest, MaxDbConnectionsCapsServerConnectionsAcrossUsers) {
  auto pg = StartAppServer();
  ASSERT_TRUE(pg.ok());
  pg_ = *std::move(pg);
  ASSERT_TRUE(pg_->CreateUser("app2", "secret").ok());
  ASSERT_TRUE(pg_->ExecSuper("GRANT ALL ON DATABASE app TO app2").ok());
  ConfigOptions o;
  o.pool = "  size: 5\n  max_db_connections: 2\n  query_wait_timeout: 10s\n";
  o.users = "  - {name: app, password: secret}\n  - {name: app2, password: secret}\n";
  auto sy = Shardyard::Start(MakeConfig(*pg_, o));
  ASSERT_TRUE(sy.ok());
  sy_ = *std::move(sy);

  // app2 logs in first (its first login borrows a server to learn what servers report).
  auto b = TryClient("app", "app2");
  ASSERT_TRUE(b.ok()) << b.status();
  auto a1 = TryClient();
  auto a2 = TryClient();
  ASSERT_TRUE(a1.ok() && a2.ok());
  ASSERT_TRUE(Exec(a1->get(), "BEGIN; SELECT 1").ok());
  // app2's idle connection is evicted so that app can open its second one.
  ASSERT_TRUE(Exec(a2->get(), "BEGIN; SELECT 1").ok());
  EXPECT_EQ(CountBackends(*pg_, "app"), 2);
  EXPECT_EQ(CountBackends(*pg_, "app2"), 0);
  std::atomic<bool> served{false};
  std::thread t(
      [&] { served = QueryValue(b->get(), "SELECT current_user").value_or("") == "app2"; });
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(served) << "app2 waits: the database's two slots are in use";
  EXPECT_EQ(CountBackends(*pg_, "app") + CountBackends(*pg_, "app2"), 2);
  ASSERT_TRUE(Exec(a1->get(), "COMMIT").ok());  // app's connection goes idle; app2 takes the slot
  t.join();
  EXPECT_TRUE(served);
  EXPECT_LE(CountBackends(*pg_, "app") + CountBackends(*pg_, "app2"), 2);
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: another pool of the database needed"));
  ASSERT_TRUE(Exec(a2->get(), "COMMIT").ok());
}

TEST_F(PoolLimitsTest, ReservePoolServesAClientThatWaitedReserveTimeout) {
  StartWith("  size: 1\n  reserve_size: 1\n  reserve_timeout: 500ms\n  query_wait_timeout: 10s\n");
  auto holder = TryClient();
  auto waiter = TryClient();
  ASSERT_TRUE(holder.ok() && waiter.ok());
  ASSERT_TRUE(Exec(holder->get(), "BEGIN; SELECT 1").ok());
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(Exec(waiter->get(), "BEGIN").ok());
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 450ms);
  EXPECT_LT(waited, 3s);
  EXPECT_EQ(CountBackends(*pg_, "app"), 2) << "size 1 plus one reserve connection";
  ASSERT_TRUE(Exec(waiter->get(), "COMMIT").ok());
  ASSERT_TRUE(Exec(holder->get(), "COMMIT").ok());
  // After the burst the reserve connection is not kept.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(CountBackends(*pg_, "app"), 1);
}

TEST_F(PoolLimitsTest, MinSizeKeepsServerConnectionsWarm) {
  StartWith("  size: 5\n  min_size: 3\n  server_idle_timeout: 1s\n");
  {
    auto c = TryClient();
    ASSERT_TRUE(c.ok());
  }
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (CountBackends(*pg_, "app") < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(CountBackends(*pg_, "app"), 3);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(CountBackends(*pg_, "app"), 3) << "idle timeout never goes below min_size";
}

TEST_F(PoolLimitsTest, ServerIdleTimeoutClosesIdleServerConnections) {
  StartWith("  size: 5\n  server_idle_timeout: 1s\n");
  auto c = TryClient();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*QueryValue(c->get(), "SELECT 1"), "1");
  EXPECT_EQ(CountBackends(*pg_, "app"), 1);
  std::this_thread::sleep_for(1800ms);
  EXPECT_EQ(CountBackends(*pg_, "app"), 0);
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: server_idle_timeout expired"));
  EXPECT_EQ(*QueryValue(c->get(), "SELECT 2"), "2") << "a fresh connection is opened on demand";
}

TEST_F(PoolLimitsTest, ServerLifetimeClosesAConnectionOnlyWhenIdle) {
  StartWith("  size: 1\n  server_lifetime: 1s\n");
  auto c = TryClient();
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Exec(c->get(), "BEGIN").ok());
  std::string pid = *QueryValue(c->get(), "SELECT pg_backend_pid()");
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(*QueryValue(c->get(), "SELECT pg_backend_pid()"), pid)
      << "not closed in the middle of a transaction";
  ASSERT_TRUE(Exec(c->get(), "COMMIT").ok());
  EXPECT_NE(*QueryValue(c->get(), "SELECT pg_backend_pid()"), pid);
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: server_lifetime expired"));
}

TEST_F(PoolLimitsTest, ServerConnectTimeoutAgainstAServerThatNeverAnswers) {
  // A socket that listens (so TCP connects succeed) but never speaks.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto pg = StartAppServer();
  ASSERT_TRUE(pg.ok());
  pg_ = *std::move(pg);
  ConfigOptions o;
  o.pool = "  size: 2\n  server_connect_timeout: 500ms\n  server_login_retry: 100ms\n";
  o.databases = Cat("  - name: app\n    shards:\n      - primary: {host: 127.0.0.1, port: ",
                    ntohs(addr.sin_port), "}\n");
  auto sy = Shardyard::Start(MakeConfig(*pg_, o));
  ASSERT_TRUE(sy.ok());
  sy_ = *std::move(sy);
  auto start = std::chrono::steady_clock::now();
  auto c = TryClient();
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("server_connect_timeout (500ms) expired"));
  EXPECT_LT(took, 3s);
  close(fd);
}

int CountInFile(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  int n = 0;
  for (size_t at = 0; (at = text.find(needle, at)) != std::string::npos; ++at) ++n;
  return n;
}

TEST_F(PoolLimitsTest, RefusedServerLoginIsRelayedAndNotRetriedBeforeServerLoginRetry) {
  auto pg = StartAppServer();
  ASSERT_TRUE(pg.ok());
  pg_ = *std::move(pg);
  ConfigOptions o;
  o.pool = "  size: 5\n  server_login_retry: 2s\n";
  o.users = "  - {name: app, password: secret, server_password: wrong-on-purpose}\n";
  auto sy = Shardyard::Start(MakeConfig(*pg_, o));
  ASSERT_TRUE(sy.ok());
  sy_ = *std::move(sy);
  std::string log = pg_->data_dir() + "/server.log";
  auto first = TryClient();
  ASSERT_FALSE(first.ok());
  EXPECT_THAT(std::string(first.status().message()),
              HasSubstr("password authentication failed for user \"app\""));
  int attempts = CountInFile(log, "password authentication failed");
  EXPECT_EQ(attempts, 1);
  for (int i = 0; i < 5; ++i) {
    auto again = TryClient();
    ASSERT_FALSE(again.ok());
    EXPECT_THAT(std::string(again.status().message()), HasSubstr("password authentication failed"));
  }
  EXPECT_EQ(CountInFile(log, "password authentication failed"), attempts)
      << "no new server login during server_login_retry";
  std::this_thread::sleep_for(2100ms);
  EXPECT_FALSE(TryClient().ok());
  EXPECT_EQ(CountInFile(log, "password authentication failed"), attempts + 1);
}

TEST_F(PoolLimitsTest, ClientIdleTimeoutDisconnectsIdleClientsWith57P05) {
  StartWith("  size: 2\n  client_idle_timeout: 1s\n");
  auto c = TryClient();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*QueryValue(c->get(), "SELECT 1"), "1");
  std::this_thread::sleep_for(1500ms);
  PgResult r(PQexec(c->get(), "SELECT 1"));
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_THAT(std::string(PQerrorMessage(c->get())), HasSubstr("idle-session timeout"));
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: client_idle_timeout expired"));
}

TEST_F(PoolLimitsTest, IdleTransactionTimeoutDisconnectsAndRollsBack) {
  StartWith("  size: 2\n  idle_transaction_timeout: 1s\n");
  auto c = TryClient();
  auto other = TryClient();
  ASSERT_TRUE(c.ok() && other.ok());
  ASSERT_TRUE(Exec(c->get(), "BEGIN; UPDATE items SET v = 'locked' WHERE id = 1").ok());
  std::this_thread::sleep_for(1500ms);
  PgResult r(PQexec(c->get(), "SELECT 1"));
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_THAT(std::string(PQerrorMessage(c->get())), HasSubstr("idle-in-transaction timeout"));
  // The row lock is gone and the update was rolled back.
  ASSERT_TRUE(
      Exec(other->get(), "SET lock_timeout = '1s'; UPDATE items SET v = 'free' WHERE id = 1").ok());
  EXPECT_EQ(*QueryValue(other->get(), "SELECT count(*) FROM items WHERE v = 'locked'"), "0");
}

TEST_F(PoolLimitsTest, PostgresRestartEndsOnlyTheClientsItInterruptedAndThePoolRecovers) {
  // An immediate shutdown sends each backend's client a WARNING and closes the connection: the
  // WARNING and the close can reach Shardyard together. Before the fix the pump relayed the
  // WARNING and then waited for more, so the client whose query was running hung forever.
  StartWith("  size: 3\n");
  PgConn idle = Client(), in_transaction = Client(), running = Client();
  ASSERT_EQ(*QueryValue(idle.get(), "SELECT 1"), "1");
  ASSERT_TRUE(Exec(in_transaction.get(), "BEGIN; SELECT 1").ok());
  ASSERT_TRUE(PQsendQuery(running.get(), "SELECT pg_sleep(60)"));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(pg_->Restart().ok());

  std::promise<std::string> outcome;
  std::thread reader([&] {
    std::string state = "no error";
    while (PGresult* r = PQgetResult(running.get())) {
      if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) state = s;
      PQclear(r);
    }
    outcome.set_value(state);
  });
  auto result = outcome.get_future();
  if (result.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "the client whose query was running never heard that its server went away";
    sy_->process().Signal(SIGKILL);  // frees the reader
    reader.join();
    return;
  }
  reader.join();
  EXPECT_EQ(result.get(), "08006");
  EXPECT_EQ(PQstatus(running.get()), CONNECTION_BAD);

  // The transaction is gone with its server; the client is told so, not left waiting.
  EXPECT_FALSE(QueryValue(in_transaction.get(), "SELECT 2").ok());
  // A client that held no server connection goes on as if nothing happened, and so do new ones.
  EXPECT_EQ(*QueryValue(idle.get(), "SELECT 3"), "3");
  PgConn fresh = Client();
  EXPECT_EQ(*QueryValue(fresh.get(), "SELECT 4"), "4");
}

}  // namespace
}  // namespace shardyard::testing
