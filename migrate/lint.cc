// The lint rules: each finding names the blocking or breaking effect and the
// online alternative.
#include "migrate/lint.h"

#include <algorithm>
#include <set>

#include "common/strings.h"
#include "migrate/statement_facts.h"

namespace shardyard::migrate {

namespace {

using sql::Node;

const std::vector<LintRule> kRules = {
    {"create-index-non-concurrently",
     "CREATE INDEX on an existing table blocks writes for the whole build"},
    {"drop-index-non-concurrently", "DROP INDEX takes ACCESS EXCLUSIVE on the table"},
    {"reindex-non-concurrently", "REINDEX without CONCURRENTLY blocks writes (and reads of it)"},
    {"add-column-volatile-default",
     "ADD COLUMN with a volatile default, serial, identity or stored generated "
     "column rewrites "
     "the table"},
    {"add-column-required", "ADD COLUMN ... NOT NULL without a default fails on a non-empty table"},
    {"alter-column-type", "ALTER COLUMN TYPE rewrites the table under ACCESS EXCLUSIVE"},
    {"set-not-null",
     "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated "
     "CHECK (col IS NOT NULL) exists"},
    {"foreign-key-without-not-valid",
     "ADD FOREIGN KEY validates under SHARE ROW EXCLUSIVE on both tables"},
    {"check-without-not-valid", "ADD CHECK validates under ACCESS EXCLUSIVE"},
    {"unique-without-using-index",
     "ADD UNIQUE / PRIMARY KEY builds its index under ACCESS EXCLUSIVE"},
    {"rename-column", "renaming a column breaks the running application"},
    {"rename-table", "renaming a table breaks the running application"},
    {"drop-column", "dropping a column the running application still uses breaks it"},
    {"drop-table", "dropping a table the running application still uses breaks it"},
    {"vacuum-full", "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE"},
    {"cluster", "CLUSTER rewrites the table under ACCESS EXCLUSIVE"},
    {"lock-table", "LOCK TABLE holds a lock for the rest of the transaction"},
    {"concurrently-in-transaction",
     "a statement that cannot run in a transaction block, in a transactional "
     "migration"},
    {"several-locks-in-transaction",
     "several tables locked against writes in one transaction: each lock is "
     "held until commit"},
    {"concurrent-index-unnamed",
     "an unnamed CREATE INDEX CONCURRENTLY cannot be found again after an "
     "interruption"},
    {"transaction-control", "BEGIN/COMMIT/ROLLBACK in a migration: the runner owns transactions"},
};

// Functions whose value differs per row, so PostgreSQL must rewrite the table
// to store them.
const std::set<std::string_view> kVolatileFunctions = {
    "random",           "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc",
    "uuid_generate_v4", "clock_timestamp", "timeofday",        "nextval",
    "txid_current",     "setseed",         "random_normal",
};
// Functions known not to be volatile, evaluated once by ADD COLUMN's fast
// default.
const std::set<std::string_view> kStableFunctions = {
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_setting",
    "lower",
    "upper",
    "concat",
    "length",
    "abs",
    "round",
    "date_trunc",
    "make_date",
    "make_interval",
    "to_timestamp",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "array_fill",
    "int4",
    "int8",
    "text",
    "numeric",
    "btrim",
    "replace",
};
const std::set<std::string_view> kSerialTypes = {"serial",  "bigserial", "smallserial",
                                                 "serial2", "serial4",   "serial8"};

std::string LastName(const Node& names) {
  if (names.items().empty()) return "";
  return std::string(names.items().back()["String"]["sval"].Str());
}

// A NOT NULL check on one column: CHECK (col IS NOT NULL).
std::string NotNullCheckColumn(const Node& constraint) {
  const Node& test = constraint["raw_expr"]["NullTest"];
  if (test.IsNull() || test["nulltesttype"].Str() != "IS_NOT_NULL") return "";
  const Node& fields = test["arg"]["ColumnRef"]["fields"];
  if (fields.items().size() != 1) return "";
  return std::string(fields.items()[0]["String"]["sval"].Str());
}

class Linter {
 public:
  Linter(const Script& script, const std::vector<const Script*>& earlier)
      : script_(script), earlier_(earlier) {
    transactional_ = !script.directives.no_transaction && !script.directives.backfill;
  }

