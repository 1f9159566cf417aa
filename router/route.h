// Decides which backend node serves a request: a pure function from RoutingContext to Route.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace shardyard::router {

enum class NodeRole { kPrimary, kReplica };

// Identifies one backend server of a database: shard index, role, replica index.
struct NodeId {
  int shard = 0;
  NodeRole role = NodeRole::kPrimary;
  int replica = 0;  // meaningful only for kReplica
  bool operator==(const NodeId&) const = default;
  std::string ToString() const;  // "shard 0 primary", "shard 1 replica 0"
};

// Everything the router may look at. Later issues add the statement, bind parameters, hints,
// transaction state and replica health; the router stays a pure function of this struct.
struct RoutingContext {
  const config::Database* database = nullptr;
};

struct Route {
  NodeId node;
  std::string reason;  // why this node was chosen, for logs and tests
};

// Until read/write splitting and sharding arrive, every request goes to the first shard's
// primary; a database with more shards or replicas still loads and is served from there
// (config::ConfigWarnings tells the operator so, and changes with this rule).
absl::StatusOr<Route> ComputeRoute(const RoutingContext& context);

}  // namespace shardyard::router
