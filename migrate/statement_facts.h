// What one SQL statement does to existing relations: the table locks it takes
// and how it must run.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sql/parser.h"

namespace shardyard::migrate {

// PostgreSQL's table-level lock modes, weakest first (explicit-locking.html).
enum class LockMode : uint8_t {
  kNone,
  kAccessShare,
  kRowShare,
  kRowExclusive,
  kShareUpdateExclusive,
  kShare,
  kShareRowExclusive,
  kExclusive,
  kAccessExclusive,
};
// "ACCESS EXCLUSIVE", ..., "none".
std::string_view LockModeName(LockMode mode);
// Whether holding or waiting for `mode` stops plain SELECTs (ACCESS SHARE) on
// the table.
inline bool BlocksReads(LockMode mode) { return mode == LockMode::kAccessExclusive; }
// Whether holding or waiting for `mode` stops INSERT/UPDATE/DELETE (ROW
// EXCLUSIVE).
inline bool BlocksWrites(LockMode mode) { return mode >= LockMode::kShare; }

struct RelationLock {
  std::string relation;  // as written: "orders" or "sales.orders"
  LockMode mode = LockMode::kNone;
  bool operator==(const RelationLock&) const = default;
};

// The special ways a statement must be executed.
enum class Execution : uint8_t {
  kAnywhere,                 // inside or outside a transaction block
  kOutsideTransaction,       // VACUUM, CREATE DATABASE, ...
  kCreateIndexConcurrently,  // outside a transaction; a failure leaves an
                             // INVALID index
  kDropIndexConcurrently,    // outside a transaction; a failure leaves the index
                             // INVALID
  kReindexConcurrently,      // outside a transaction; a failure leaves an INVALID
                             // *_ccnew index
  kTransactionControl,       // BEGIN, COMMIT, ...: the runner owns transactions
};

struct StatementFacts {
  std::string summary;              // the statement on one line, shortened, for plans and logs
  std::vector<RelationLock> locks;  // relations it locks that may already exist
  LockMode strongest = LockMode::kNone;
  bool locks_unknown = false;  // e.g. DO blocks: `strongest` is then a conservative guess
  Execution execution = Execution::kAnywhere;
  std::vector<std::string> created_relations;  // tables, views and indexes it creates
  // For CREATE/DROP/REINDEX INDEX CONCURRENTLY: the index ("" if unnamed) and,
  // for CREATE, its table.
  std::string index_name;
  std::string index_table;
};

StatementFacts AnalyzeStatement(const sql::Statement& statement);

// The qualified name of a RangeVar body: "schema.rel" or "rel".
std::string RangeVarName(const sql::Node& range_var);
// Whether two relation names written in SQL may denote the same relation (a
// missing schema matches any schema).
bool SameRelation(std::string_view a, std::string_view b);

}  // namespace shardyard::migrate
