// Lexical helpers over SQL text that need no grammar: the daemon's hot-path scans use these
// without linking PostgreSQL's parser.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardyard::sql {

// The offset of the first character that is not whitespace or part of a comment, from `from`.
// Block comments nest, as in PostgreSQL.
size_t SkipSpaceAndComments(std::string_view text, size_t from = 0);

}  // namespace shardyard::sql
