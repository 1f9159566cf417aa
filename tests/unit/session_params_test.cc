// Checks parameter tracking: canonical names, the restore plan, quoting and startup options.
#include "pool/session_params.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace shardyard::pool {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(SessionParamsTest, NamesAreCanonicalised) {
  EXPECT_EQ(CanonicalParamName("datestyle"), "DateStyle");
  EXPECT_EQ(CanonicalParamName("TIMEZONE"), "TimeZone");
  EXPECT_EQ(CanonicalParamName("Statement_Timeout"), "statement_timeout");
  EXPECT_TRUE(IsReadOnlyParam("server_version"));
}

TEST(SessionParamsTest, SetKeepsEntriesSorted) {
  ParamSet p;
  p.Set("TimeZone", "UTC");
  p.Set("DateStyle", "ISO, MDY");
  p.Set("application_name", "a");
  p.Set("TimeZone", "Asia/Tokyo");
  EXPECT_THAT(p.entries(),
              ElementsAre(Pair("DateStyle", "ISO, MDY"), Pair("TimeZone", "Asia/Tokyo"),
                          Pair("application_name", "a")));
  EXPECT_TRUE(p.Erase("DateStyle"));
  EXPECT_FALSE(p.Erase("DateStyle"));
  EXPECT_EQ(p.Get("DateStyle"), nullptr);
}

TEST(SessionParamsTest, PlanSetsDifferencesAndResetsWhatTheClientLacks) {
  ParamSet server;
  server.Set("TimeZone", "UTC");
  server.Set("application_name", "other");
  server.Set("server_version", "15.1");
  server.Set("extra_float_digits", "3");
  ParamSet client;
  client.Set("TimeZone", "UTC");
  client.Set("application_name", "mine");
  client.Set("server_version", "99");
  ParamPlan plan = PlanParams(client, server);
  EXPECT_EQ(plan.client_encoding_sql, "");
  EXPECT_EQ(plan.sql,
            "SELECT pg_catalog.set_config(E'application_name', E'mine', false); "
            "RESET \"extra_float_digits\"");
  EXPECT_EQ(plan.queries(), 1);
}

TEST(SessionParamsTest, EqualSetsNeedNothing) {
  ParamSet a;
  a.Set("TimeZone", "UTC");
  EXPECT_TRUE(PlanParams(a, a).empty());
}

TEST(SessionParamsTest, ClientEncodingGoesFirstInItsOwnQuery) {
  ParamSet server;
  server.Set("client_encoding", "UTF8");
  server.Set("DateStyle", "ISO, MDY");
  ParamSet client;
  client.Set("client_encoding", "LATIN1");
  client.Set("DateStyle", "German, DMY");
  ParamPlan plan = PlanParams(client, server);
  EXPECT_EQ(plan.client_encoding_sql,
            "SELECT pg_catalog.set_config(E'client_encoding', E'LATIN1', false)");
  EXPECT_EQ(plan.sql, "SELECT pg_catalog.set_config(E'DateStyle', E'German, DMY', false)");
  EXPECT_EQ(plan.queries(), 2);
}

TEST(SessionParamsTest, ARoleIsDroppedFirstAndTakenLast) {
  // With the server's role still in effect, settings only a superuser may change would fail.
  ParamSet server;
  server.Set("role", "reader");
  server.Set("log_statement", "all");
  ParamSet client;
  client.Set("role", "writer");
  client.Set("work_mem", "64MB");
  EXPECT_EQ(PlanParams(client, server).sql,
            "RESET role; SELECT pg_catalog.set_config(E'work_mem', E'64MB', false); "
            "RESET \"log_statement\"; SELECT pg_catalog.set_config(E'role', E'writer', false)");
  ParamSet same_role;
  same_role.Set("role", "reader");
  EXPECT_EQ(PlanParams(same_role, server).sql, "RESET \"log_statement\"");
  ParamSet no_role;
  EXPECT_EQ(PlanParams(no_role, server).sql, "RESET role; RESET \"log_statement\"");
}

TEST(SessionParamsTest, ResetQuotesEachPartOfADottedName) {
  ParamSet server;
  server.Set("app.user", "alice");  // "user" alone is a reserved word
  server.Set("x.\"q\"", "1");
  EXPECT_EQ(PlanParams(ParamSet(), server).sql,
            "RESET \"app\".\"user\"; RESET \"x\".\"\"\"q\"\"\"");
}

