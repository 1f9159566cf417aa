// Implements ComputeRoute; today a single rule, kept pure so later rules stay unit-testable.
#include "router/route.h"

#include "common/pg_error.h"
#include "common/strings.h"

namespace shardyard::router {

std::string NodeId::ToString() const {
  if (role == NodeRole::kPrimary) return Cat("shard ", shard, " primary");
  return Cat("shard ", shard, " replica ", replica);
}

absl::StatusOr<Route> ComputeRoute(const RoutingContext& context) {
  if (context.database == nullptr || context.database->shards.empty()) {
    return PgErrorStatus(absl::StatusCode::kInternal, sqlstate::kInternalError,
                         "no database to route to");
  }
  return Route{NodeId{0, NodeRole::kPrimary, 0},
               "single-node routing: every request goes to shard 0's primary"};
}

}  // namespace shardyard::router
