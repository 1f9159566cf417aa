// Maps parse trees to PostgreSQL's documented lock levels (sql-altertable.html,
// explicit-locking.html).
#include "migrate/statement_facts.h"

#include <algorithm>

#include "common/strings.h"

namespace shardyard::migrate {

std::string_view LockModeName(LockMode mode) {
  switch (mode) {
    case LockMode::kNone:
      return "none";
    case LockMode::kAccessShare:
      return "ACCESS SHARE";
    case LockMode::kRowShare:
      return "ROW SHARE";
    case LockMode::kRowExclusive:
      return "ROW EXCLUSIVE";
    case LockMode::kShareUpdateExclusive:
      return "SHARE UPDATE EXCLUSIVE";
    case LockMode::kShare:
      return "SHARE";
    case LockMode::kShareRowExclusive:
      return "SHARE ROW EXCLUSIVE";
    case LockMode::kExclusive:
      return "EXCLUSIVE";
    case LockMode::kAccessExclusive:
      return "ACCESS EXCLUSIVE";
  }
  return "?";
}

std::string RangeVarName(const sql::Node& range_var) {
  std::string_view schema = range_var["schemaname"].Str();
  std::string_view rel = range_var["relname"].Str();
  return schema.empty() ? std::string(rel) : Cat(schema, ".", rel);
}

bool SameRelation(std::string_view a, std::string_view b) {
  auto unqualified = [](std::string_view s) {
    size_t dot = s.rfind('.');
    return dot == std::string_view::npos ? s : s.substr(dot + 1);
  };
  bool a_qualified = a.find('.') != std::string_view::npos;
  bool b_qualified = b.find('.') != std::string_view::npos;
  if (a_qualified && b_qualified) return a == b;
  return unqualified(a) == unqualified(b);
}

namespace {

using sql::Node;

// A dotted name from a List node's body ({"items": [{"String": ...}, ...]}),
// e.g. DropStmt objects.
std::string NameFromList(const Node& list) {
  std::vector<std::string> parts;
  for (const Node& item : list["items"].items()) {
    std::string_view s = item["String"]["sval"].Str();
    if (!s.empty()) parts.emplace_back(s);
  }
  return Join(parts, ".");
}

std::string OneLine(std::string_view text, size_t max_len = 72) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  if (out.size() > max_len) out = out.substr(0, max_len - 3) + "...";
  return out;
}

bool HasDefElem(const Node& list, std::string_view name) {
  for (const Node& item : list.items()) {
    if (item["DefElem"]["defname"].Str() == name) return true;
  }
  return false;
}

class Analyzer {
 public:
  explicit Analyzer(StatementFacts* facts) : f_(facts) {}

  void Lock(std::string relation, LockMode mode) {
    if (relation.empty()) return;
    for (RelationLock& l : f_->locks) {
      if (l.relation == relation) {
        l.mode = std::max(l.mode, mode);
        return;
      }
    }
    f_->locks.push_back({std::move(relation), mode});
  }

  // The lock one ALTER TABLE subcommand takes on its table
  // (sql-altertable.html).
  static LockMode AlterTableCmdLock(const Node& cmd) {
    std::string_view subtype = cmd["subtype"].Str();
    if (subtype == "AT_SetStatistics" || subtype == "AT_SetOptions" ||
        subtype == "AT_ResetOptions" || subtype == "AT_ClusterOn" || subtype == "AT_DropCluster" ||
        subtype == "AT_SetRelOptions" || subtype == "AT_ResetRelOptions" ||
        subtype == "AT_ValidateConstraint" || subtype == "AT_AttachPartition") {
      return LockMode::kShareUpdateExclusive;
    }
    if (subtype == "AT_DetachPartition" && cmd["def"]["PartitionCmd"]["concurrent"].Bool()) {
      return LockMode::kShareUpdateExclusive;
    }
    if (subtype.starts_with("AT_EnableTrig") || subtype.starts_with("AT_DisableTrig") ||
        subtype == "AT_EnableAlwaysTrig" || subtype == "AT_EnableReplicaTrig") {
      return LockMode::kShareRowExclusive;
    }
    if (subtype == "AT_AddConstraint" &&
        cmd["def"]["Constraint"]["contype"].Str() == "CONSTR_FOREIGN") {
      return LockMode::kShareRowExclusive;
    }
    return LockMode::kAccessExclusive;
  }

