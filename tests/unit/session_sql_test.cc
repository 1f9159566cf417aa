// Tests the lexical scan that finds SQL which may change session settings beyond a transaction.
#include "router/session_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(SessionSqlTest, TheQuickCheckPassesEverythingTheScanFinds) {
  for (std::string_view sql :
       {"SET x = 1", "RESET ALL", "DISCARD TEMP", "DO 'BEGIN END'",
        "SELECT set_config('a','b',true)", "sEt a.b = 1", "dIsCaRd ALL", "Do $$ $$"}) {
    EXPECT_TRUE(Changes(sql)) << sql;
    EXPECT_TRUE(MayChangeSettings(sql)) << sql;
  }
  EXPECT_FALSE(MayChangeSettings("SELECT abalance FROM pgbench_accounts WHERE aid = 1;"));
  EXPECT_FALSE(
      MayChangeSettings("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                        "VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);"));
}

}  // namespace
}  // namespace shardyard::sql
