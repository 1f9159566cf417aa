// Parses SQL text into statements with their source positions and parse trees
// (PostgreSQL grammar).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sql/lexical.h"  // SkipSpaceAndComments, for callers of ParseScript
#include "sql/tree.h"

namespace shardyard::sql {

// One statement of a script. `tree` is the raw parse node, e.g.
// {"AlterTableStmt": {...}}, with the field names of PostgreSQL's parsenodes.h.
struct Statement {
  size_t location = 0;  // byte offset of the first token in the script
  std::string text;     // from the first token to the end, without the terminating
                        // semicolon
  int line = 1;         // 1-based line of the first token
  Node tree;

  std::string_view type() const { return tree.Tag(); }
  const Node& body() const { return tree.Body(); }
};

// Parses a script of zero or more statements. A syntax error becomes
// InvalidArgument with the server's wording and the line and column where it
// was found.
absl::StatusOr<std::vector<Statement>> ParseScript(std::string_view script);

}  // namespace shardyard::sql