  void AlterTable(const Node& body) {
    std::string table = RangeVarName(body["relation"]);
    if (body["objtype"].Str() == "OBJECT_INDEX") {
      Lock(table, LockMode::kShareUpdateExclusive);
      return;
    }
    for (const Node& item : body["cmds"].items()) {
      const Node& cmd = item["AlterTableCmd"];
      Lock(table, AlterTableCmdLock(cmd));
      const Node& constraint = cmd["def"]["Constraint"];
      if (cmd["subtype"].Str() == "AT_AddConstraint" &&
          constraint["contype"].Str() == "CONSTR_FOREIGN") {
        Lock(RangeVarName(constraint["pktable"]), LockMode::kShareRowExclusive);
      }
      if (cmd["subtype"].Str() == "AT_DetachPartition") {
        if (cmd["def"]["PartitionCmd"]["concurrent"].Bool()) {
          f_->execution = Execution::kOutsideTransaction;
        }
        Lock(RangeVarName(cmd["def"]["PartitionCmd"]["name"]), LockMode::kAccessExclusive);
      }
      // A new column's REFERENCES also locks the referenced table.
      for (const Node& c : cmd["def"]["ColumnDef"]["constraints"].items()) {
        if (c["Constraint"]["contype"].Str() == "CONSTR_FOREIGN") {
          Lock(RangeVarName(c["Constraint"]["pktable"]), LockMode::kShareRowExclusive);
        }
      }
    }
  }

  void CreateTable(const Node& body) {
    f_->created_relations.push_back(RangeVarName(body["relation"]));
    body.ForEachNode([&](std::string_view tag, const Node& node) {
      if (tag == "Constraint" && node["contype"].Str() == "CONSTR_FOREIGN") {
        Lock(RangeVarName(node["pktable"]), LockMode::kShareRowExclusive);
      }
    });
    for (const Node& parent : body["inhRelations"].items()) {
      Lock(RangeVarName(parent["RangeVar"]),
           body.Has("partbound") ? LockMode::kAccessExclusive : LockMode::kShareUpdateExclusive);
    }
  }

  void Index(const Node& body) {
    std::string table = RangeVarName(body["relation"]);
    std::string_view schema = body["relation"]["schemaname"].Str();
    std::string name(body["idxname"].Str());
    if (!name.empty()) {
      f_->created_relations.push_back(schema.empty() ? name : Cat(schema, ".", name));
    }
    if (body["concurrent"].Bool()) {
      Lock(table, LockMode::kShareUpdateExclusive);
      f_->execution = Execution::kCreateIndexConcurrently;
      f_->index_name = name.empty() || schema.empty() ? name : Cat(schema, ".", name);
      f_->index_table = table;
    } else {
      Lock(table, LockMode::kShare);
    }
  }

  void Drop(const Node& body) {
    std::string_view type = body["removeType"].Str();
    bool concurrent = body["concurrent"].Bool();
    LockMode mode = LockMode::kNone;
    if (type == "OBJECT_TABLE" || type == "OBJECT_VIEW" || type == "OBJECT_MATVIEW" ||
        type == "OBJECT_SEQUENCE" || type == "OBJECT_FOREIGN_TABLE") {
      mode = LockMode::kAccessExclusive;
    } else if (type == "OBJECT_INDEX") {
      // Also the index's table, whose name the statement does not say.
      mode = concurrent ? LockMode::kShareUpdateExclusive : LockMode::kAccessExclusive;
    } else if (type == "OBJECT_TRIGGER" || type == "OBJECT_RULE" || type == "OBJECT_POLICY") {
      mode = LockMode::kAccessExclusive;
    }
    for (const Node& object : body["objects"].items()) {
      std::string name = NameFromList(object["List"]);
      if (mode != LockMode::kNone) {
        // For triggers, rules and policies the list is table..., name: the
        // table is locked.
        if (type == "OBJECT_TRIGGER" || type == "OBJECT_RULE" || type == "OBJECT_POLICY") {
          size_t dot = name.rfind('.');
          name = dot == std::string::npos ? name : name.substr(0, dot);
        }
        Lock(name, mode);
      }
      if (type == "OBJECT_INDEX" && concurrent) f_->index_name = name;
    }
    if (type == "OBJECT_INDEX" && concurrent) f_->execution = Execution::kDropIndexConcurrently;
  }

  void Rename(const Node& body) {
    std::string_view type = body["renameType"].Str();
    LockMode mode =
        type == "OBJECT_INDEX" ? LockMode::kShareUpdateExclusive : LockMode::kAccessExclusive;
    if (body.Has("relation")) Lock(RangeVarName(body["relation"]), mode);
  }

  void Vacuum(const Node& body) {
    bool full = HasDefElem(body["options"], "full");
    LockMode mode = full ? LockMode::kAccessExclusive : LockMode::kShareUpdateExclusive;
    for (const Node& rel : body["rels"].items()) {
      Lock(RangeVarName(rel["VacuumRelation"]["relation"]), mode);
    }
    if (body["is_vacuumcmd"].Bool()) f_->execution = Execution::kOutsideTransaction;
  }