TEST(SessionParamsTest, ReadBackAsksForSessionSettingsTheRoleAndCustomNames) {
  EXPECT_EQ(ReadBackSql(ParamSet(), {}),
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
            "UNION ALL SELECT 'role', pg_catalog.current_setting('role')");
  ParamSet current;
  current.Set("app.tenant", "7");  // also named: asked for once
  current.Set("app.login", "x");   // from the startup packet, say
  current.Set("work_mem", "4MB");  // built in: pg_settings has it
  EXPECT_EQ(ReadBackSql(current, {"app.tenant", "it's.x"}),
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
            "UNION ALL SELECT 'role', pg_catalog.current_setting('role') "
            "UNION ALL SELECT n, pg_catalog.current_setting(n, true) FROM "
            "(VALUES (E'app.tenant'), (E'it''s.x'), (E'app.login')) AS v(n)");
}

TEST(SessionParamsTest, ReadBackReplacesUnreportedSettingsAndKeepsReportedOnes) {
  ParamSet reported;  // what the server reported at login
  reported.Set("TimeZone", "UTC");
  reported.Set("application_name", "");
  reported.Set("server_version", "15.1");
  ParamSet current;
  current.Set("TimeZone", "Asia/Tokyo");  // from a ParameterStatus during the transaction
  current.Set("application_name", "app");
  current.Set("server_version", "15.1");
  current.Set("extra_float_digits", "3");  // reset by the transaction: not read back
  current.Set("search_path", "old");       // not reported by this server: read back
  std::vector<ReadBackRow> rows = {
      {"TimeZone", "UTC"},  // the reported value wins: ParameterStatus is exact
      {"search_path", "a, \"B c\""},
      {"work_mem", "65536"},
      {"role", "none"},
      {"app.tenant", "42"},
      {"app.gone", std::nullopt},
      {"is_superuser", "on"},
      {"transaction_read_only", "off"},  // left behind by SET TRANSACTION READ ONLY
  };
  ParamSet after = ParamsAfterReadBack(current, reported, rows);
  EXPECT_THAT(after.entries(),
              ElementsAre(Pair("TimeZone", "Asia/Tokyo"), Pair("app.tenant", "42"),
                          Pair("application_name", "app"), Pair("search_path", "a, \"B c\""),
                          Pair("server_version", "15.1"), Pair("work_mem", "65536")));
  rows.push_back({"role", "writer"});
  EXPECT_EQ(*ParamsAfterReadBack(current, reported, rows).Get("role"), "writer");
}

TEST(SessionParamsTest, ANamedReadBackAsksForTheNamedSettingsOnly) {
  EXPECT_EQ(ReadBackNamedSql({"search_path", "it's.x"}),
            "SELECT n, pg_catalog.current_setting(n, true) FROM "
            "(VALUES (E'search_path'), (E'it''s.x')) AS v(n)");
}

TEST(SessionParamsTest, ANamedReadBackUpdatesTheNamedSettingsAndKeepsTheRest) {
  ParamSet reported;
  reported.Set("application_name", "");
  ParamSet current;
  current.Set("application_name", "app");  // from a ParameterStatus: kept
  current.Set("work_mem", "64MB");         // not named: kept
  current.Set("search_path", "old");
  current.Set("role", "writer");
  current.Set("app.gone", "1");
  std::vector<ReadBackRow> rows = {
      {"application_name", "stale"},
      {"search_path", "tenant_7, public"},
      {"role", "none"},
      {"app.gone", std::nullopt},
      {"app.tenant", "42"},
      {"transaction_isolation", "serializable"},
  };
  EXPECT_THAT(ParamsAfterNamedReadBack(current, reported, rows).entries(),
              ElementsAre(Pair("app.tenant", "42"), Pair("application_name", "app"),
                          Pair("search_path", "tenant_7, public"), Pair("work_mem", "64MB")));
}

TEST(SessionParamsTest, QuotingSurvivesQuotesAndBackslashes) {
  EXPECT_EQ(QuoteLiteral("it's"), "E'it''s'");
  EXPECT_EQ(QuoteLiteral("a\\b"), "E'a\\\\b'");
  EXPECT_EQ(QuoteLiteral("'; DROP TABLE x; --"), "E'''; DROP TABLE x; --'");
}

TEST(SessionParamsTest, StartupOptionsParseLikePostgres) {
  std::vector<std::pair<std::string, std::string>> out;
  ASSERT_TRUE(
      ParseStartupOptions("-c statement_timeout=5s --search-path=a\\ b -cwork_mem=64MB", &out));
  EXPECT_THAT(out, ElementsAre(Pair("statement_timeout", "5s"), Pair("search_path", "a b"),
                               Pair("work_mem", "64MB")));
  out.clear();
  EXPECT_FALSE(ParseStartupOptions("-F", &out)) << "other postgres switches are not settings";
  EXPECT_FALSE(ParseStartupOptions("-c novalue", &out));
  EXPECT_FALSE(ParseStartupOptions("-c", &out));
}

}  // namespace
}  // namespace shardyard::pool
