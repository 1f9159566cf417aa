// Turns statements into runner steps: one atomic step, or one per statement
// with the backfill split.
#include "migrate/plan.h"

#include <algorithm>

#include "common/strings.h"

namespace shardyard::migrate {

std::string_view StepKindName(StepKind kind) {
  switch (kind) {
    case StepKind::kTransaction:
      return "transaction";
    case StepKind::kStatement:
      return "statement";
    case StepKind::kOutsideTransaction:
      return "outside transaction";
    case StepKind::kCreateIndexConcurrently:
      return "create index concurrently";
    case StepKind::kDropIndexConcurrently:
      return "drop index concurrently";
    case StepKind::kReindexConcurrently:
      return "reindex concurrently";
    case StepKind::kBackfill:
      return "backfill";
  }
  return "?";
}

std::string Step::Summary() const {
  if (kind == StepKind::kBackfill && backfill) {
    return Cat("backfill ", backfill->table, " by ", backfill->key, " in batches of ",
               backfill->batch, ": ", summaries.empty() ? "" : summaries[0]);
  }
  if (summaries.size() == 1) return summaries[0];
  return Cat(summaries.size(), " statements");
}

bool Step::UsesLockTimeout() const {
  return kind != StepKind::kCreateIndexConcurrently && kind != StepKind::kDropIndexConcurrently &&
         kind != StepKind::kReindexConcurrently;
}

namespace {

void AddStatement(Step* step, const sql::Statement& st, const StatementFacts& facts,
                  std::string sql) {
  step->sql.push_back(std::move(sql));
  step->lines.push_back(st.line);
  step->summaries.push_back(facts.summary);
  step->locks_unknown = step->locks_unknown || facts.locks_unknown;
  step->lock = LockMode::kNone;
  for (const RelationLock& l : facts.locks) {
    // A relation created earlier in the same step is invisible to other
    // sessions until commit.
    bool created_here =
        std::any_of(step->created.begin(), step->created.end(),
                    [&](const std::string& c) { return SameRelation(c, l.relation); });
    if (created_here) continue;
    auto it = std::find_if(step->locks.begin(), step->locks.end(),
                           [&](const RelationLock& x) { return x.relation == l.relation; });
    if (it == step->locks.end()) {
      step->locks.push_back(l);
    } else {
      it->mode = std::max(it->mode, l.mode);
    }
  }
  for (const RelationLock& l : step->locks) step->lock = std::max(step->lock, l.mode);
  step->created.insert(step->created.end(), facts.created_relations.begin(),
                       facts.created_relations.end());
}

int MaxParamNumber(const sql::Node& tree) {
  int max = 0;
  tree.ForEachNode([&](std::string_view tag, const sql::Node& body) {
    if (tag == "ParamRef") max = std::max(max, static_cast<int>(body["number"].Int()));
  });
  return max;
}

// The backfill UPDATE with its key range as $1 (first key of a batch) and $2
// (last key).
absl::StatusOr<std::string> BackfillSql(const sql::Statement& st, const BackfillDirective& b) {
  int params = MaxParamNumber(st.tree);
  if (params == 2) return st.text;
  if (params != 0) {
    return absl::InvalidArgumentError(
        Cat("line ", st.line,
            ": the backfill UPDATE may use $1 (first key of a batch) and $2 "
            "(last key), nothing else"));
  }
  if (st.body().Has("whereClause") || st.body().Has("returningList")) {
    return absl::InvalidArgumentError(
        Cat("line ", st.line,
            ": a backfill UPDATE with a WHERE clause must bound it with the "
            "batch range itself: ... AND ",
            b.key, " BETWEEN $1 AND $2"));
  }
  return Cat(st.text, " WHERE ", b.key, " BETWEEN $1 AND $2");
}

}  // namespace

absl::StatusOr<MigrationPlan> PlanScript(const Script& script, const PlanSettings& settings) {
  const Directives& d = script.directives;
  MigrationPlan plan;
  plan.transactional = !d.no_transaction && !d.backfill;
  plan.lock_timeout = d.lock_timeout.value_or(settings.lock_timeout);
  plan.statement_timeout = d.statement_timeout.value_or(settings.statement_timeout);
  plan.concurrent_statement_timeout = d.statement_timeout.value_or(Duration(0));

  if (plan.transactional) {
    Step step;
    step.kind = StepKind::kTransaction;
    for (const sql::Statement& st : script.statements) {
      AddStatement(&step, st, AnalyzeStatement(st), st.text);
    }
    plan.steps.push_back(std::move(step));
    return plan;
  }

  int backfill_updates = 0;
  for (const sql::Statement& st : script.statements) {
    StatementFacts facts = AnalyzeStatement(st);
    Step step;
    std::string text = st.text;
    switch (facts.execution) {
      case Execution::kAnywhere:
        step.kind = StepKind::kStatement;
        break;
      case Execution::kOutsideTransaction:
        step.kind = StepKind::kOutsideTransaction;
        break;
      case Execution::kCreateIndexConcurrently:
        step.kind = StepKind::kCreateIndexConcurrently;
        break;
      case Execution::kDropIndexConcurrently:
        step.kind = StepKind::kDropIndexConcurrently;
        break;
      case Execution::kReindexConcurrently:
        step.kind = StepKind::kReindexConcurrently;
        break;
      case Execution::kTransactionControl:
        return absl::InvalidArgumentError(
            Cat(script.path, ":", st.line,
                ": BEGIN/COMMIT/ROLLBACK cannot be used in a migration; the "
                "runner owns "
                "transactions"));
    }
    if (d.backfill && st.type() == "UpdateStmt" &&
        SameRelation(RangeVarName(st.body()["relation"]), d.backfill->table)) {
      auto sql = BackfillSql(st, *d.backfill);
      if (!sql.ok())
        return absl::InvalidArgumentError(Cat(script.path, ": ", sql.status().message()));
      text = std::move(*sql);
      step.kind = StepKind::kBackfill;
      step.backfill = d.backfill;
      ++backfill_updates;
    } else if (MaxParamNumber(st.tree) > 0) {
      return absl::InvalidArgumentError(
          Cat(script.path, ":", st.line, ": only a backfill UPDATE may use $1 and $2"));
    }
    step.index_name = facts.index_name;
    step.index_table = facts.index_table;
    AddStatement(&step, st, facts, std::move(text));
    plan.steps.push_back(std::move(step));
  }
  if (d.backfill && backfill_updates != 1) {
    return absl::InvalidArgumentError(Cat(script.path,
                                          ": the backfill directive needs exactly one UPDATE of ",
                                          d.backfill->table, " (found ", backfill_updates, ")"));
  }
  return plan;
}

}  // namespace shardyard::migrate
