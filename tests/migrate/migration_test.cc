// Unit tests for migration files: names, directives, checksums and directory
// reading.
#include "migrate/migration.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace shardyard::migrate {
namespace {

using std::chrono::milliseconds;

TEST(FileNameTest, ParsesUpAndDownFiles) {
  EXPECT_EQ(ParseFileName("0007_add_orders.sql"), (FileName{7, "add_orders", false}));
  EXPECT_EQ(ParseFileName("0007_add_orders.down.sql"), (FileName{7, "add_orders", true}));
  EXPECT_EQ(ParseFileName("12_x-y.sql"), (FileName{12, "x-y", false}));
}

TEST(FileNameTest, RejectsOtherNames) {
  EXPECT_FALSE(ParseFileName("add_orders.sql"));
  EXPECT_FALSE(ParseFileName("0007.sql"));
  EXPECT_FALSE(ParseFileName("0007_.sql"));
  EXPECT_FALSE(ParseFileName("0007_add orders.sql"));
  EXPECT_FALSE(ParseFileName("0000_zero.sql"));
  EXPECT_FALSE(ParseFileName("0007_add_orders.txt"));
}

TEST(DirectivesTest, ReadsEveryDirective) {
  auto d = ParseDirectives(
      "-- Adds a column.\n"
      "-- shardyard: no-transaction\n"
      "--shardyard: lock-timeout 500ms\n"
      "-- shardyard: statement-timeout 1h\n"
      "-- shardyard: backfill table=orders key=id batch=5000 sleep=20ms\n"
      "-- shardyard: allow drop-column, rename-column\n"
      "\n"
      "ALTER TABLE orders ADD COLUMN x int;\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->no_transaction);
  EXPECT_EQ(d->lock_timeout, milliseconds(500));
  EXPECT_EQ(d->statement_timeout, std::chrono::hours(1));
  ASSERT_TRUE(d->backfill);
  EXPECT_EQ(*d->backfill, (BackfillDirective{"orders", "id", 5000, milliseconds(20)}));
  EXPECT_EQ(d->allow, (std::vector<std::string>{"drop-column", "rename-column"}));
}

TEST(DirectivesTest, DefaultsWhenAbsent) {
  auto d = ParseDirectives("-- just a comment\nSELECT 1;\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, Directives{});
}

TEST(DirectivesTest, BackfillDefaultsBatchAndSleep) {
  auto d = ParseDirectives("-- shardyard: backfill table=t key=k\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->backfill->batch, 1000);
  EXPECT_EQ(d->backfill->sleep, Duration(0));
}

TEST(DirectivesTest, ErrorsNameTheLine) {
  auto unknown = ParseDirectives("-- x\n-- shardyard: no-transactions\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("line 2"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("unknown directive"), std::string::npos);

  EXPECT_FALSE(ParseDirectives("-- shardyard: lock-timeout soon\n").ok());
  EXPECT_FALSE(ParseDirectives("-- shardyard: no-transaction please\n").ok());
  EXPECT_FALSE(ParseDirectives("-- shardyard: backfill table=t\n").ok());
  EXPECT_FALSE(ParseDirectives("-- shardyard: backfill table=t key=id batch=0\n").ok());
  EXPECT_FALSE(ParseDirectives("-- shardyard: backfill table=t key=id color=red\n").ok());
  EXPECT_FALSE(ParseDirectives("-- shardyard: allow\n").ok());
}

TEST(DirectivesTest, DirectiveAfterTheFirstStatementIsAnError) {
  auto d = ParseDirectives("SELECT 1;\n-- shardyard: no-transaction\n");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("before the first statement"), std::string::npos);
}

TEST(ChecksumTest, IsSha256OfTheBytes) {
  EXPECT_EQ(Checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_NE(Checksum("SELECT 1;\n"), Checksum("SELECT 1; \n"));
}

TEST(ScriptTest, SyntaxErrorNamesFileLineAndColumn) {
  auto s = ParseScriptText("m/0001_x.sql", "-- c\nALTER TABLE t ADD COLUMN;\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("m/0001_x.sql"), std::string::npos);
  EXPECT_NE(s.status().message().find("line 2"), std::string::npos);
}

class DirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sy-migrate-dir-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(DirectoryTest, ReadsMigrationsInVersionOrderWithDownFiles) {
  Write("0002_b.sql", "SELECT 2;\n");
  Write("0001_a.sql", "SELECT 1;\n");
  Write("0001_a.down.sql", "SELECT -1;\n");
  Write("README.md", "not a migration");
  auto m = ReadDirectory(dir_.string());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].label, "0001_a");
  EXPECT_TRUE((*m)[0].down);
  EXPECT_EQ((*m)[1].label, "0002_b");
  EXPECT_FALSE((*m)[1].down);
  EXPECT_EQ((*m)[0].up.checksum, Checksum("SELECT 1;\n"));
}

TEST_F(DirectoryTest, RejectsBadNamesDuplicatesAndOrphanDownFiles) {
  Write("0001_a.sql", "SELECT 1;\n");
  Write("0001_b.sql", "SELECT 1;\n");
  EXPECT_FALSE(ReadDirectory(dir_.string()).ok());
  std::filesystem::remove(dir_ / "0001_b.sql");
  Write("0003_c.down.sql", "SELECT 1;\n");
  EXPECT_FALSE(ReadDirectory(dir_.string()).ok());
  std::filesystem::remove(dir_ / "0003_c.down.sql");
  Write("add_column.sql", "SELECT 1;\n");
  auto bad = ReadDirectory(dir_.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("NNNN_name.sql"), std::string::npos);
}

TEST_F(DirectoryTest, MissingDirectoryIsNotFound) {
  EXPECT_EQ(ReadDirectory((dir_ / "nope").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DirectoryTest, NewCreatesTheNextVersionWithATemplateThatParses) {
  Write("0009_a.sql", "SELECT 1;\n");
  auto path = CreateMigrationFiles(dir_.string(), "add orders");
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(std::filesystem::path(*path).filename(), "0010_add_orders.sql");
  EXPECT_TRUE(std::filesystem::exists(dir_ / "0010_add_orders.down.sql"));
  auto m = ReadDirectory(dir_.string());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->back().up.directives, Directives{});
}

}  // namespace
}  // namespace shardyard::migrate