  void Reindex(const Node& body) {
    bool concurrent = HasDefElem(body["params"], "concurrently");
    std::string_view kind = body["kind"].Str();
    std::string rel = RangeVarName(body["relation"]);
    if (kind == "REINDEX_OBJECT_INDEX" || kind == "REINDEX_OBJECT_TABLE") {
      Lock(rel, concurrent ? LockMode::kShareUpdateExclusive
                           : (kind == "REINDEX_OBJECT_INDEX" ? LockMode::kAccessExclusive
                                                             : LockMode::kShare));
    } else {
      f_->locks_unknown = true;  // every table of a schema or database
      Lock(Cat("(", ToLowerAscii(kind.substr(kind.rfind('_') + 1)), " ", body["name"].Str(), ")"),
           concurrent ? LockMode::kShareUpdateExclusive : LockMode::kShare);
      f_->execution = Execution::kOutsideTransaction;
    }
    if (concurrent) {
      f_->execution = Execution::kReindexConcurrently;
      if (kind == "REINDEX_OBJECT_INDEX") f_->index_name = rel;
      if (kind == "REINDEX_OBJECT_TABLE") f_->index_table = rel;
    }
  }

  void Analyze(const sql::Statement& statement) {
    const Node& body = statement.body();
    std::string_view type = statement.type();
    if (type == "AlterTableStmt") {
      AlterTable(body);
    } else if (type == "CreateStmt") {
      CreateTable(body);
    } else if (type == "CreateTableAsStmt") {
      f_->created_relations.push_back(RangeVarName(body["into"]["IntoClause"]["rel"]));
    } else if (type == "ViewStmt") {
      std::string view = RangeVarName(body["view"]);
      if (body["replace"].Bool()) Lock(view, LockMode::kAccessExclusive);
      f_->created_relations.push_back(view);
    } else if (type == "IndexStmt") {
      Index(body);
    } else if (type == "DropStmt") {
      Drop(body);
    } else if (type == "RenameStmt") {
      Rename(body);
    } else if (type == "TruncateStmt") {
      for (const Node& rel : body["relations"].items()) {
        Lock(RangeVarName(rel["RangeVar"]), LockMode::kAccessExclusive);
      }
    } else if (type == "VacuumStmt") {
      Vacuum(body);
    } else if (type == "ClusterStmt") {
      Lock(RangeVarName(body["relation"]), LockMode::kAccessExclusive);
    } else if (type == "LockStmt") {
      int64_t mode = body["mode"].Int();
      LockMode m =
          mode >= 1 && mode <= 8 ? static_cast<LockMode>(mode) : LockMode::kAccessExclusive;
      for (const Node& rel : body["relations"].items()) Lock(RangeVarName(rel["RangeVar"]), m);
    } else if (type == "ReindexStmt") {
      Reindex(body);
    } else if (type == "CreateTrigStmt") {
      Lock(RangeVarName(body["relation"]), LockMode::kShareRowExclusive);
    } else if (type == "RuleStmt" || type == "CreatePolicyStmt" || type == "AlterPolicyStmt") {
      Lock(RangeVarName(body[type == "RuleStmt" ? "relation" : "table"]),
           LockMode::kAccessExclusive);
    } else if (type == "CommentStmt" && body["objtype"].Str() == "OBJECT_TABLE") {
      Lock(NameFromList(body["object"]["List"]), LockMode::kShareUpdateExclusive);
    } else if (type == "InsertStmt" || type == "UpdateStmt" || type == "DeleteStmt" ||
               type == "MergeStmt") {
      Lock(RangeVarName(body["relation"]), LockMode::kRowExclusive);
    } else if (type == "TransactionStmt") {
      f_->execution = Execution::kTransactionControl;
    } else if (type == "CreatedbStmt" || type == "DropdbStmt" || type == "AlterSystemStmt" ||
               type == "CreateTableSpaceStmt" || type == "DropTableSpaceStmt") {
      f_->execution = Execution::kOutsideTransaction;
    } else if (type == "DoStmt") {
      f_->locks_unknown = true;
      Lock("(DO block)", LockMode::kAccessExclusive);
    }
  }

 private:
  StatementFacts* f_;
};

}  // namespace

StatementFacts AnalyzeStatement(const sql::Statement& statement) {
  StatementFacts facts;
  facts.summary = OneLine(statement.text);
  Analyzer(&facts).Analyze(statement);
  for (const RelationLock& l : facts.locks) facts.strongest = std::max(facts.strongest, l.mode);
  return facts;
}

}  // namespace shardyard::migrate
