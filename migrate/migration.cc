// Reads migration directories: file names, directive comments, checksums, and
// the parsed scripts.
#include "migrate/migration.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_format.h"
#include "common/crypto.h"
#include "common/strings.h"

namespace shardyard::migrate {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kDirectivePrefix = "shardyard:";

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The directive text of a comment line ("no-transaction"), if the line is one.
std::optional<std::string_view> DirectiveOf(std::string_view line) {
  line = Trim(line);
  if (!line.starts_with("--")) return std::nullopt;
  line = Trim(line.substr(2));
  if (!line.starts_with(kDirectivePrefix)) return std::nullopt;
  return Trim(line.substr(kDirectivePrefix.size()));
}

absl::Status LineError(int line, std::string_view what) {
  return absl::InvalidArgumentError(Cat("line ", line, ": ", what));
}

absl::Status ParseBackfill(std::string_view args, int line, Directives* out) {
  BackfillDirective b;
  for (std::string_view part : Split(args, ' ', /*skip_empty=*/true)) {
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return LineError(line, Cat("backfill: expected key=value, got \"", part, "\""));
    }
    std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (value.empty()) return LineError(line, Cat("backfill: ", key, " needs a value"));
    if (key == "table") {
      b.table = std::string(value);
    } else if (key == "key") {
      b.key = std::string(value);
    } else if (key == "batch") {
      if (!ParseInt(value, &b.batch) || b.batch < 1 || b.batch > 10'000'000) {
        return LineError(line, Cat("backfill: batch must be a row count from 1 to 10000000"));
      }
    } else if (key == "sleep") {
      auto d = ParseDuration(value);
      if (!d.ok()) return LineError(line, Cat("backfill: sleep: ", d.status().message()));
      b.sleep = *d;
    } else {
      return LineError(
          line, Cat("backfill: unknown setting \"", key, "\" (expected table, key, batch, sleep)"));
    }
  }
  if (b.table.empty() || b.key.empty()) {
    return LineError(line, "backfill needs table=NAME and key=COLUMN");
  }
  out->backfill = std::move(b);
  return absl::OkStatus();
}

