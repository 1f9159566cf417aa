// Migration files on disk: NNNN_name.sql / NNNN_name.down.sql, their directives
// and checksums.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/duration.h"
#include "sql/parser.h"

namespace shardyard::migrate {

// `-- shardyard: backfill table=orders key=id batch=5000 sleep=20ms`
struct BackfillDirective {
  std::string table;
  std::string key;
  int64_t batch = 1000;
  Duration sleep{0};
  bool operator==(const BackfillDirective&) const = default;
};

// What the leading `-- shardyard: ...` comments of a file ask for.
struct Directives {
  bool no_transaction = false;
  std::optional<Duration> lock_timeout;
  std::optional<Duration> statement_timeout;
  std::optional<BackfillDirective> backfill;
  std::vector<std::string> allow;  // lint rules this file accepts (`-- shardyard: allow RULE,...`)
  bool operator==(const Directives&) const = default;
};

// Reads the directives of a script; an unknown or malformed directive, or one
// placed after the first statement, is an error naming its line.
absl::StatusOr<Directives> ParseDirectives(std::string_view text);

// "0007_add_orders.sql" → {7, "add_orders", false}; "0007_add_orders.down.sql"
// → {..., true}.
struct FileName {
  int64_t version = 0;
  std::string name;
  bool down = false;
  bool operator==(const FileName&) const = default;
};
std::optional<FileName> ParseFileName(std::string_view file_name);

// Lowercase hex SHA-256 of the file's bytes.
std::string Checksum(std::string_view text);

// One SQL file, read and parsed.
struct Script {
  std::string path;
  std::string text;
  std::string checksum;
  Directives directives;
  std::vector<sql::Statement> statements;
};
// Parses `text` as the content of `path` (directives, then statements).
absl::StatusOr<Script> ParseScriptText(std::string path, std::string text);
absl::StatusOr<Script> ReadScript(const std::string& path);

struct Migration {
  int64_t version = 0;
  std::string name;
  Script up;
  std::optional<Script> down;
  // "0007_add_orders": the file name without ".sql", as operators see it.
  std::string label;
};

// Every migration in `dir`, by version. Other files are ignored, but a .sql
// file that does not follow the naming scheme, a duplicate version or a down
// file without its up file is an error.
absl::StatusOr<std::vector<Migration>> ReadDirectory(const std::string& dir);

// Writes NNNN_name.sql and NNNN_name.down.sql with the next version; returns
// the up file's path.
absl::StatusOr<std::string> CreateMigrationFiles(const std::string& dir, std::string_view name);

// "0007" style label of a version, as wide as the files use (at least four
// digits).
std::string FormatVersion(int64_t version);

}  // namespace shardyard::migrate
