// Compiles a migration script into the steps the runner executes, each with the
// locks it takes.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/duration.h"
#include "migrate/migration.h"
#include "migrate/statement_facts.h"

namespace shardyard::migrate {

enum class StepKind : uint8_t {
  kTransaction,              // every statement of a transactional migration, atomically
  kStatement,                // one statement in its own short transaction
  kOutsideTransaction,       // one statement that cannot run in a transaction block
  kCreateIndexConcurrently,  // checked, retried and cleaned up around INVALID
                             // indexes
  kDropIndexConcurrently,
  kReindexConcurrently,
  kBackfill,  // one UPDATE run in key-range batches, one transaction per batch
};
std::string_view StepKindName(StepKind kind);

struct Step {
  StepKind kind = StepKind::kStatement;
  std::vector<std::string> sql;  // the statements to run, in order
  std::vector<int> lines;        // their first lines in the file
  std::vector<std::string> summaries;
  LockMode lock = LockMode::kNone;  // the strongest lock of the step
  std::vector<RelationLock> locks;  // the relations it locks
  bool locks_unknown = false;
  std::string index_name;   // concurrent index steps
  std::string index_table;  // CREATE INDEX CONCURRENTLY / REINDEX TABLE CONCURRENTLY
  std::optional<BackfillDirective> backfill;
  std::vector<std::string> created;  // relations its statements create

  // One line: "ALTER TABLE orders ADD COLUMN note text" or "3 statements".
  std::string Summary() const;
  // Whether the runner bounds the lock wait with lock_timeout and retries
  // (everything except concurrent index work, which a lock timeout would leave
  // half-built).
  bool UsesLockTimeout() const;
};

struct PlanSettings {
  Duration lock_timeout = std::chrono::seconds(1);
  Duration statement_timeout = std::chrono::minutes(10);  // for non-concurrent steps
};

struct MigrationPlan {
  bool transactional = true;
  std::vector<Step> steps;
  Duration lock_timeout{0};       // the directive's, or the settings'
  Duration statement_timeout{0};  // for non-concurrent steps
  // For concurrent index steps: the directive's statement-timeout, else none
  // (0).
  Duration concurrent_statement_timeout{0};
};

// Fails when the script cannot be run as written, e.g. a backfill whose UPDATE
// is missing.
absl::StatusOr<MigrationPlan> PlanScript(const Script& script, const PlanSettings& settings);

}  // namespace shardyard::migrate