  std::vector<Finding> Run() {
    for (const Script* s : earlier_) CollectValidatedChecks(*s, s->statements.size());
    for (size_t i = 0; i < script_.statements.size(); ++i) {
      const sql::Statement& st = script_.statements[i];
      StatementFacts facts = AnalyzeStatement(st);
      CheckStatement(st, facts, i);
      if (transactional_) CheckLockAccumulation(st, facts);
      for (const std::string& rel : facts.created_relations) created_.push_back(rel);
      // A table created here keeps being new under the name it is renamed to.
      if (st.type() == "RenameStmt" && st.body()["renameType"].Str() == "OBJECT_TABLE" &&
          IsNew(RangeVarName(st.body()["relation"]))) {
        std::string_view schema = st.body()["relation"]["schemaname"].Str();
        std::string_view name = st.body()["newname"].Str();
        created_.push_back(schema.empty() ? std::string(name) : Cat(schema, ".", name));
      }
    }
    std::stable_sort(findings_.begin(), findings_.end(),
                     [](const Finding& a, const Finding& b) { return a.line < b.line; });
    return std::move(findings_);
  }

 private:
  void Add(const sql::Statement& st, std::string_view rule, std::string message) {
    findings_.push_back({std::string(rule), st.line, std::move(message)});
  }

  bool IsNew(std::string_view relation) const {
    return std::any_of(created_.begin(), created_.end(),
                       [&](const std::string& c) { return SameRelation(c, relation); });
  }

  // Records CHECK (col IS NOT NULL) constraints of `script` that are valid
  // after its first `limit` statements: added without NOT VALID, or added NOT
  // VALID and then validated.
  void CollectValidatedChecks(const Script& script, size_t limit) {
    struct Pending {
      std::string table, name, column;
    };
    std::vector<Pending> not_valid;
    for (size_t i = 0; i < limit && i < script.statements.size(); ++i) {
      const sql::Statement& st = script.statements[i];
      if (st.type() != "AlterTableStmt") continue;
      std::string table = RangeVarName(st.body()["relation"]);
      for (const Node& item : st.body()["cmds"].items()) {
        const Node& cmd = item["AlterTableCmd"];
        std::string_view subtype = cmd["subtype"].Str();
        const Node& c = cmd["def"]["Constraint"];
        if (subtype == "AT_AddConstraint" && c["contype"].Str() == "CONSTR_CHECK") {
          std::string column = NotNullCheckColumn(c);
          if (column.empty()) continue;
          if (c["skip_validation"].Bool()) {
            not_valid.push_back({table, std::string(c["conname"].Str()), column});
          } else {
            validated_.push_back({table, column});
          }
        } else if (subtype == "AT_ValidateConstraint") {
          for (const Pending& p : not_valid) {
            if (SameRelation(p.table, table) && p.name == cmd["name"].Str()) {
              validated_.push_back({p.table, p.column});
            }
          }
        }
      }
    }
  }

  bool HasValidatedCheck(std::string_view table, std::string_view column) const {
    return std::any_of(validated_.begin(), validated_.end(), [&](const auto& v) {
      return SameRelation(v.first, table) && v.second == column;
    });
  }

