// A shard's schema as sorted, comparable lines, for `verify` (tables, columns,
// indexes, constraints).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migrate/pg_session.h"

namespace shardyard::migrate {

// One line per object, e.g. "column public.orders.total: bigint NOT NULL
// DEFAULT 0", sorted. System schemas and Shardyard's own state tables are left
// out.
absl::StatusOr<std::vector<std::string>> SnapshotSchema(PgSession& session);

struct SchemaDiff {
  std::vector<std::string> missing;  // in the reference, not here
  std::vector<std::string> extra;    // here, not in the reference
  bool empty() const { return missing.empty() && extra.empty(); }
};
SchemaDiff DiffSchemas(const std::vector<std::string>& reference,
                       const std::vector<std::string>& other);

}  // namespace shardyard::migrate
