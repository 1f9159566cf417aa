// Session state across pooled connections: each client sees only its own settings, a vanished
// client never leaves a dirty connection behind, and session/statement modes behave as documented.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class SessionStateTest : public ProxyTest {
 protected:
  // Runs `sql` in a forked child connected through Shardyard, then kills it with SIGKILL once
  // the child says it is ready (after `sql` returned, or once `sql` started if `async`).
  void RunAndKillChild(const std::string& sql, bool async) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    std::string conninfo = sy_->ConnInfo("app", "app", "secret");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      PGconn* c = PQconnectdb(conninfo.c_str());
      if (PQstatus(c) != CONNECTION_OK) _exit(1);
      if (async) {
        PQsendQuery(c, sql.c_str());
        PQflush(c);
      } else {
        PGresult* r = PQexec(c, sql.c_str());
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) _exit(2);
      }
      (void)!write(ready[1], "r", 1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char byte;
    ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the child could not run its SQL";
    close(ready[0]);
    if (async) std::this_thread::sleep_for(300ms);  // let the statement start on the server
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
  }
};

TEST_F(SessionStateTest, EachClientSeesOnlyItsOwnSettings) {
  StartWith("  size: 1\n");  // one server connection: both clients must share it
  PgConn a = Client("application_name=alpha");
  PgConn b = Client("application_name=beta");
  ASSERT_TRUE(Exec(a.get(),
                   "SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'German'; "
                   "SET application_name = 'alpha2'")
                  .ok());
  EXPECT_STREQ(PQparameterStatus(a.get(), "TimeZone"), "Asia/Tokyo");
  EXPECT_STREQ(PQparameterStatus(a.get(), "application_name"), "alpha2");

  std::string backend_a = *QueryValue(a.get(), "SELECT pg_backend_pid()");
  EXPECT_EQ(*QueryValue(b.get(), "SELECT pg_backend_pid()"), backend_a) << "same server";
  EXPECT_EQ(*QueryValue(b.get(), "SHOW application_name"), "beta");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW TimeZone"), "Etc/UTC");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW DateStyle"), "ISO, MDY");
  EXPECT_STREQ(PQparameterStatus(b.get(), "TimeZone"), "Etc/UTC");

  EXPECT_EQ(*QueryValue(a.get(), "SHOW TimeZone"), "Asia/Tokyo");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW DateStyle"), "German, DMY");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW application_name"), "alpha2");
  EXPECT_EQ(*QueryValue(a.get(), "SELECT to_char(timestamptz '2020-01-01 00:00Z', 'HH24')"), "09");
  // What other sessions see in pg_stat_activity follows the client currently served.
  EXPECT_EQ(*QueryValue(b.get(),
                        "SELECT application_name FROM pg_stat_activity "
                        "WHERE pid = pg_backend_pid()"),
            "beta");
}

