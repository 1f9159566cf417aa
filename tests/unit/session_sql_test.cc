// Tests the lexical scan that finds SQL which may change session state beyond a transaction.
#include "sql/session_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <string>

namespace shardyard::sql {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

bool Changes(std::string_view sql) { return ScanSessionChanges(sql).settings; }

TEST(SessionSqlTest, SessionLevelSetResetDiscardAndDoChangeSettings) {
  EXPECT_TRUE(Changes("SET search_path = a, b"));
  EXPECT_TRUE(Changes("set work_mem to '64MB'"));
  EXPECT_TRUE(Changes("SET SESSION statement_timeout = 5"));
  EXPECT_TRUE(Changes("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  EXPECT_TRUE(Changes("SET ROLE reader"));
  EXPECT_TRUE(Changes("SET TIME ZONE 'UTC'"));
  EXPECT_TRUE(Changes("RESET ALL"));
  EXPECT_TRUE(Changes("reset search_path"));
  EXPECT_TRUE(Changes("DISCARD ALL"));
  EXPECT_TRUE(Changes("DO $$ BEGIN PERFORM 1; END $$"));
  EXPECT_TRUE(Changes("  \n-- leading comment\n/* and another */ SET x.y = 1"));
}

TEST(SessionSqlTest, TransactionScopedSetsAndOrdinaryStatementsDoNot) {
  EXPECT_FALSE(Changes("SET LOCAL search_path = a"));
  EXPECT_FALSE(Changes("set transaction isolation level serializable"));
  EXPECT_FALSE(Changes("SET CONSTRAINTS ALL DEFERRED"));
  EXPECT_FALSE(Changes("SELECT abalance FROM pgbench_accounts WHERE aid = $1"));
  EXPECT_FALSE(Changes("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7"));
  EXPECT_FALSE(Changes("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET n = 2"));
  EXPECT_FALSE(Changes("SELECT * FROM assets OFFSET 10"));
  EXPECT_FALSE(Changes("ALTER ROLE app SET search_path = a"));
  EXPECT_FALSE(Changes(""));
}

TEST(SessionSqlTest, EveryStatementOfAScriptIsLookedAt) {
  EXPECT_TRUE(Changes("BEGIN; SET search_path = a; COMMIT"));
  EXPECT_TRUE(Changes("SELECT $1; set search_path to x"));
  EXPECT_FALSE(Changes("BEGIN; SET LOCAL search_path = a; COMMIT"));
}

TEST(SessionSqlTest, QuotedTextAndCommentsAreNotStatements) {
  EXPECT_FALSE(Changes("SELECT 'x; SET search_path = a'"));
  EXPECT_FALSE(Changes("SELECT 'it''s'; SELECT 'a; SET b = 1'"));
  EXPECT_FALSE(Changes("SELECT E'it\\'s; SET search_path = a'"));
  EXPECT_FALSE(Changes("SELECT \"a;set\" FROM t"));
  EXPECT_FALSE(Changes("SELECT 1 -- ; SET search_path = a"));
  EXPECT_FALSE(Changes("SELECT 1 /* outer /* inner */ ; SET search_path = a */"));
  EXPECT_FALSE(Changes("SELECT $$; SET search_path = a; $$"));
  EXPECT_FALSE(Changes("SELECT $body$ ; SET x = 1 $body$, $1"));
  EXPECT_FALSE(
      Changes("CREATE FUNCTION f() RETURNS text SET search_path = a AS $$ SELECT "
              "set_config('a.b', '1', false) $$ LANGUAGE sql"));
}

TEST(SessionSqlTest, BackslashEscapesQuotesOnlyWithoutStandardConformingStrings) {
  // With standard_conforming_strings on, 'a\' is a whole literal and a SET follows it.
  std::string_view sql = "SELECT 'a\\'; SET search_path = b; SELECT 'c'";
  EXPECT_TRUE(ScanSessionChanges(sql, /*standard_conforming_strings=*/true).settings);
  // Off, the backslash escapes the quote and the SET is inside the literal.
  EXPECT_FALSE(ScanSessionChanges(sql, /*standard_conforming_strings=*/false).settings);
}

TEST(SessionSqlTest, SetConfigCallsCountWhereverTheyAre) {
  EXPECT_TRUE(Changes("SELECT set_config('search_path', 'a', false)"));
  EXPECT_TRUE(Changes("SELECT pg_catalog.SET_CONFIG($1, $2, false)"));
  EXPECT_TRUE(Changes("SELECT \"set_config\"('a.b', '1', false)"));
  EXPECT_TRUE(Changes("PREPARE p AS SELECT set_config('a.b', '1', false)"));
  EXPECT_FALSE(Changes("SELECT current_setting('a.b'), 'set_config(1)'"));
  EXPECT_FALSE(Changes("SELECT set_config_count FROM stats"));
}

TEST(SessionSqlTest, CustomSettingNamesAreCollectedLowerCased) {
  EXPECT_THAT(ScanSessionChanges("SET app.tenant = '7'").custom_names, ElementsAre("app.tenant"));
  EXPECT_THAT(ScanSessionChanges("SET SESSION \"My\".Var TO 1").custom_names,
              ElementsAre("my.var"));
  EXPECT_THAT(ScanSessionChanges("RESET app.tenant").custom_names, ElementsAre("app.tenant"));
  EXPECT_THAT(ScanSessionChanges("SELECT set_config('App.User', '5', false), "
                                 "set_config(E'a\\'b.c', '1', false), "
                                 "set_config('app.user', '6', false)")
                  .custom_names,
              ElementsAre("app.user", "a'b.c"));
  EXPECT_THAT(ScanSessionChanges("SET a.b.c = 1").custom_names, ElementsAre("a.b.c"));
  // Built-in settings are listed by the server itself.
  EXPECT_THAT(ScanSessionChanges("SET search_path = a; SELECT set_config('work_mem', '1MB', "
                                 "false)")
                  .custom_names,
              IsEmpty());
}

TEST(SessionSqlTest, NamedSetsAndResetsListTheirNames) {
  SessionChanges c = ScanSessionChanges(
      "SET application_name = 'req 1'; set session TimeZone to 'UTC'; SET TIME ZONE LOCAL; "
      "RESET \"DateStyle\"; SET ROLE reader; RESET ALL; SET app.Tenant = 1");
  EXPECT_FALSE(c.unnamed);
  EXPECT_TRUE(c.reset);
  EXPECT_FALSE(ScanSessionChanges("SET search_path = a; SET ROLE r").reset);
  EXPECT_THAT(c.set_names, ElementsAre("application_name", "timezone", "datestyle", "role", "all",
                                       "app.tenant"));
  EXPECT_THAT(c.custom_names, ElementsAre("app.tenant"));
  EXPECT_THAT(ScanSessionChanges("SET LOCAL work_mem = 1; SELECT 1").set_names, IsEmpty());
}

TEST(SessionSqlTest, ChangesNoNameTellsAreUnnamed) {
  for (const char* sql :
       {"DISCARD ALL", "DO $$ BEGIN END $$", "SELECT set_config('a.b', 'c', false)",
        "SET SESSION AUTHORIZATION bob", "SET session_authorization = bob",
        "SET SESSION CHARACTERISTICS AS "
        "TRANSACTION READ ONLY",
        "SET ( x", "SET app. = 1", "SET application_name = 'x'; DISCARD ALL"}) {
    SessionChanges c = ScanSessionChanges(sql);
    EXPECT_TRUE(c.settings) << sql;
    EXPECT_TRUE(c.unnamed) << sql;
  }
  EXPECT_FALSE(ScanSessionChanges("SET search_path = a").unnamed);
}

TEST(SessionSqlTest, TheQuickCheckLooksOnlyWhereAStatementMayStart) {
  for (std::string_view sql :
       {"SET x = 1", "  reset all", "BEGIN;SET search_path = a", "-- note\nSET a.b = 1",
        "/* note */SET a.b = 1", "x; DISCARD ALL", "\tDO $$ $$",
        "SELECT set_config('a', 'b', true)", "SELECT \"SET_CONFIG\"('a', 'b', true)"}) {
    EXPECT_TRUE(MayChangeSettings(sql)) << sql;
  }
  for (std::string_view sql :
       {"SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, now());",
        "SELECT * FROM assets OFFSET 10", "SELECT reset_count, dollars FROM t", "SELECT 1"}) {
    EXPECT_FALSE(MayChangeSettings(sql)) << sql;
  }
}

// The quick check may let through what the scan then clears, never the other way round: over
// random SQL built from pieces that confuse a naive search, whatever the scan finds passes it.
TEST(SessionSqlTest, TheQuickCheckPassesEverythingTheScanFinds) {
  constexpr std::string_view kPieces[] = {
      "SET ",
      "set ",
      "ReSeT ",
      "RESET",
      "DISCARD ALL",
      "DO $$ $$",
      "do ",
      "SELECT ",
      "UPDATE t ",
      "SET a = 1",
      "set_config('a.b', 'c', false)",
      "LOCAL ",
      "'x; SET y'",
      "\"SET\"",
      "-- c\n",
      "/* c */",
      "/* a /* b */ */",
      ";",
      " ",
      "\n",
      "\t",
      "search_path = a",
      "$$ SET $$",
      "$t$;SET$t$",
      "E'\\'; set'",
      "offset",
      "asset",
      "x",
      "(",
      ")",
      ",",
      "1",
      "$1",
      "pg_catalog.",
      "app.",
      "tenant",
      "= '7'",
      "TO ",
      "SESSION ",
      "TRANSACTION ",
      "PREPARE q AS ",
      "prepare ",
      "DECLARE c CURSOR ",
      "WITH HOLD FOR ",
      "prepared_at ",
  };
  std::mt19937 rng(20261123);
  int changing = 0;
  for (int n = 0; n < 50000; ++n) {
    std::string sql;
    const int pieces = 1 + static_cast<int>(rng() % 12);
    for (int p = 0; p < pieces; ++p) sql += kPieces[rng() % std::size(kPieces)];
    for (bool standard : {true, false}) {
      const SessionChanges found = ScanSessionChanges(sql, standard);
      if (!found.settings && !found.objects) continue;
      ++changing;
      ASSERT_TRUE(MayChangeSettings(sql) || MayPrepare(sql)) << sql;
    }
  }
  EXPECT_GT(changing, 5000);  // the pieces do make settings-changing SQL often
}

bool Objects(std::string_view sql) { return ScanSessionChanges(sql).objects; }

TEST(SessionSqlTest, PrepareHoldCursorsAndDoMayLeaveObjectsBehind) {
  EXPECT_TRUE(Objects("PREPARE q (int) AS SELECT $1"));
  EXPECT_TRUE(Objects("prepare q as select 1"));
  EXPECT_TRUE(Objects("BEGIN; PREPARE q AS SELECT 1; COMMIT"));
  EXPECT_TRUE(Objects("DECLARE c CURSOR WITH HOLD FOR SELECT 1"));
  EXPECT_TRUE(Objects("declare c binary no scroll cursor with hold for select 1"));
  EXPECT_TRUE(
      Objects("/* x */ DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1; "
              "DECLARE d CURSOR WITH HOLD FOR SELECT 1"));
  EXPECT_TRUE(Objects("DO $$ BEGIN EXECUTE 'PREPARE q AS SELECT 1'; END $$"));
  // Gone at the end of the transaction, or not the session's.
  EXPECT_FALSE(Objects("DECLARE c CURSOR FOR SELECT 1"));
  EXPECT_FALSE(Objects("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1"));
  EXPECT_FALSE(Objects("DECLARE c CURSOR FOR SELECT 'with hold'"));
  EXPECT_FALSE(Objects("DECLARE c CURSOR FOR SELECT with_ FROM hold"));
  EXPECT_FALSE(Objects("PREPARE TRANSACTION 'gid'"));
  EXPECT_FALSE(Objects("EXECUTE q (1)"));
  EXPECT_FALSE(Objects("SELECT 'PREPARE q AS SELECT 1'"));
  EXPECT_FALSE(Objects("SET search_path = a"));
  // Neither changes a setting.
  EXPECT_FALSE(Changes("PREPARE q AS SELECT 1"));
  EXPECT_FALSE(Changes("DECLARE c CURSOR WITH HOLD FOR SELECT 1"));
}

TEST(SessionSqlTest, TheQuickChecksFindPrepareAndDeclareAsWholeWords) {
  for (std::string_view sql : {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "  declare c cursor"}) {
    EXPECT_TRUE(MayChangeSettings(sql)) << sql;
  }
  for (std::string_view sql :
       {"PREPARE q AS SELECT 1", "x;\nprepare q as select 1", "  /* c */ -- d\n PREPARE q AS",
        "SELECT 1; PrePare q AS SELECT 2", "prepare"}) {
    EXPECT_TRUE(MayPrepare(sql)) << sql;
  }
  for (std::string_view sql :
       {"SELECT id,\nprepared_at FROM t", "SELECT declared FROM t", "SELECT 1 AS prepare_x",
        "SELECT * FROM t WHERE kind = 'prepare'", "SELECT 1;", "prepared", "SELECT 1; preparex"}) {
    EXPECT_FALSE(MayChangeSettings(sql)) << sql;
    EXPECT_FALSE(MayPrepare(sql)) << sql;
  }
}

TEST(SessionSqlTest, PlainDataStatementsAreOneStatementOfTheDataKinds) {
  for (const char* text : {"SELECT abalance FROM pgbench_accounts WHERE aid = 17;", "  select 1",
                           "INSERT INTO t VALUES (1);;  ", "update t set a = 1", "DELETE FROM t",
                           "values (1)", "TABLE t",
                           "WITH x AS (SELECT 1) "
                           "SELECT * FROM x",
                           "SELECT 'a--b', \"x\" FROM t\n"}) {
    EXPECT_TRUE(IsPlainDataStatement(text)) << text;
  }
  for (const char* text : {"",
                           "  ;",
                           "BEGIN",
                           "SELECT 1; BEGIN",
                           "SELECT 1; SELECT 2",
                           "COMMIT",
                           "START TRANSACTION",
                           "COPY t FROM STDIN",
                           "SET x = 1",
                           "SELECT set_config('a.b', '1', false)",
                           "SELECT 1;\nSET work_mem = 1",
                           "SELECT ';'",
                           "/* c */ SELECT 1",
                           "-- c\nSELECT 1",
                           "CALL p()",
                           "DO $$ BEGIN END $$",
                           "VACUUM t",
                           "selective",
                           "SELECTx 1",
                           "LOCK TABLE t",
                           "PREPARE TRANSACTION 'x'",
                           "DISCARD ALL"}) {
    EXPECT_FALSE(IsPlainDataStatement(text)) << text;
  }
}

}  // namespace
}  // namespace shardyard::sql