absl::Status ParseOne(std::string_view directive, int line, Directives* out) {
  size_t space = directive.find(' ');
  std::string_view name = directive.substr(0, space);
  std::string_view args = space == std::string_view::npos ? "" : Trim(directive.substr(space));
  auto duration_arg = [&](std::optional<Duration>* slot) -> absl::Status {
    auto d = ParseDuration(args);
    if (!d.ok()) return LineError(line, Cat(name, ": ", d.status().message()));
    *slot = *d;
    return absl::OkStatus();
  };
  if (name == "no-transaction") {
    if (!args.empty()) return LineError(line, "no-transaction takes no argument");
    out->no_transaction = true;
    return absl::OkStatus();
  }
  if (name == "lock-timeout") return duration_arg(&out->lock_timeout);
  if (name == "statement-timeout") return duration_arg(&out->statement_timeout);
  if (name == "backfill") return ParseBackfill(args, line, out);
  if (name == "allow") {
    for (std::string_view rule : Split(args, ',', /*skip_empty=*/true)) {
      out->allow.emplace_back(Trim(rule));
    }
    if (out->allow.empty()) return LineError(line, "allow needs a lint rule name");
    return absl::OkStatus();
  }
  return LineError(line, Cat("unknown directive \"", name,
                             "\" (expected no-transaction, lock-timeout, statement-timeout, "
                             "backfill, allow)"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Cat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

absl::StatusOr<Directives> ParseDirectives(std::string_view text) {
  Directives out;
  bool leading = true;
  int line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    std::string_view trimmed = Trim(line);
    bool comment = trimmed.starts_with("--");
    if (leading && !trimmed.empty() && !comment) leading = false;
    auto directive = DirectiveOf(line);
    if (!directive) continue;
    if (!leading) {
      return LineError(line_no,
                       "shardyard directives must be in the comments before the first "
                       "statement");
    }
    if (auto st = ParseOne(*directive, line_no, &out); !st.ok()) return st;
  }
  return out;
}

std::optional<FileName> ParseFileName(std::string_view file_name) {
  if (!file_name.ends_with(".sql")) return std::nullopt;
  std::string_view stem = file_name.substr(0, file_name.size() - 4);
  FileName out;
  if (stem.ends_with(".down")) {
    out.down = true;
    stem.remove_suffix(5);
  }
  size_t digits = 0;
  while (digits < stem.size() && stem[digits] >= '0' && stem[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15 || digits + 1 >= stem.size() || stem[digits] != '_') {
    return std::nullopt;
  }
  if (!ParseInt(stem.substr(0, digits), &out.version) || out.version <= 0) return std::nullopt;
  out.name = std::string(stem.substr(digits + 1));
  for (char c : out.name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return std::nullopt;
  }
  return out;
}

std::string Checksum(std::string_view text) {
  crypto::Sha256Digest digest = crypto::Sha256(crypto::AsBytes(text));
  std::string hex;
  for (uint8_t b : digest) hex += absl::StrFormat("%02x", b);
  return hex;
}

absl::StatusOr<Script> ParseScriptText(std::string path, std::string text) {
  Script s;
  s.path = std::move(path);
  s.text = std::move(text);
  s.checksum = Checksum(s.text);
  auto directives = ParseDirectives(s.text);
  if (!directives.ok()) {
    return absl::InvalidArgumentError(Cat(s.path, ": ", directives.status().message()));
  }
  s.directives = std::move(*directives);
  auto statements = sql::ParseScript(s.text);
  if (!statements.ok()) {
    return absl::InvalidArgumentError(Cat(s.path, ": ", statements.status().message()));
  }
  s.statements = std::move(*statements);
  return s;
}

absl::StatusOr<Script> ReadScript(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseScriptText(path, std::move(*text));
}

std::string FormatVersion(int64_t version) { return absl::StrFormat("%04d", version); }

absl::StatusOr<std::vector<Migration>> ReadDirectory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(Cat("migrations directory ", dir, " does not exist"));
  }
  std::map<int64_t, std::string> up_files, down_files, stems;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) names.push_back(entry.path().filename().string());
  }
  if (ec) return absl::InternalError(Cat("cannot list ", dir, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  for (const std::string& file : names) {
    if (!std::string_view(file).ends_with(".sql")) continue;
    auto parsed = ParseFileName(file);
    if (!parsed) {
      return absl::InvalidArgumentError(
          Cat(dir, "/", file,
              ": migration files are named NNNN_name.sql or NNNN_name.down.sql "
              "(letters, digits, _ and - in the name)"));
    }
    auto& slot = parsed->down ? down_files : up_files;
    if (auto it = slot.find(parsed->version); it != slot.end()) {
      return absl::InvalidArgumentError(
          Cat("version ", parsed->version, " is used twice: ", it->second, " and ", file));
    }
    slot[parsed->version] = file;
    std::string stem = file.substr(0, file.size() - (parsed->down ? 9 : 4));
    if (!parsed->down) stems[parsed->version] = stem;
  }
  std::vector<Migration> out;
  for (const auto& [version, file] : down_files) {
    if (!up_files.contains(version)) {
      return absl::InvalidArgumentError(Cat(dir, "/", file, " has no up file"));
    }
    std::string expected = stems[version] + ".down.sql";
    if (file != expected) {
      return absl::InvalidArgumentError(
          Cat(dir, "/", file, " does not match its up file (expected ", expected, ")"));
    }
  }
  for (const auto& [version, file] : up_files) {
    Migration m;
    m.version = version;
    m.label = stems[version];
    m.name = ParseFileName(file)->name;
    auto up = ReadScript(Cat(dir, "/", file));
    if (!up.ok()) return up.status();
    m.up = std::move(*up);
    if (auto it = down_files.find(version); it != down_files.end()) {
      auto down = ReadScript(Cat(dir, "/", it->second));
      if (!down.ok()) return down.status();
      m.down = std::move(*down);
    }
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<std::string> CreateMigrationFiles(const std::string& dir, std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("new needs a NAME");
  std::string clean;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    clean.push_back(ok ? c : '_');
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(Cat("cannot create ", dir, ": ", ec.message()));
  int64_t next = 1;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (auto parsed = ParseFileName(entry.path().filename().string())) {
      next = std::max(next, parsed->version + 1);
    }
  }
  std::string stem = Cat(FormatVersion(next), "_", clean);
  std::string up = Cat(dir, "/", stem, ".sql");
  std::string down = Cat(dir, "/", stem, ".down.sql");
  if (fs::exists(up) || fs::exists(down)) {
    return absl::AlreadyExistsError(Cat(up, " already exists"));
  }
  std::ofstream u(up), d(down);
  if (!u || !d) return absl::InternalError(Cat("cannot write ", up));
  u << "-- " << stem << ": what this change is for.\n"
    << "-- Directives belong in these leading comments, one per line, written "
       "as\n"
    << "-- \"-- shardyard: no-transaction\", \"-- shardyard: lock-timeout "
       "500ms\",\n"
    << "-- \"-- shardyard: statement-timeout 1h\" or\n"
    << "-- \"-- shardyard: backfill table=T key=id batch=5000 sleep=20ms\" "
       "(docs/migrate.md).\n"
    << "\n";
  d << "-- Undoes " << stem << ". Write it so it can run again after a partial run (IF EXISTS).\n"
    << "\n";
  return up;
}

}  // namespace shardyard::migrate