TEST_F(SessionStateTest, AQueuedClientGetsItsOwnSettingsOnTheServerItWaitedFor) {
  StartWith("  size: 1\n");
  PgConn a = Client();
  PgConn b = Client("application_name=beta");
  // a holds the only server connection, and changes its settings.
  ASSERT_TRUE(Exec(a.get(), "BEGIN; SET TimeZone = 'Asia/Tokyo'").ok());
  ASSERT_TRUE(PQsendQuery(b.get(), "SHOW TimeZone"));
  std::this_thread::sleep_for(200ms);  // b's request is now queued for that connection
  ASSERT_TRUE(Exec(a.get(), "COMMIT").ok());
  // b is handed the connection a just left, which still has a's TimeZone: b's own settings
  // are restored before its request runs.
  std::vector<std::string> values;
  while (PGresult* r = PQgetResult(b.get())) {
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) values.emplace_back(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  EXPECT_THAT(values, ::testing::ElementsAre("Etc/UTC"));
  EXPECT_EQ(*QueryValue(b.get(), "SHOW application_name"), "beta");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW TimeZone"), "Asia/Tokyo");
}

TEST_F(SessionStateTest, SetLocalIsUndoneAtCommitForEveryone) {
  StartWith("  size: 1\n");
  PgConn a = Client();
  ASSERT_TRUE(Exec(a.get(), "BEGIN; SET LOCAL TimeZone = 'America/New_York'").ok());
  EXPECT_EQ(*QueryValue(a.get(), "SHOW TimeZone"), "America/New_York");
  ASSERT_TRUE(Exec(a.get(), "COMMIT").ok());
  EXPECT_STREQ(PQparameterStatus(a.get(), "TimeZone"), "Etc/UTC");
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SHOW TimeZone"), "Etc/UTC");
}

// Settings PostgreSQL does not report (ParameterStatus) are read back after the transaction that
// changed them: they follow their client to any server and never reach another client.
TEST_F(SessionStateTest, UnreportedSettingsFollowTheirClientAndReachNoOther) {
  StartWith("  size: 1\n");  // one server connection: both clients must share it
  ASSERT_TRUE(pg_->ExecSuper("CREATE ROLE reader; GRANT reader TO app", "app").ok());
  PgConn a = Client();
  PgConn b = Client();
  ASSERT_TRUE(Exec(a.get(),
                   "SET search_path = pg_catalog, public; SET work_mem = '64MB'; "
                   "SET SESSION statement_timeout = '7s'; SET ROLE reader; "
                   "SET app.tenant = '42'")
                  .ok());
  ASSERT_TRUE(QueryValue(a.get(), "SELECT set_config('app.user', 'alice', false)").ok());

  std::string backend = *QueryValue(a.get(), "SELECT pg_backend_pid()");
  EXPECT_EQ(*QueryValue(b.get(), "SELECT pg_backend_pid()"), backend) << "same server";
  EXPECT_EQ(*QueryValue(b.get(), "SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW statement_timeout"), "0");
  EXPECT_EQ(*QueryValue(b.get(), "SELECT current_user"), "app");
  EXPECT_EQ(*QueryValue(b.get(),
                        "SELECT coalesce(current_setting('app.tenant', true), '') || "
                        "coalesce(current_setting('app.user', true), '')"),
            "");

  EXPECT_EQ(*QueryValue(a.get(), "SHOW search_path"), "pg_catalog, public");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "64MB");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW statement_timeout"), "7s");
  EXPECT_EQ(*QueryValue(a.get(), "SELECT current_user"), "reader");
  EXPECT_EQ(*QueryValue(a.get(),
                        "SELECT current_setting('app.tenant') || "
                        "current_setting('app.user')"),
            "42alice");
  EXPECT_EQ(*QueryValue(b.get(), "SELECT current_user"), "app");

  // RESET and RESET ROLE are read back like SET.
  ASSERT_TRUE(Exec(a.get(), "RESET work_mem; RESET ROLE").ok());
  EXPECT_EQ(*QueryValue(b.get(), "SET work_mem = '8MB'; SHOW work_mem"), "8MB");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(a.get(), "SELECT current_user"), "app");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW statement_timeout"), "7s");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "8MB");
}

