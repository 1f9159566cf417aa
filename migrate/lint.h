// Static checks of a migration script for statements that block application
// traffic or break it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "migrate/migration.h"

namespace shardyard::migrate {

struct LintRule {
  std::string_view name;     // e.g. "create-index-non-concurrently"
  std::string_view summary;  // one line, for `lint --help` and docs
};
// Every rule, in the order the docs list them.
const std::vector<LintRule>& LintRules();
bool IsLintRule(std::string_view name);

struct Finding {
  std::string rule;
  int line = 0;         // of the statement's first token
  std::string message;  // what is wrong and the safe alternative
  bool operator==(const Finding&) const = default;
};

// Lints `script`. `earlier` are the scripts of earlier migrations, in order; a
// SET NOT NULL is safe when one of them (or this script, before it) validated a
// CHECK (col IS NOT NULL).
std::vector<Finding> Lint(const Script& script, const std::vector<const Script*>& earlier = {});

// The findings not accepted by the script's `allow` directive or by `allowed`
// (--allow).
std::vector<Finding> Unallowed(const std::vector<Finding>& findings, const Script& script,
                               const std::vector<std::string>& allowed);

}  // namespace shardyard::migrate