  void CheckAddColumn(const sql::Statement& st, std::string_view table, const Node& column) {
    std::string type = LastName(column["typeName"]["names"]);
    std::string name(column["colname"].Str());
    bool has_default = false, not_null = false;
    std::string volatile_why;
    if (kSerialTypes.contains(type)) volatile_why = Cat(type, " fills every row from a sequence");
    for (const Node& item : column["constraints"].items()) {
      const Node& c = item["Constraint"];
      std::string_view contype = c["contype"].Str();
      if (contype == "CONSTR_NOTNULL") not_null = true;
      if (contype == "CONSTR_IDENTITY") {
        volatile_why = "an identity column fills every row from a sequence";
      }
      if (contype == "CONSTR_GENERATED")
        volatile_why =
            "a stored generated column is computed "
            "for every row";
      if (contype == "CONSTR_FOREIGN" && !IsNew(table)) {
        Add(st, "foreign-key-without-not-valid",
            Cat("ADD COLUMN ", name, " ... REFERENCES locks ", table, " and ",
                RangeVarName(c["pktable"]),
                " against writes and validates; add the column first, then ADD "
                "CONSTRAINT ... "
                "FOREIGN KEY ... NOT VALID and VALIDATE CONSTRAINT in a later "
                "step"));
      }
      if ((contype == "CONSTR_UNIQUE" || contype == "CONSTR_PRIMARY") && !IsNew(table)) {
        Add(st, "unique-without-using-index",
            Cat("ADD COLUMN ", name, " ... ", contype == "CONSTR_UNIQUE" ? "UNIQUE" : "PRIMARY KEY",
                " builds its index under ACCESS EXCLUSIVE; add the column, "
                "CREATE UNIQUE INDEX "
                "CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX"));
      }
      if (contype != "CONSTR_DEFAULT") continue;
      has_default = true;
      c["raw_expr"].ForEachNode([&](std::string_view tag, const Node& node) {
        if (tag != "FuncCall" || !volatile_why.empty()) return;
        std::string fn = LastName(node["funcname"]);
        if (kVolatileFunctions.contains(fn)) {
          volatile_why = Cat("the default ", fn, "() is volatile");
        } else if (!kStableFunctions.contains(fn)) {
          volatile_why = Cat("the default calls ", fn, "(), which may be volatile");
        }
      });
    }
    if (IsNew(table)) return;
    if (!volatile_why.empty()) {
      Add(st, "add-column-volatile-default",
          Cat("ADD COLUMN ", name, " on ", table, ": ", volatile_why,
              ", so PostgreSQL rewrites the table under ACCESS EXCLUSIVE; add "
              "the column without "
              "a default (or with a constant one), backfill it in batches "
              "(-- shardyard: backfill ...), then SET DEFAULT"));
    }
    if (not_null && !has_default) {
      Add(st, "add-column-required",
          Cat("ADD COLUMN ", name,
              " NOT NULL without a default fails on a table with rows; add "
              "it nullable (or with a constant default), backfill, then add "
              "NOT NULL through a "
              "validated CHECK (",
              name, " IS NOT NULL)"));
    }
  }

  void CheckAlterTable(const sql::Statement& st) {
    const Node& body = st.body();
    std::string table = RangeVarName(body["relation"]);
    for (const Node& item : body["cmds"].items()) {
      const Node& cmd = item["AlterTableCmd"];
      std::string_view subtype = cmd["subtype"].Str();
      std::string column(cmd["name"].Str());
      if (subtype == "AT_AddColumn") {
        CheckAddColumn(st, table, cmd["def"]["ColumnDef"]);
        continue;
      }
      if (IsNew(table)) continue;
      if (subtype == "AT_AlterColumnType") {
        Add(st, "alter-column-type",
            Cat("ALTER COLUMN ", column, " TYPE rewrites ", table,
                " and its indexes under ACCESS EXCLUSIVE unless the change is "
                "binary-coercible "
                "(e.g. varchar(n) to text); use expand/contract: add a new "
                "column, keep both in "
                "sync, backfill, switch readers, drop the old column in a "
                "later release"));
      } else if (subtype == "AT_SetNotNull") {
        if (!HasValidatedCheck(table, column)) {
          Add(st, "set-not-null",
              Cat("SET NOT NULL on ", table, ".", column,
                  " scans the table under ACCESS EXCLUSIVE; first ADD "
                  "CONSTRAINT ... CHECK (",
                  column,
                  " IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT (SHARE "
                  "UPDATE "
                  "EXCLUSIVE), then SET NOT NULL skips the scan"));
        }
      } else if (subtype == "AT_DropColumn") {
        Add(st, "drop-column",
            Cat("DROP COLUMN ", column, " on ", table,
                ": ship a release that no longer reads or writes it first, "
                "then drop it and "
                "accept with --allow drop-column (or -- shardyard: allow "
                "drop-column)"));
      } else if (subtype == "AT_AddConstraint") {
        const Node& c = cmd["def"]["Constraint"];
        std::string_view contype = c["contype"].Str();
        bool not_valid = c["skip_validation"].Bool();
        if (contype == "CONSTR_FOREIGN" && !not_valid) {
          Add(st, "foreign-key-without-not-valid",
              Cat("ADD FOREIGN KEY on ", table, " blocks writes to ", table, " and ",
                  RangeVarName(c["pktable"]),
                  " while every row is checked; add it NOT VALID, then "
                  "VALIDATE CONSTRAINT "
                  "in a separate step (SHARE UPDATE EXCLUSIVE)"));
        } else if (contype == "CONSTR_CHECK" && !not_valid) {
          Add(st, "check-without-not-valid",
              Cat("ADD CHECK on ", table,
                  " checks every row under ACCESS EXCLUSIVE; add it NOT VALID, "
                  "then VALIDATE "
                  "CONSTRAINT in a separate step (SHARE UPDATE EXCLUSIVE)"));
        } else if ((contype == "CONSTR_UNIQUE" || contype == "CONSTR_PRIMARY") &&
                   c["indexname"].Str().empty()) {
          Add(st, "unique-without-using-index",
              Cat("ADD ", contype == "CONSTR_UNIQUE" ? "UNIQUE" : "PRIMARY KEY", " on ", table,
                  " builds its index under ACCESS EXCLUSIVE; CREATE UNIQUE "
                  "INDEX CONCURRENTLY "
                  "first (no-transaction), then ADD CONSTRAINT name ",
                  contype == "CONSTR_UNIQUE" ? "UNIQUE" : "PRIMARY KEY", " USING INDEX name"));
        }
      }
    }
  }