// How many statements containing `marker` the server has logged (log_statement = 'all').
size_t LoggedStatements(const PgServer& pg, const std::string& marker) {
  std::ifstream log(pg.data_dir() + "/server.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  size_t n = 0;
  for (size_t at = 0; (at = text.find(marker, at)) != std::string::npos; ++at) ++n;
  return n;
}

constexpr char kFullReadBack[] = "FROM pg_catalog.pg_settings";
constexpr char kNamedReadBack[] = "SELECT n, pg_catalog.current_setting(n, true) FROM (VALUES";

// Settings the server reports need no read-back: their ParameterStatus messages already carry
// the new values, so an app that sets application_name per request pays no round trip for it.
// Settings SET by name are read back by name, without pg_settings (0.4 ms of server time).
TEST_F(SessionStateTest, ReportedSettingsAreNotReadBackAndNamedOnesCheaply) {
  StartWith("  size: 1\n");
  // Before the pool's first server connection, which is opened for the first query.
  ASSERT_TRUE(pg_->ExecSuper("ALTER DATABASE app SET log_statement = 'all'").ok());
  PgConn a = Client();
  PgConn b = Client();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        Exec(a.get(), Cat("SET application_name = 'req-", i, "'; SET TIME ZONE 'Asia/Tokyo'"))
            .ok());
  }
  ASSERT_TRUE(
      Exec(a.get(), "BEGIN; RESET DateStyle; SET SESSION IntervalStyle = iso_8601; COMMIT").ok());
  EXPECT_EQ(LoggedStatements(*pg_, kFullReadBack) + LoggedStatements(*pg_, kNamedReadBack), 0u);
  // They still follow their client, as before.
  EXPECT_EQ(*QueryValue(b.get(), "SHOW application_name"), "");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW TimeZone"), "Etc/UTC");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW application_name"), "req-2");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW TimeZone"), "Asia/Tokyo");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW IntervalStyle"), "iso_8601");

  // Unreported ones SET by name are read back by name.
  ASSERT_TRUE(Exec(a.get(),
                   "SET application_name = 'x'; SET work_mem = '64MB'; SET ROLE app; "
                   "SET app.tenant = 7")
                  .ok());
  EXPECT_EQ(LoggedStatements(*pg_, kNamedReadBack), 1u);
  EXPECT_EQ(LoggedStatements(*pg_, kFullReadBack), 0u);
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
  // (Reset on b's behalf, a custom setting stays defined, as an empty string.)
  EXPECT_EQ(*QueryValue(b.get(), "SELECT coalesce(current_setting('app.tenant', true), '')"), "");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "64MB");
  EXPECT_EQ(*QueryValue(a.get(), "SELECT current_setting('app.tenant')"), "7");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW application_name"), "x");

  // A RESET may return a setting to a default, which only pg_settings tells apart.
  ASSERT_TRUE(Exec(a.get(), "RESET work_mem").ok());
  EXPECT_EQ(LoggedStatements(*pg_, kFullReadBack), 1u);
  EXPECT_EQ(*QueryValue(b.get(), "SET work_mem = '8MB'; SHOW work_mem"), "8MB");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(a.get(), "SELECT current_setting('app.tenant')"), "7");
}

TEST_F(SessionStateTest, AClientsSettingsAreRestoredOnADifferentServer) {
  StartWith("  size: 2\n");
  PgConn a = Client();
  PgConn b = Client();
  PgConn c = Client();
  std::string used = *QueryValue(a.get(), "SET work_mem = '64MB'; SELECT pg_backend_pid()");
  // Hold the server a used, so that a's next transaction runs on the other one.
  ASSERT_TRUE(Exec(b.get(), "BEGIN").ok());
  PGconn* holder = b.get();
  if (*QueryValue(b.get(), "SELECT pg_backend_pid()") != used) {
    ASSERT_TRUE(Exec(c.get(), "BEGIN").ok());
    ASSERT_EQ(*QueryValue(c.get(), "SELECT pg_backend_pid()"), used);
    holder = c.get();
    ASSERT_TRUE(Exec(b.get(), "COMMIT").ok());
  }
  EXPECT_EQ(*QueryValue(holder, "SHOW work_mem"), "4MB");
  EXPECT_NE(*QueryValue(a.get(), "SELECT pg_backend_pid()"), used);
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "64MB");
  ASSERT_TRUE(Exec(holder, "COMMIT").ok());
}

TEST_F(SessionStateTest, ASettingRolledBackWithItsTransactionIsNotKept) {
  StartWith("  size: 1\n");
  PgConn a = Client();
  ASSERT_TRUE(Exec(a.get(), "BEGIN; SET work_mem = '64MB'").ok());
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "64MB");
  ASSERT_TRUE(Exec(a.get(), "ROLLBACK").ok());
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "4MB");
  ASSERT_TRUE(Exec(a.get(), "BEGIN; SET work_mem = '32MB'; COMMIT").ok());
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "32MB");
}

