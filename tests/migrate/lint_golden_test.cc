// Runs every lint golden case: NN_name.sql with its expected findings in
// NN_name.expected.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "migrate/lint.h"

namespace shardyard::migrate {
namespace {

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::filesystem::path> Cases() {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(SHARDYARD_LINT_CASES_DIR)) {
    if (e.path().extension() == ".sql") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// "LINE RULE" per finding, with " allowed" when the file's allow directive
// accepts it.
std::string Render(const Script& script) {
  std::vector<Finding> all = Lint(script);
  std::vector<Finding> bad = Unallowed(all, script, {});
  std::string out;
  for (const Finding& f : all) {
    bool allowed = std::find(bad.begin(), bad.end(), f) == bad.end();
    out += std::to_string(f.line) + " " + f.rule + (allowed ? " allowed" : "") + "\n";
  }
  return out;
}

TEST(LintGoldenTest, EveryCaseProducesExactlyItsExpectedFindings) {
  std::vector<std::filesystem::path> cases = Cases();
  ASSERT_GE(cases.size(), 30u);
  for (const auto& sql : cases) {
    SCOPED_TRACE(sql.filename().string());
    auto script = ParseScriptText(sql.string(), ReadAll(sql));
    ASSERT_TRUE(script.ok()) << script.status();
    std::filesystem::path expected = sql;
    expected.replace_extension(".expected");
    ASSERT_TRUE(std::filesystem::exists(expected));
    EXPECT_EQ(Render(*script), ReadAll(expected));
  }
}

TEST(LintGoldenTest, EveryRuleHasAGoldenCase) {
  std::set<std::string> seen;
  for (const auto& sql : Cases()) {
    auto script = ParseScriptText(sql.string(), ReadAll(sql));
    ASSERT_TRUE(script.ok());
    for (const Finding& f : Lint(*script)) seen.insert(f.rule);
  }
  for (const LintRule& rule : LintRules()) {
    EXPECT_TRUE(seen.contains(std::string(rule.name))) << rule.name << " has no golden case";
  }
}

TEST(LintTest, EveryFindingNamesASafeAlternative) {
  for (const auto& sql : Cases()) {
    auto script = ParseScriptText(sql.string(), ReadAll(sql));
    ASSERT_TRUE(script.ok());
    for (const Finding& f : Lint(*script)) {
      EXPECT_GT(f.message.size(), 40u) << f.rule;
      EXPECT_TRUE(IsLintRule(f.rule)) << f.rule;
    }
  }
}

TEST(LintTest, SetNotNullIsSafeAfterACheckValidatedInAnEarlierMigration) {
  auto earlier =
      ParseScriptText("0001.sql",
                      "-- shardyard: no-transaction\n"
                      "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
                      "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn;\n");
  auto later = ParseScriptText("0002.sql", "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n");
  ASSERT_TRUE(earlier.ok() && later.ok());
  EXPECT_TRUE(Lint(*later, {&*earlier}).empty());
  EXPECT_EQ(Lint(*later).size(), 1u);
}

TEST(LintTest, CommandLineAllowAcceptsARule) {
  auto script = ParseScriptText("x.sql", "DROP TABLE legacy;\n");
  ASSERT_TRUE(script.ok());
  std::vector<Finding> all = Lint(*script);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(Unallowed(all, *script, {}).size(), 1u);
  EXPECT_TRUE(Unallowed(all, *script, {"drop-table"}).empty());
  EXPECT_TRUE(Unallowed(all, *script, {"all"}).empty());
}

}  // namespace
}  // namespace shardyard::migrate
