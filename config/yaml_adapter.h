// Turns YAML text into a plain tree that remembers line numbers (the only yaml-cpp user).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace shardyard::config {

// A YAML value with its position, free of yaml-cpp types so validation stays pure.
struct YamlNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  std::string scalar;           // for kScalar
  bool quoted = false;          // the scalar was written in quotes (so "123" is a string)
  std::vector<YamlNode> items;  // for kSequence
  std::vector<std::pair<std::string, YamlNode>> entries;  // for kMap, in file order
  std::vector<int> entry_lines;                           // line of each map key
  int line = 0;                                           // 1-based
};

// Parses one YAML document. A syntax error comes back as InvalidArgument with "line N: ...".
absl::StatusOr<YamlNode> ParseYaml(std::string_view text);

}  // namespace shardyard::config