TEST_F(SessionStateTest, SettingsChangedThroughTheExtendedProtocolAreReadBackToo) {
  StartWith("  size: 1\n");
  PgConn a = Client();
  PgConn b = Client();
  const char* value = "32MB";
  PGresult* r = PQexecParams(a.get(), "SELECT set_config('work_mem', $1, false)", 1, nullptr,
                             &value, nullptr, nullptr, 0);
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  PQclear(r);
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "32MB");

  // A prepared statement changes settings each time it runs, not only when it is prepared. (A
  // named statement lasts until the end of its transaction in transaction mode: issue 18.)
  for (const char* tenant : {"7", "8"}) {
    ASSERT_TRUE(Exec(a.get(), "BEGIN").ok());
    r = PQprepare(a.get(), "tenant", "SELECT set_config('app.tenant', $1, false)", 1, nullptr);
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    r = PQexecPrepared(a.get(), "tenant", 1, &tenant, nullptr, nullptr, 0);
    ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    PQclear(r);
    ASSERT_TRUE(Exec(a.get(), "COMMIT").ok());
    EXPECT_EQ(*QueryValue(b.get(), "SELECT coalesce(current_setting('app.tenant', true), '')"), "");
    EXPECT_EQ(*QueryValue(a.get(), "SELECT current_setting('app.tenant')"), tenant);
  }
}

// The ReadyForQuery that ends a transaction which SET something is held back for the read-back
// even when it arrives split across two reads of the server's socket (its first bytes must not
// reach the client, nor the server go back, before the settings are read). The reply's size
// puts it across the 8 kB and 16 kB marks, where reads tend to cut the stream.
TEST_F(SessionStateTest, SettingsAreReadBackWhenTheReadyForQueryArrivesSplit) {
  StartWith("  size: 1\n");
  for (int mark : {8192, 16384}) {
    for (int before = 1; before <= 5; ++before) {
      // CommandComplete "SET" (9 bytes), RowDescription of "repeat" (32), DataRow (11 + n),
      // CommandComplete "SELECT 1" (14), then ReadyForQuery at 66 + n.
      const int n = mark - before - 66;
      SCOPED_TRACE(Cat("ReadyForQuery at ", mark, " - ", before));
      PgConn a = Client();
      PgConn b = Client();
      auto value = QueryValue(a.get(), Cat("SET work_mem = '77MB'; SELECT repeat('x', ", n, ")"));
      ASSERT_TRUE(value.ok()) << value.status();
      ASSERT_EQ(value->size(), static_cast<size_t>(n));
      EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
      EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "77MB");
    }
  }
}

TEST_F(SessionStateTest, StatementModeReadsSettingsBackToo) {
  StartWith("  size: 1\n  mode: statement\n");
  PgConn a = Client();
  PgConn b = Client();
  ASSERT_TRUE(Exec(a.get(), "SET search_path = pg_catalog").ok());
  EXPECT_EQ(*QueryValue(b.get(), "SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW search_path"), "pg_catalog");
}

TEST_F(SessionStateTest, ClientGoneAfterASetLeavesNoSettingBehind) {
  StartWith("  size: 1\n");
  // The SETs commit, and the client vanishes during the query after them, before the settings
  // could be read back: the connection is reset (DISCARD ALL) before anyone else gets it.
  RunAndKillChild("BEGIN; SET work_mem = '64MB'; SET app.tenant = '9'; COMMIT; SELECT pg_sleep(10)",
                  /*async=*/true);
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
  EXPECT_EQ(*QueryValue(b.get(), "SELECT coalesce(current_setting('app.tenant', true), '')"), "");
}

TEST_F(SessionStateTest, StartupCustomSettingsSurviveAReadBack) {
  StartWith("  size: 1\n");
  PgConn a = Client("options='-c app.tenant=5 -c statement_timeout=1234'");
  ASSERT_TRUE(Exec(a.get(), "SET work_mem = '64MB'").ok());
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SHOW statement_timeout"), "0");
  EXPECT_EQ(*QueryValue(a.get(),
                        "SELECT current_setting('app.tenant') || ' ' || "
                        "current_setting('statement_timeout') || ' ' || "
                        "current_setting('work_mem')"),
            "5 1234ms 64MB");
}

TEST_F(SessionStateTest, StartupOptionsApplyToThatClientOnly) {
  StartWith("  size: 1\n");
  PgConn a = Client("options='-c statement_timeout=1234 -c search_path=pg_catalog'");
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(a.get(), "SHOW statement_timeout"), "1234ms");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW search_path"), "pg_catalog");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW statement_timeout"), "0");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(*QueryValue(a.get(), "SHOW statement_timeout"), "1234ms");
}

