// Checks the router's single rule today: everything to shard 0's primary, with a reason.
#include "router/route.h"

#include <gtest/gtest.h>

namespace shardyard::router {
namespace {

TEST(RouteTest, EverythingGoesToTheFirstShardsPrimaryForNow) {
  config::Database db;
  db.name = "app";
  db.shards.resize(3);
  db.shards[0].replicas.resize(2);
  auto route = ComputeRoute(RoutingContext{&db});
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->node, (NodeId{0, NodeRole::kPrimary, 0}));
  EXPECT_FALSE(route->reason.empty());
  EXPECT_EQ(route->node.ToString(), "shard 0 primary");
}

TEST(RouteTest, NoDatabaseIsAnError) { EXPECT_FALSE(ComputeRoute(RoutingContext{}).ok()); }

}  // namespace
}  // namespace shardyard::router
