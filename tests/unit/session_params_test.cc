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
  EXPECT_TRUE(IsReportedParam("application_name"));
  EXPECT_FALSE(IsReportedParam("statement_timeout"));
  EXPECT_TRUE(IsReadOnlyParam("server_version"));
}

TEST(SessionParamsTest, SetKeepsEntriesSorted) {
  ParamSet p;
  p.Set("TimeZone", "UTC");
  p.Set("DateStyle", "ISO, MDY");
  p.Set("application_name", "a");
  p.Set("TimeZone", "Asia/Tokyo");
  EXPECT_THAT(p.entries(), ElementsAre(Pair("DateStyle", "ISO, MDY"), Pair("TimeZone", "Asia/Tokyo"),
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
            "RESET extra_float_digits");
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

TEST(SessionParamsTest, QuotingSurvivesQuotesAndBackslashes) {
  EXPECT_EQ(QuoteLiteral("it's"), "E'it''s'");
  EXPECT_EQ(QuoteLiteral("a\\b"), "E'a\\\\b'");
  EXPECT_EQ(QuoteLiteral("'; DROP TABLE x; --"), "E'''; DROP TABLE x; --'");
}

TEST(SessionParamsTest, StartupOptionsParseLikePostgres) {
  std::vector<std::pair<std::string, std::string>> out;
  ASSERT_TRUE(ParseStartupOptions("-c statement_timeout=5s --search-path=a\\ b -cwork_mem=64MB",
                                  &out));
  EXPECT_THAT(out, ElementsAre(Pair("statement_timeout", "5s"), Pair("search_path", "a b"),
                               Pair("work_mem", "64MB")));
  out.clear();
  EXPECT_FALSE(ParseStartupOptions("-F", &out)) << "other postgres switches are not settings";
  EXPECT_FALSE(ParseStartupOptions("-c novalue", &out));
  EXPECT_FALSE(ParseStartupOptions("-c", &out));
}

}  // namespace
}  // namespace shardyard::pool