TEST_F(SessionStateTest, InvalidStartupSettingIsRefusedLikePostgres) {
  StartWith("  size: 1\n");
  auto bad = Connect(sy_->ConnInfo("app", "app", "secret", "options='-c DateStyle=nonsense'"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("invalid value for parameter \"DateStyle\""));
  PgConn ok = Client();
  EXPECT_EQ(*QueryValue(ok.get(), "SHOW DateStyle"), "ISO, MDY");
}

TEST_F(SessionStateTest, KilledClientsLockIsReleasedAndNextClientGetsACleanConnection) {
  StartWith("  size: 1\n");
  RunAndKillChild(
      "BEGIN; UPDATE items SET v = 'dirty' WHERE id = 1; SET TimeZone = 'Asia/Tokyo'; "
      "SET application_name = 'killed'",
      /*async=*/false);
  auto killed_at = std::chrono::steady_clock::now();
  PgConn next = Client();
  ASSERT_TRUE(Exec(next.get(), "SET lock_timeout = '1s'").ok());
  PgResult upd(PQexec(next.get(), "UPDATE items SET v = 'clean' WHERE id = 1"));
  ASSERT_EQ(PQresultStatus(upd.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(upd.get());
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 1s) << "the row lock went away";
  EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
  EXPECT_EQ(*QueryValue(next.get(), "SHOW TimeZone"), "Etc/UTC");
  EXPECT_EQ(*QueryValue(next.get(), "SHOW application_name"), "");
  EXPECT_EQ(*QueryValue(next.get(), "SELECT count(*) FROM items WHERE v = 'dirty'"), "0");
  EXPECT_EQ(*QueryValue(next.get(), "SELECT txid_current_if_assigned() IS NULL"), "t");
  EXPECT_EQ(CountBackends(*pg_, "app"), 1) << "the server connection was reused, not leaked";
}

TEST_F(SessionStateTest, ClientKilledDuringALongQueryIsCancelledAndRolledBack) {
  StartWith("  size: 1\n");
  RunAndKillChild("BEGIN; UPDATE items SET v = 'dirty' WHERE id = 2; SELECT pg_sleep(30)",
                  /*async=*/true);
  auto killed_at = std::chrono::steady_clock::now();
  PgConn next = Client();
  EXPECT_EQ(*QueryValue(next.get(), "SELECT v FROM items WHERE id = 2"), "item 2");
  ASSERT_TRUE(
      Exec(next.get(), "SET lock_timeout = '2s'; UPDATE items SET v = 'x' WHERE id = 2").ok());
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 2s);
  EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
}

TEST_F(SessionStateTest, ClientKilledDuringCopyInLeavesNoRowsAndACleanConnection) {
  StartWith("  size: 1\n");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  std::string conninfo = sy_->ConnInfo("app", "app", "secret");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    PGconn* c = PQconnectdb(conninfo.c_str());
    PGresult* r = PQexec(c, "COPY items FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) _exit(1);
    std::string rows = "500\tfive hundred\n501\tfive hundred one\n";
    PQputCopyData(c, rows.data(), static_cast<int>(rows.size()));
    PQflush(c);
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char byte;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  std::this_thread::sleep_for(200ms);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  PgConn next = Client();
  EXPECT_EQ(*QueryValue(next.get(), "SELECT count(*) FROM items"), "10");
  EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
}

TEST_F(SessionStateTest, ClientClosingRightAfterCopyDataIsNoticed) {
  // The CopyData and the close reach Shardyard as one readiness event (Shardyard is stopped
  // while both are sent). Before the fix the session never saw the close, and the server
  // connection waited for more COPY data forever.
  StartWith("  size: 1\n  query_wait_timeout: 5s\n");
  PgConn c = Client();
  PgResult start(PQexec(c.get(), "COPY items FROM STDIN"));
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN);
  sy_->process().Signal(SIGSTOP);
  std::string rows = "500\tfive hundred\n";
  PQputCopyData(c.get(), rows.data(), static_cast<int>(rows.size()));
  PQflush(c.get());
  shutdown(PQsocket(c.get()), SHUT_RDWR);
  std::this_thread::sleep_for(100ms);  // both are in Shardyard's receive queue
  sy_->process().Signal(SIGCONT);
  c.reset();
  PgConn next = Client();
  auto count = QueryValue(next.get(), "SELECT count(*) FROM items");
  ASSERT_TRUE(count.ok()) << count.status() << "\n(the server connection is still held)";
  EXPECT_EQ(*count, "10");
  EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
}

TEST_F(SessionStateTest, ClientGoneBeforeSyncCommitsNothing) {
  // An INSERT executed in the extended protocol, its result read (Flush), and the client gone
  // before its Sync: PostgreSQL rolls that back, and so must the pool's cleanup.
  StartWith("  size: 1\n");
  for (bool in_block : {false, true}) {
    PgConn c = Client();
    if (in_block) {
      ASSERT_TRUE(Exec(c.get(), "BEGIN").ok());
    }
    ASSERT_EQ(PQenterPipelineMode(c.get()), 1);
    ASSERT_EQ(PQsendQueryParams(c.get(), "INSERT INTO items VALUES (600, 'unsynced')", 0, nullptr,
                                nullptr, nullptr, nullptr, 0),
              1);
    ASSERT_EQ(PQsendFlushRequest(c.get()), 1);
    ASSERT_EQ(PQflush(c.get()), 0);
    PgResult inserted(PQgetResult(c.get()));
    ASSERT_EQ(PQresultStatus(inserted.get()), PGRES_COMMAND_OK) << "in_block " << in_block;
    c.reset();  // Terminate, with no Sync ever sent
    PgConn next = Client();
    EXPECT_EQ(*QueryValue(next.get(), "SELECT count(*) FROM items WHERE id = 600"), "0")
        << "in_block " << in_block;
    EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
  }
}

TEST_F(SessionStateTest, ClientKilledWithUnreadResultsLeavesACleanConnection) {
  StartWith("  size: 1\n");
  for (const std::string sql :
       {"SELECT g, repeat('x', 200) FROM generate_series(1, 2000000) g",
        "COPY (SELECT g, repeat('y', 200) FROM generate_series(1, 2000000) g) "
        "TO STDOUT"}) {
    // The child sends the query and never reads the (hundreds of MB of) results.
    RunAndKillChild(sql, /*async=*/true);
    auto killed_at = std::chrono::steady_clock::now();
    PgConn next = Client();
    EXPECT_EQ(*QueryValue(next.get(), "SELECT 'clean'"), "clean") << sql;
    EXPECT_EQ(PQtransactionStatus(next.get()), PQTRANS_IDLE);
    EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 5s) << "cancelled, not read to the end";
    EXPECT_LE(CountBackends(*pg_, "app"), 1);
  }
  EXPECT_THAT(sy_->Log(), ::testing::Not(HasSubstr("could not return the server to a clean state")))
      << "the connection was drained and reused, not closed";
}