  void CheckStatement(const sql::Statement& st, const StatementFacts& facts, size_t index) {
    std::string_view type = st.type();
    const Node& body = st.body();
    if (type == "AlterTableStmt") {
      // SET NOT NULL may rely on a check validated earlier in this very script.
      validated_.clear();
      for (const Script* s : earlier_) CollectValidatedChecks(*s, s->statements.size());
      CollectValidatedChecks(script_, index);
      CheckAlterTable(st);
    } else if (type == "IndexStmt") {
      std::string table = RangeVarName(body["relation"]);
      if (!body["concurrent"].Bool() && !IsNew(table)) {
        Add(st, "create-index-non-concurrently",
            Cat("CREATE INDEX on ", table,
                " blocks writes (SHARE lock) for the whole build; use CREATE "
                "INDEX CONCURRENTLY "
                "in a -- shardyard: no-transaction migration"));
      }
      if (body["concurrent"].Bool() && !transactional_ && body["idxname"].Str().empty()) {
        Add(st, "concurrent-index-unnamed",
            Cat("name the index (CREATE INDEX CONCURRENTLY name ON ", table,
                " ...) so a re-run after an interruption finds it, and "
                "rebuilds it if INVALID"));
      }
    } else if (type == "DropStmt") {
      std::string_view remove = body["removeType"].Str();
      if (remove == "OBJECT_INDEX" && !body["concurrent"].Bool()) {
        Add(st, "drop-index-non-concurrently",
            "DROP INDEX takes ACCESS EXCLUSIVE on its table; use DROP INDEX "
            "CONCURRENTLY in a "
            "-- shardyard: no-transaction migration");
      } else if (remove == "OBJECT_TABLE") {
        for (const RelationLock& l : facts.locks) {
          if (IsNew(l.relation)) continue;
          Add(st, "drop-table",
              Cat("DROP TABLE ", l.relation,
                  ": ship a release that no longer uses it first, then drop it "
                  "and accept with "
                  "--allow drop-table (or -- shardyard: allow drop-table)"));
        }
      }
    } else if (type == "RenameStmt") {
      std::string_view rename = body["renameType"].Str();
      std::string table = RangeVarName(body["relation"]);
      if (rename == "OBJECT_COLUMN" && !IsNew(table)) {
        Add(st, "rename-column",
            Cat("renaming ", table, ".", body["subname"].Str(),
                " breaks the running application; add the new column, write "
                "both, backfill, "
                "switch readers, and drop the old column in a later release"));
      } else if (rename == "OBJECT_TABLE" && !IsNew(table)) {
        Add(st, "rename-table",
            Cat("renaming ", table,
                " breaks the running application; rename it and create a view "
                "with the old name "
                "in the same migration, and drop the view after a release that "
                "uses the new "
                "name"));
      }
    } else if (type == "VacuumStmt" && facts.strongest == LockMode::kAccessExclusive) {
      Add(st, "vacuum-full",
          "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE; use "
          "pg_repack or plain VACUUM");
    } else if (type == "ClusterStmt") {
      Add(st, "cluster",
          "CLUSTER rewrites the table under ACCESS EXCLUSIVE; use pg_repack, "
          "or create a new "
          "index concurrently");
    } else if (type == "LockStmt") {
      Add(st, "lock-table",
          "LOCK TABLE holds its lock until the transaction ends and queues "
          "every conflicting "
          "query behind it; let each statement take the lock it needs");
    } else if (type == "ReindexStmt" && facts.execution != Execution::kReindexConcurrently) {
      Add(st, "reindex-non-concurrently",
          "REINDEX blocks writes to the table while it runs; use REINDEX ... "
          "CONCURRENTLY in a "
          "-- shardyard: no-transaction migration");
    } else if (type == "TransactionStmt") {
      Add(st, "transaction-control",
          "the runner wraps a transactional migration in one transaction and a "
          "no-transaction "
          "migration in one per statement; remove BEGIN/COMMIT/ROLLBACK");
    }
    if (transactional_ && facts.execution != Execution::kAnywhere &&
        facts.execution != Execution::kTransactionControl) {
      Add(st, "concurrently-in-transaction",
          Cat("\"", facts.summary,
              "\" cannot run inside a transaction block; add -- shardyard: "
              "no-transaction (each "
              "statement then runs, and is recorded, on its own)"));
    }
  }

