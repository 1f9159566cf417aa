// Operating the daemon: --check/--version/--help, SIGHUP reload, SIGTERM graceful shutdown,
// SIGINT immediate shutdown, and close reasons in the log.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class OperationsTest : public ProxyTest {
 protected:
  void Start(ConfigOptions o = {}) {
    options_ = o;
    StartWith(o.pool.empty() ? "  size: 20\n" : o.pool, {}, o);
  }
  ConfigOptions options_;
};

TEST(CommandLineTest, CheckPrintsEveryProblemWithFileLineAndKey) {
  std::string dir = MakeTempDir("sy-check", false);
  std::string path = dir + "/bad.yaml";
  std::ofstream(path) << "listen: {host: 127.0.0.1, port: 99999}\n"
                         "pool:\n"
                         "  mode: sometimes\n"
                         "  size: 0\n"
                         "users:\n"
                         "  - {name: app}\n"
                         "databases:\n"
                         "  - name: app\n"
                         "    shards: []\n"
                         "surprise: 1\n";
  CommandResult r = RunCommand({ShardyardBinary(), "--config", path, "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(path + ":1: listen.port: must be between 0 and 65535"));
  EXPECT_THAT(r.output, HasSubstr(path + ":3: pool.mode: must be one of"));
  EXPECT_THAT(r.output, HasSubstr(path + ":4: pool.size: must be between 1"));
  EXPECT_THAT(r.output, HasSubstr(path + ":6: users[0].password: is required"));
  EXPECT_THAT(r.output, HasSubstr(path + ":9: databases[0].shards: must be a non-empty list"));
  EXPECT_THAT(r.output, HasSubstr(path + ":10: surprise: unknown key"));
  std::ofstream(path) << "users: [{name: a, password: b}]\n"
                         "databases: [{name: d, shards: [{primary: {host: h, port: 1}}]}]\n";
  CommandResult ok = RunCommand({ShardyardBinary(), "--config", path, "--check"});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("configuration is valid"));
  RemoveTree(dir);
}

TEST(CommandLineTest, CheckWarnsThatReplicasAndMoreShardsAreNotUsedYetButPasses) {
  std::string dir = MakeTempDir("sy-check", false);
  std::string path = dir + "/sharded.yaml";
  std::ofstream(path) << "users: [{name: a, password: b}]\n"
                         "databases:\n"
                         "  - name: app\n"
                         "    shards:\n"
                         "      - primary: {host: 10.0.0.5, port: 5432}\n"
                         "        replicas: [{host: 10.0.0.6, port: 5432}]\n"
                         "      - primary: {host: 10.0.0.7, port: 5432}\n"
                         "  - name: plain\n"
                         "    shards: [{primary: {host: 10.0.0.8, port: 5432}}]\n";
  CommandResult r = RunCommand({ShardyardBinary(), "--config", path, "--check"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("warning: database \"app\": 1 replica of shard 0 and shard 1 are accepted "
                        "but not used yet: Shardyard routes every query to shard 0's primary "
                        "(10.0.0.5:5432) until read/write splitting and sharding land\n"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("\"plain\"")));
  EXPECT_THAT(r.output, HasSubstr("configuration is valid"));
  RemoveTree(dir);
}

TEST(CommandLineTest, VersionHelpAndUsageErrors) {
  CommandResult v = RunCommand({ShardyardBinary(), "--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_THAT(v.output, HasSubstr("shardyard 0."));
  CommandResult h = RunCommand({ShardyardBinary(), "--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_THAT(h.output, HasSubstr("--config FILE"));
  CommandResult none = RunCommand({ShardyardBinary()});
  EXPECT_EQ(none.exit_code, 2);
  CommandResult bogus = RunCommand({ShardyardBinary(), "--bogus"});
  EXPECT_EQ(bogus.exit_code, 2);
  CommandResult missing = RunCommand({ShardyardBinary(), "--config", "/nonexistent.yaml"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("cannot open the file"));
}

TEST_F(OperationsTest, ReloadAppliesUsersPasswordsSizesAndDatabasesWithoutDroppingClients) {
  Start();
  auto kept = TryClient();
  ASSERT_TRUE(kept.ok());
  ASSERT_TRUE(Exec(kept->get(), "BEGIN; UPDATE items SET v = 'during reload' WHERE id = 1").ok());
  ASSERT_TRUE(pg_->CreateUser("newbie", "fresh").ok());
  ASSERT_TRUE(pg_->ExecSuper("GRANT ALL ON DATABASE app TO newbie").ok());
  ASSERT_TRUE(pg_->ExecSuper("ALTER ROLE app PASSWORD 'changed'").ok());
  ASSERT_TRUE(pg_->CreateDatabase("second", "app").ok());
  ConfigOptions o = options_;
  o.pool = "  size: 3\n";
  o.users = "  - {name: app, password: changed}\n  - {name: newbie, password: fresh}\n";
  o.databases =
      Cat("  - name: second\n    shards:\n      - primary: {host: 127.0.0.1, port: ", pg_->port(),
          "}\n");  // "app" removed, "second" added
  ASSERT_TRUE(sy_->Reload(MakeConfig(*pg_, o)).ok());
  EXPECT_THAT(sy_->Log(), HasSubstr("SIGHUP: configuration reloaded"));

  // The connected client keeps its transaction.
  EXPECT_EQ(*QueryValue(kept->get(), "SELECT v FROM items WHERE id = 1"), "during reload");
  ASSERT_TRUE(Exec(kept->get(), "COMMIT").ok());
  // New users and passwords apply; the old password no longer does.
  auto newbie = TryClient("second", "newbie", "fresh");
  ASSERT_TRUE(newbie.ok()) << newbie.status();
  EXPECT_FALSE(TryClient("second", "app", "secret").ok());
  auto app = TryClient("second", "app", "changed");
  ASSERT_TRUE(app.ok()) << app.status();
  // The removed database takes no new clients.
  auto removed = TryClient("app", "app", "changed");
  ASSERT_FALSE(removed.ok());
  EXPECT_THAT(std::string(removed.status().message()),
              HasSubstr("database \"app\" does not exist"));
}

TEST_F(OperationsTest, ReloadWithNewPoolSizeIsEnforced) {
  ConfigOptions o;
  o.pool = "  size: 4\n";
  Start(o);
  o.pool = "  size: 1\n  query_wait_timeout: 500ms\n";
  ASSERT_TRUE(sy_->Reload(MakeConfig(*pg_, o)).ok());
  auto a = TryClient();
  auto b = TryClient();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(Exec(a->get(), "BEGIN; SELECT 1").ok());
  PgResult r(PQexec(b->get(), "SELECT 1"));
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_EQ(CountBackends(*pg_, "app"), 1);
}

TEST_F(OperationsTest, InvalidReloadIsRefusedAndTheOldConfigStays) {
  Start();
  ASSERT_TRUE(sy_->Reload("pool: {size: -1}\nusers: []\ndatabases: []\n").ok());
  EXPECT_THAT(sy_->Log(), HasSubstr("keeping the current configuration"));
  EXPECT_THAT(sy_->Log(), HasSubstr("pool.size: must be between 1"));
  auto c = TryClient();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*QueryValue(c->get(), "SELECT 1"), "1");
}

TEST_F(OperationsTest, SigtermLetsRunningTransactionsFinishThenExitsZero) {
  ConfigOptions o;
  o.top = "shutdown_timeout: 20s\n";
  Start(o);
  auto busy = TryClient();
  auto idle = TryClient();
  ASSERT_TRUE(busy.ok() && idle.ok());
  ASSERT_TRUE(Exec(busy->get(), "BEGIN; UPDATE items SET v = 'finishing' WHERE id = 4").ok());
  sy_->process().Signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  // No new connections.
  EXPECT_FALSE(TryClient().ok());
  // The idle client was told why and disconnected.
  PgResult gone(PQexec(idle->get(), "SELECT 1"));
  EXPECT_NE(PQresultStatus(gone.get()), PGRES_TUPLES_OK);
  EXPECT_THAT(std::string(PQerrorMessage(idle->get())),
              HasSubstr("terminating connection due to administrator command"));
  // The running transaction finishes.
  EXPECT_EQ(*QueryValue(busy->get(), "SELECT v FROM items WHERE id = 4"), "finishing");
  ASSERT_TRUE(Exec(busy->get(), "COMMIT").ok());
  auto exit_code = sy_->process().Wait(5s);
  ASSERT_TRUE(exit_code.has_value()) << "exits once the last transaction is over";
  EXPECT_EQ(*exit_code, 0);
  auto check = pg_->ConnectSuper("app");
  EXPECT_EQ(*QueryValue(check->get(), "SELECT v FROM items WHERE id = 4"), "finishing");
}

TEST_F(OperationsTest, SigtermClosesStragglersAfterShutdownTimeout) {
  ConfigOptions o;
  o.top = "shutdown_timeout: 1s\n";
  Start(o);
  auto busy = TryClient();
  ASSERT_TRUE(busy.ok());
  ASSERT_TRUE(Exec(busy->get(), "BEGIN; UPDATE items SET v = 'abandoned' WHERE id = 5").ok());
  auto start = std::chrono::steady_clock::now();
  sy_->process().Signal(SIGTERM);
  auto exit_code = sy_->process().Wait(10s);
  ASSERT_TRUE(exit_code.has_value());
  EXPECT_EQ(*exit_code, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
  // The abandoned transaction was rolled back.
  auto check = pg_->ConnectSuper("app");
  EXPECT_EQ(*QueryValue(check->get(), "SELECT v FROM items WHERE id = 5"), "item 5");
}

TEST_F(OperationsTest, SigintClosesEverythingAtOnce) {
  Start();
  auto busy = TryClient();
  ASSERT_TRUE(busy.ok());
  ASSERT_TRUE(Exec(busy->get(), "BEGIN; SELECT 1").ok());
  sy_->process().Signal(SIGINT);
  auto exit_code = sy_->process().Wait(3s);
  ASSERT_TRUE(exit_code.has_value());
  EXPECT_EQ(*exit_code, 0);
  PgResult r(PQexec(busy->get(), "SELECT 1"));
  EXPECT_NE(PQresultStatus(r.get()), PGRES_TUPLES_OK);
}

TEST_F(OperationsTest, UnusedReplicasAreLoggedAtStartupAndTheFirstPrimaryServes) {
  auto pg = StartAppServer();
  ASSERT_TRUE(pg.ok()) << pg.status();
  pg_ = *std::move(pg);
  ConfigOptions o;
  // The replica is never connected to: nothing listens on port 1.
  o.databases =
      Cat("  - name: app\n    shards:\n      - primary: {host: 127.0.0.1, port: ", pg_->port(),
          "}\n        replicas: [{host: 127.0.0.1, port: 1}]\n");
  StartProxy(o);
  EXPECT_THAT(sy_->Log(), HasSubstr("WARNING database \"app\": 1 replica of shard 0 is accepted "
                                    "but not used yet"));
  PgConn c = Client();
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 1"), "1");
}

TEST_F(OperationsTest, EveryCloseIsLoggedWithItsReason) {
  ConfigOptions o;
  o.log_level = "debug";
  o.pool = "  size: 2\n  server_idle_timeout: 1s\n";
  Start(o);
  {
    auto c = TryClient();
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(*QueryValue(c->get(), "SELECT 1"), "1");
  }
  {
    // An idle client that goes away without Terminate.
    auto c = TryClient();
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(*QueryValue(c->get(), "SELECT 2"), "2");
    ::shutdown(PQsocket(c->get()), SHUT_RDWR);
  }
  EXPECT_FALSE(TryClient("app", "app", "nope").ok());
  // A connection closed before it sends a byte (a TCP health check) is routine, as in PostgreSQL.
  uint16_t silent_port = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(sy_->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    silent_port = ntohs(addr.sin_port);
    ::close(fd);
  }
  std::this_thread::sleep_for(1500ms);
  std::string log = sy_->Log();
  EXPECT_THAT(log, HasSubstr(Cat("127.0.0.1:", silent_port,
                                 " closing because: client closed the connection")));
  EXPECT_THAT(log, HasSubstr("app/app closing because: client sent Terminate"));
  EXPECT_THAT(log, HasSubstr("app/app closing because: client closed the connection"));
  EXPECT_THAT(log, HasSubstr("closing because: authentication failed"));
  EXPECT_THAT(log, HasSubstr("closing because: server_idle_timeout expired"));
  EXPECT_THAT(log, HasSubstr("login ok"));
}

}  // namespace
}  // namespace shardyard::testing