TEST_F(SessionStateTest, TerminateInsideATransactionRollsItBack) {
  StartWith("  size: 1\n");
  {
    PgConn a = Client();
    ASSERT_TRUE(Exec(a.get(), "BEGIN; UPDATE items SET v = 'uncommitted' WHERE id = 3").ok());
  }  // PQfinish sends Terminate mid-transaction
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SELECT v FROM items WHERE id = 3"), "item 3");
  EXPECT_EQ(PQtransactionStatus(b.get()), PQTRANS_IDLE);
}

TEST_F(SessionStateTest, ServerClosedWhileIdleIsReplacedWithoutTheClientNoticing) {
  // A pooled connection whose backend ended while idle (pg_terminate_backend here; a restart or
  // idle_session_timeout alike) is dropped at checkout, not handed to the next client. Before,
  // only connections idle for a second or more were checked, and the next client got "server
  // closed the connection unexpectedly".
  StartWith("  size: 1\n");
  auto super = pg_->ConnectSuper("app");
  ASSERT_TRUE(super.ok()) << super.status();
  PgConn c = Client();
  for (int round = 0; round < 5; ++round) {
    std::string pid = *QueryValue(c.get(), "SELECT pg_backend_pid()");
    ASSERT_EQ(*QueryValue(super->get(), Cat("SELECT pg_terminate_backend(", pid, ")")), "t");
    while (*QueryValue(super->get(),
                       Cat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid)) != "0") {
      std::this_thread::sleep_for(5ms);
    }
    auto after = QueryValue(c.get(), "SELECT pg_backend_pid()");
    ASSERT_TRUE(after.ok()) << "round " << round << ": " << after.status();
    EXPECT_NE(*after, pid);
  }
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: server was closed while idle"));
}

