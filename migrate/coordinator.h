// The seam between the runner and the Shardyard proxy, for steps that need
// traffic coordination.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "migrate/plan.h"

namespace shardyard::migrate {

// Which step of which migration is about to run (or just ran) on which shard.
struct StepContext {
  int shard = 0;
  int64_t version = 0;
  std::string_view migration;  // "0007_add_orders"
  int step_index = 0;          // 0-based
  int step_count = 0;
  const Step* step = nullptr;  // its kind, statements and lock levels
  bool rollback = false;
};

// Contract: the runner calls BeforeStep before every attempt of a step and
// AfterStep after it, with the step's lock levels known (Step::lock,
// Step::locks). A proxy-backed implementation can, for example, hold new
// queries on the tables of an ACCESS EXCLUSIVE step for the length of the
// attempt, and refresh pooled server connections after DDL. An error from
// BeforeStep fails the attempt as a lock timeout would (it is retried until the
// deadline).
class TrafficCoordinator {
 public:
  virtual ~TrafficCoordinator() = default;
  virtual absl::Status BeforeStep(const StepContext& context) = 0;
  virtual void AfterStep(const StepContext& context, const absl::Status& result) = 0;
};

// Used until the proxy offers coordination: the shards are reached directly.
class NoTrafficCoordination final : public TrafficCoordinator {
 public:
  absl::Status BeforeStep(const StepContext&) override { return absl::OkStatus(); }
  void AfterStep(const StepContext&, const absl::Status&) override {}
};

}  // namespace shardyard::migrate