  // In one transaction, every lock is held until COMMIT: a second table's lock
  // wait (or a slow statement) keeps the first table blocked.
  void CheckLockAccumulation(const sql::Statement& st, const StatementFacts& facts) {
    bool held_before = !locked_.empty();
    bool adds_table = false;
    for (const RelationLock& l : facts.locks) {
      if (!BlocksWrites(l.mode) || IsNew(l.relation)) continue;
      bool seen = std::any_of(locked_.begin(), locked_.end(),
                              [&](const std::string& r) { return SameRelation(r, l.relation); });
      if (!seen) {
        locked_.push_back(l.relation);
        adds_table = true;
      }
    }
    // One statement locking two tables (a foreign key) is one wait; a later
    // statement adding a table waits while the earlier locks are held.
    if (held_before && adds_table && !reported_accumulation_) {
      reported_accumulation_ = true;
      Add(st, "several-locks-in-transaction",
          Cat("this transaction locks ", Join(locked_, ", "),
              " against writes and holds every lock until COMMIT, so traffic "
              "on the first "
              "waits while later statements wait for theirs; put each table's "
              "change in its "
              "own migration or use -- shardyard: no-transaction"));
    }
  }

  const Script& script_;
  const std::vector<const Script*>& earlier_;
  bool transactional_ = true;
  std::vector<std::string> created_;
  std::vector<std::pair<std::string, std::string>> validated_;  // (table, column)
  std::vector<std::string> locked_;
  bool reported_accumulation_ = false;
  std::vector<Finding> findings_;
};

}  // namespace

const std::vector<LintRule>& LintRules() { return kRules; }

bool IsLintRule(std::string_view name) {
  return std::any_of(kRules.begin(), kRules.end(),
                     [&](const LintRule& r) { return r.name == name; });
}

std::vector<Finding> Lint(const Script& script, const std::vector<const Script*>& earlier) {
  return Linter(script, earlier).Run();
}

std::vector<Finding> Unallowed(const std::vector<Finding>& findings, const Script& script,
                               const std::vector<std::string>& allowed) {
  std::vector<Finding> out;
  for (const Finding& f : findings) {
    auto match = [&](const std::string& r) { return r == f.rule || r == "all"; };
    if (std::any_of(allowed.begin(), allowed.end(), match)) continue;
    if (std::any_of(script.directives.allow.begin(), script.directives.allow.end(), match)) {
      continue;
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace shardyard::migrate