TEST_F(SessionStateTest, SessionModeResetsTheConnectionWithDiscardAll) {
  StartWith("  size: 1\n  mode: session\n");
  {
    PgConn a = Client();
    ASSERT_TRUE(Exec(a.get(),
                     "CREATE TEMP TABLE scratch(x int); PREPARE p AS SELECT 1; "
                     "SET application_name = 'leaky'; SET work_mem = '77MB'")
                    .ok());
  }
  std::this_thread::sleep_for(200ms);
  PgConn b = Client();
  PgResult t(PQexec(b.get(), "SELECT * FROM scratch"));
  EXPECT_STREQ(PQresultErrorField(t.get(), PG_DIAG_SQLSTATE), "42P01");
  PgResult p(PQexec(b.get(), "EXECUTE p"));
  EXPECT_STREQ(PQresultErrorField(p.get(), PG_DIAG_SQLSTATE), "26000");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW application_name"), "");
  EXPECT_EQ(*QueryValue(b.get(), "SHOW work_mem"), "4MB");
}

TEST_F(SessionStateTest, SessionModeGivesAReturningClientItsStartupSettingsAgain) {
  // DISCARD ALL puts work_mem back to the server's default; the pool must not go on believing
  // the connection still has the last client's work_mem, or the same client coming back (on
  // the same connection) would run with the default.
  StartWith("  size: 1\n  mode: session\n");
  for (int round = 0; round < 3; ++round) {
    PgConn a = Client("options='-c work_mem=1000kB'");
    EXPECT_EQ(*QueryValue(a.get(), "SHOW work_mem"), "1000kB") << "round " << round;
    a.reset();
    std::this_thread::sleep_for(200ms);  // the reset runs after the client has gone
  }
  PgConn plain = Client();
  EXPECT_EQ(*QueryValue(plain.get(), "SHOW work_mem"), "4MB");
}

TEST_F(SessionStateTest, SessionModeDeliversNotifications) {
  StartWith("  size: 4\n  mode: session\n");
  PgConn listener = Client();
  PgConn sender = Client();
  ASSERT_TRUE(Exec(listener.get(), "LISTEN jobs").ok());
  ASSERT_TRUE(Exec(sender.get(), "NOTIFY jobs, 'payload-1'").ok());
  PGnotify* n = nullptr;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (n == nullptr && std::chrono::steady_clock::now() < deadline) {
    PQconsumeInput(listener.get());
    n = PQnotifies(listener.get());
    if (n == nullptr) std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(n, nullptr);
  EXPECT_STREQ(n->relname, "jobs");
  EXPECT_STREQ(n->extra, "payload-1");
  PQfreemem(n);
}

TEST_F(SessionStateTest, StatementModeRejectsTransactionBlocks) {
  StartWith("  size: 2\n  mode: statement\n");
  PgConn a = Client();
  EXPECT_EQ(*QueryValue(a.get(), "SELECT 5"), "5");
  PgResult begin(PQexec(a.get(), "BEGIN"));
  EXPECT_THAT(std::string(PQerrorMessage(a.get())),
              HasSubstr("transaction blocks not allowed in statement pooling mode"));
  PgConn b = Client();
  EXPECT_EQ(*QueryValue(b.get(), "SELECT 6"), "6");
  EXPECT_EQ(PQtransactionStatus(b.get()), PQTRANS_IDLE);
}

}  // namespace
}  // namespace shardyard::testing
