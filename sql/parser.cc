// The only user of libpg_query: runs PostgreSQL's own grammar and converts its
// JSON to sql::Node.
#include "sql/parser.h"

#include <pg_query.h>

#include <algorithm>

#include "common/strings.h"
#include "sql/lexical.h"

namespace shardyard::sql {

namespace {

struct LineColumn {
  int line = 1;
  int column = 1;
};

LineColumn PositionOf(std::string_view text, size_t offset) {
  LineColumn lc;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++lc.line;
      lc.column = 1;
    } else {
      ++lc.column;
    }
  }
  return lc;
}

// Owns a PgQueryParseResult for the length of one call.
class ParseResult {
 public:
  explicit ParseResult(const std::string& script) : result_(pg_query_parse(script.c_str())) {}
  ~ParseResult() { pg_query_free_parse_result(result_); }
  ParseResult(const ParseResult&) = delete;
  ParseResult& operator=(const ParseResult&) = delete;
  const PgQueryParseResult& get() const { return result_; }

 private:
  PgQueryParseResult result_;
};

}  // namespace

absl::StatusOr<std::vector<Statement>> ParseScript(std::string_view script) {
  std::string input(script);  // the parser wants a NUL-terminated string
  ParseResult result(input);
  if (const PgQueryError* error = result.get().error) {
    size_t offset = error->cursorpos > 0 ? static_cast<size_t>(error->cursorpos - 1) : 0;
    LineColumn lc = PositionOf(script, offset);
    return absl::InvalidArgumentError(
        Cat(error->message, " (line ", lc.line, ", column ", lc.column, ")"));
  }
  auto json = ParseJson(result.get().parse_tree ? result.get().parse_tree : "{}");
  if (!json.ok()) return json.status();

  std::vector<Statement> out;
  for (const Node& raw : (*json)["stmts"].items()) {
    int64_t location = raw["stmt_location"].Int();
    int64_t length = raw["stmt_len"].Int();  // 0: to the end of the script
    if (location < 0 || static_cast<size_t>(location) > script.size() || length < 0) {
      return absl::InternalError("parser returned a statement outside the script");
    }
    size_t end = length == 0 ? script.size()
                             : std::min(script.size(), static_cast<size_t>(location + length));
    Statement s;
    s.location = SkipSpaceAndComments(script.substr(0, end), static_cast<size_t>(location));
    std::string_view text = script.substr(s.location, end - s.location);
    while (!text.empty() && (text.back() == ';' || text.back() == ' ' || text.back() == '\n' ||
                             text.back() == '\t' || text.back() == '\r')) {
      text.remove_suffix(1);
    }
    s.text = std::string(text);
    s.line = PositionOf(script, s.location).line;
    s.tree = raw["stmt"];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace shardyard::sql
