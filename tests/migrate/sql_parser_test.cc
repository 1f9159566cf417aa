// Unit tests for the parser adapter (router/sql_parser) and the generic tree's
// JSON reader.
#include <gtest/gtest.h>

#include "sql/parser.h"

namespace shardyard::sql {
namespace {

TEST(SqlParserTest, SplitsStatementsWithPositionsAndLines) {
  std::string script =
      "-- leading comment\n"
      "CREATE TABLE t (id int);\n"
      "\n"
      "/* block */ ALTER TABLE t\n"
      "  ADD COLUMN a text;  SELECT 'x;y'";
  auto statements = ParseScript(script);
  ASSERT_TRUE(statements.ok()) << statements.status();
  ASSERT_EQ(statements->size(), 3u);
  EXPECT_EQ((*statements)[0].text, "CREATE TABLE t (id int)");
  EXPECT_EQ((*statements)[0].line, 2);
  EXPECT_EQ((*statements)[0].type(), "CreateStmt");
  EXPECT_EQ((*statements)[1].text, "ALTER TABLE t\n  ADD COLUMN a text");
  EXPECT_EQ((*statements)[1].line, 4);
  EXPECT_EQ((*statements)[2].text, "SELECT 'x;y'");
  EXPECT_EQ(script.substr((*statements)[2].location, 6), "SELECT");
}

TEST(SqlParserTest, TreeUsesPostgresNodeNames) {
  auto statements = ParseScript("CREATE INDEX CONCURRENTLY i ON s.t (a)");
  ASSERT_TRUE(statements.ok());
  const Node& body = (*statements)[0].body();
  EXPECT_EQ((*statements)[0].type(), "IndexStmt");
  EXPECT_TRUE(body["concurrent"].Bool());
  EXPECT_EQ(body["idxname"].Str(), "i");
  EXPECT_EQ(body["relation"]["schemaname"].Str(), "s");
  EXPECT_FALSE(body["unique"].Bool());  // absent fields read as defaults
  EXPECT_TRUE(body["missing"]["deeper"].IsNull());
}

TEST(SqlParserTest, SyntaxErrorsGiveLineAndColumn) {
  auto statements = ParseScript("SELECT 1;\nSELEC 2;");
  ASSERT_FALSE(statements.ok());
  EXPECT_NE(statements.status().message().find("syntax error"), std::string::npos);
  EXPECT_NE(statements.status().message().find("line 2, column 1"), std::string::npos);
}

TEST(SqlParserTest, EmptyAndCommentOnlyScripts) {
  auto empty = ParseScript("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto comments = ParseScript("-- nothing here\n/* nor here */\n");
  ASSERT_TRUE(comments.ok());
  EXPECT_TRUE(comments->empty());
}

TEST(SqlParserTest, SkipSpaceAndCommentsHandlesNestedBlocks) {
  std::string_view text = "/* a /* b */ c */ -- d\n  SELECT";
  EXPECT_EQ(text.substr(SkipSpaceAndComments(text)), "SELECT");
}

TEST(JsonTest, ReadsEscapesNumbersAndNesting) {
  auto node = ParseJson(R"({"a":[1,-2.5e3,true,false,null],"s":"x\u003e\"\\\n\ud83d\ude00"})");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ((*node)["a"].items().size(), 5u);
  EXPECT_EQ((*node)["a"].items()[0].Int(), 1);
  EXPECT_EQ((*node)["a"].items()[1].Str(), "-2.5e3");
  EXPECT_TRUE((*node)["a"].items()[2].Bool());
  EXPECT_TRUE((*node)["a"].items()[4].IsNull());
  EXPECT_EQ((*node)["s"].Str(), "x>\"\\\n\xF0\x9F\x98\x80");
}

TEST(JsonTest, RejectsMalformedInput) {
  EXPECT_FALSE(ParseJson("{").ok());
  EXPECT_FALSE(ParseJson("[1,]").ok());
  EXPECT_FALSE(ParseJson("{\"a\" 1}").ok());
  EXPECT_FALSE(ParseJson("\"\\q\"").ok());
  EXPECT_FALSE(ParseJson("1 2").ok());
  EXPECT_FALSE(ParseJson(std::string(5000, '[')).ok());
}

TEST(JsonTest, ForEachNodeVisitsTaggedNodes) {
  auto statements = ParseScript("UPDATE t SET a = $1 WHERE id BETWEEN $1 AND $2");
  ASSERT_TRUE(statements.ok());
  int params = 0;
  (*statements)[0].tree.ForEachNode([&](std::string_view tag, const Node&) {
    if (tag == "ParamRef") ++params;
  });
  EXPECT_EQ(params, 3);
}

}  // namespace
}  // namespace shardyard::sql
