// Runs migration steps on one shard: bounded lock waits with retry, concurrent
// index care, backfill.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "migrate/coordinator.h"
#include "migrate/migration.h"
#include "migrate/pg_session.h"
#include "migrate/plan.h"
#include "migrate/progress.h"
#include "migrate/state.h"

namespace shardyard::migrate {

struct RunSettings {
  PlanSettings plan;
  Duration lock_retry_deadline = std::chrono::minutes(10);
  Duration max_replica_lag = std::chrono::seconds(5);
  Duration backoff_initial = std::chrono::milliseconds(100);
  Duration backoff_max = std::chrono::seconds(5);
  int index_build_attempts = 3;
  std::string applied_by;
};

// One shard as the runner reaches it.
struct ShardTarget {
  int index = 0;
  std::string endpoint;  // "host:port", for output
  std::string conninfo;
  std::vector<std::string> replica_endpoints;
  std::vector<std::string> replica_conninfos;
};

// Contract: one thread drives a ShardRunner. Every method returns OK, Cancelled
// (stopped between steps by Ctrl-C or a failure elsewhere; resumable), Aborted
// (gave up on lock contention after the retry deadline; resumable) or another
// error (the step failed; recorded as failed).
class ShardRunner {
 public:
  ShardRunner(ShardTarget target, const RunSettings& settings, Reporter& reporter,
              const StopSignal& stop, TrafficCoordinator& coordinator);

  absl::Status Connect();
  PgSession& session() { return *session_; }

  // Runs the steps of `migration` not yet done; `existing` is its state row, if
  // any.
  absl::Status Apply(const Migration& migration, const MigrationPlan& plan,
                     const StateRow* existing);
  // Runs the down file's steps not yet done, then deletes the state row.
  absl::Status Rollback(const Migration& migration, const MigrationPlan& down,
                        const StateRow& existing);

  int retries() const { return retries_; }
  int64_t rows_backfilled() const { return rows_backfilled_; }

 private:
  using Recorder = std::function<absl::Status(PgSession&)>;
  struct Current {
    const Migration* migration = nullptr;
    const MigrationPlan* plan = nullptr;
    int step_index = 0;
    bool rollback = false;
    std::chrono::steady_clock::time_point step_start;
  };

  absl::Status RunSteps(const Migration& migration, const MigrationPlan& plan, int first_step,
                        bool rollback, const StateRow* existing);
  absl::Status RunStep(const Step& step, const Recorder& record, const StateRow* existing);
  // BEGIN; SET LOCAL lock_timeout/statement_timeout; body; COMMIT (ROLLBACK if
  // body fails).
  absl::Status InTransaction(Duration statement_timeout, const std::function<absl::Status()>& body);
  absl::Status RunInTransaction(const Step& step, Duration statement_timeout,
                                const Recorder& record);
  absl::Status RunOutsideTransaction(const Step& step, const Recorder& record);
  absl::Status RunConcurrentIndexStep(const Step& step, const Recorder& record);
  absl::Status RunBackfill(const Step& step, const Recorder& record, const StateRow* existing);

  // Calls `attempt` until it does not fail on a lock (lock_timeout, deadlock),
  // backing off with jitter, until the lock retry deadline.
  absl::Status WithLockRetry(const Step& step, const std::function<absl::Status()>& attempt);
  absl::Status Attempt(const Step& step, const std::function<absl::Status()>& body);
  absl::Status SetSessionTimeouts(Duration lock_timeout, Duration statement_timeout);
  // Waits while a replica of this shard lags more than the limit; false if
  // stopped meanwhile.
  bool WaitForReplicas();

  void Say(std::string_view text);
  std::string Where() const;

  ShardTarget target_;
  const RunSettings& settings_;
  Reporter& reporter_;
  const StopSignal& stop_;
  TrafficCoordinator& coordinator_;
  std::unique_ptr<PgSession> session_;
  std::vector<std::unique_ptr<PgSession>> replicas_;
  std::mt19937_64 rng_;
  Current current_;
  int retries_ = 0;
  int steps_completed_ = 0;  // in this run
  int64_t rows_backfilled_ = 0;
};

// Whether a failure is lock contention that a retry may get past.
bool IsLockContention(const absl::Status& status);
// "schema"."name" from a name as the parse tree spells it ("schema.name" or
// "name").
std::string QuoteQualified(std::string_view name);

}  // namespace shardyard::migrate
