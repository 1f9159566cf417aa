// The per-shard step engine: each step atomic or idempotent, so a re-run
// resumes without repeats.
#include "migrate/runner.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"
#include "common/pg_error.h"
#include "common/strings.h"

namespace shardyard::migrate {

namespace {

using Clock = std::chrono::steady_clock;

// lock_not_available (lock_timeout), deadlock_detected, serialization_failure.
bool IsRetryableSqlState(std::string_view code) {
  return code == "55P03" || code == "40P01" || code == "40001";
}

enum class IndexState { kAbsent, kValid, kInvalid };

// Time left at this run's rate; "?" before the first batch.
std::string BackfillEta(double seconds, int64_t done_this_run, int64_t done, int64_t total) {
  if (total <= done) return "0s";
  if (done_this_run <= 0) return "?";
  double left = seconds * static_cast<double>(total - done) / static_cast<double>(done_this_run);
  return FormatElapsed(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(left)));
}

std::string LockSummary(const Step& step) {
  if (step.locks.empty()) return "no table locks";
  std::vector<std::string> parts;
  for (const RelationLock& l : step.locks)
    parts.push_back(Cat(LockModeName(l.mode), " on ", l.relation));
  return Join(parts, ", ");
}

}  // namespace

bool IsLockContention(const absl::Status& status) {
  return IsRetryableSqlState(SqlStateOf(status));
}

std::string QuoteQualified(std::string_view name) {
  std::vector<std::string> parts;
  for (std::string_view part : Split(name, '.')) {
    std::string q = "\"";
    for (char c : part) {
      if (c == '"') q += '"';
      q += c;
    }
    q += '"';
    parts.push_back(std::move(q));
  }
  return Join(parts, ".");
}

ShardRunner::ShardRunner(ShardTarget target, const RunSettings& settings, Reporter& reporter,
                         const StopSignal& stop, TrafficCoordinator& coordinator)
    : target_(std::move(target)),
      settings_(settings),
      reporter_(reporter),
      stop_(stop),
      coordinator_(coordinator),
      rng_(std::random_device{}()) {}

absl::Status ShardRunner::Connect() {
  auto session = PgSession::Connect(target_.conninfo);
  if (!session.ok()) return session.status();
  session_ = std::move(*session);
  // If this process dies (kill -9), the server notices within a second and
  // abandons our statement, so a re-run never waits behind a backend still
  // working for nobody.
  (void)session_->Run("SET client_connection_check_interval = '1s'");
  return absl::OkStatus();
}

std::string ShardRunner::Where() const {
  std::string out = Cat("shard ", target_.index);
  if (current_.migration) {
    Append(&out, " ", current_.migration->label, current_.rollback ? " (down)" : "");
    if (current_.plan) {
      Append(&out, " step ", current_.step_index + 1, "/", current_.plan->steps.size());
    }
  }
  return out;
}

void ShardRunner::Say(std::string_view text) { reporter_.Line(Cat(Where(), ": ", text)); }

absl::Status ShardRunner::SetSessionTimeouts(Duration lock_timeout, Duration statement_timeout) {
  return session_->Run(Cat("SET lock_timeout = ", DurationLiteral(lock_timeout),
                           "; SET statement_timeout = ", DurationLiteral(statement_timeout)));
}

absl::Status ShardRunner::Attempt(const Step& step, const std::function<absl::Status()>& body) {
  StepContext context;
  context.shard = target_.index;
  context.version = current_.migration->version;
  context.migration = current_.migration->label;
  context.step_index = current_.step_index;
  context.step_count = static_cast<int>(current_.plan->steps.size());
  context.step = &step;
  context.rollback = current_.rollback;
  absl::Status gate = coordinator_.BeforeStep(context);
  absl::Status result =
      gate.ok() ? body()
                : absl::Status(absl::StatusCode::kUnavailable, Cat("proxy: ", gate.message()));
  coordinator_.AfterStep(context, result);
  if (!gate.ok()) {
    // Refused by the proxy: treated like a lock timeout, so it is retried until
    // the deadline.
    return PgErrorStatus(absl::StatusCode::kFailedPrecondition, "55P03",
                         std::string(result.message()));
  }
  return result;
}

absl::Status ShardRunner::WithLockRetry(const Step& step,
                                        const std::function<absl::Status()>& attempt) {
  Clock::time_point start = Clock::now();
  Clock::time_point deadline = start + settings_.lock_retry_deadline;
  Duration backoff = settings_.backoff_initial;
  for (int tries = 1;; ++tries) {
    absl::Status st = attempt();
    if (st.ok() || !IsLockContention(st)) return st;
    // Equal jitter: half the backoff fixed, half random, so shards and runs do
    // not align.
    Duration half = backoff / 2;
    std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(half.count(), 0));
    Duration sleep = half + Duration(jitter(rng_));
    if (Clock::now() + sleep >= deadline) {
      return absl::AbortedError(Cat("gave up on lock contention after ", tries, " tries in ",
                                    FormatElapsed(Clock::now() - start), " (--lock-retry-deadline ",
                                    FormatDuration(settings_.lock_retry_deadline),
                                    "): ", st.message()));
    }
    ++retries_;
    Say(Cat(st.message(), " (", LockModeName(step.lock), "), try ", tries, "; retrying in ",
            FormatElapsed(sleep), ", elapsed ", FormatElapsed(Clock::now() - current_.step_start),
            ", retries ", retries_));
    if (!stop_.SleepFor(sleep)) return absl::CancelledError("stopped while waiting to retry");
    backoff = std::min<Duration>(backoff * 2, settings_.backoff_max);
  }
}

absl::Status ShardRunner::InTransaction(Duration statement_timeout,
                                        const std::function<absl::Status()>& body) {
  auto fail = [&](absl::Status st) {
    if (!session_->Broken()) (void)session_->Run("ROLLBACK");
    return st;
  };
  if (auto st = session_->Run("BEGIN"); !st.ok()) return st;
  if (auto st = session_->Run(
          Cat("SET LOCAL lock_timeout = ", DurationLiteral(current_.plan->lock_timeout),
              "; SET LOCAL statement_timeout = ", DurationLiteral(statement_timeout)));
      !st.ok()) {
    return fail(st);
  }
  if (auto st = body(); !st.ok()) return fail(st);
  return session_->Run("COMMIT");
}

absl::Status ShardRunner::RunInTransaction(const Step& step, Duration statement_timeout,
                                           const Recorder& record) {
  return WithLockRetry(step, [&]() {
    return Attempt(step, [&]() {
      return InTransaction(statement_timeout, [&]() -> absl::Status {
        for (size_t i = 0; i < step.sql.size(); ++i) {
          if (auto st = session_->Run(step.sql[i]); !st.ok()) {
            // Keep the SQLSTATE (it decides about retrying) and say which
            // statement failed.
            return PgErrorStatus(st.code(), SqlStateOf(st),
                                 Cat("line ", step.lines[i], ": ", st.message()));
          }
        }
        return record(*session_);
      });
    });
  });
}

absl::Status ShardRunner::RunOutsideTransaction(const Step& step, const Recorder& record) {
  if (auto st = SetSessionTimeouts(current_.plan->lock_timeout, current_.plan->statement_timeout);
      !st.ok()) {
    return st;
  }
  absl::Status st = WithLockRetry(
      step, [&]() { return Attempt(step, [&]() { return session_->Run(step.sql[0]); }); });
  if (!session_->Broken()) (void)SetSessionTimeouts(Duration(0), Duration(0));
  if (!st.ok()) return st;
  return record(*session_);
}

absl::Status ShardRunner::RunConcurrentIndexStep(const Step& step, const Recorder& record) {
  // No lock_timeout: interrupting a concurrent build while it waits for old
  // transactions would leave it INVALID. Its locks (SHARE UPDATE EXCLUSIVE)
  // never block reads or writes anyway.
  if (auto st = SetSessionTimeouts(Duration(0), current_.plan->concurrent_statement_timeout);
      !st.ok()) {
    return st;
  }
  std::string index = step.index_name.empty() ? "" : QuoteQualified(step.index_name);
  std::string table = step.index_table.empty() ? "" : QuoteQualified(step.index_table);

  auto index_state = [&]() -> absl::StatusOr<IndexState> {
    auto rows = session_->ExecParams(
        "SELECT i.indisvalid, i.indrelid::regclass::text FROM pg_index i "
        "WHERE i.indexrelid = to_regclass($1)",
        {index});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return IndexState::kAbsent;
    if (table.empty()) table = rows->Text(0, 1);
    return rows->Text(0, 0) == "t" ? IndexState::kValid : IndexState::kInvalid;
  };
  // INVALID indexes of the table that no backend is building right now.
  auto invalid_indexes = [&]() -> std::vector<std::string> {
    std::vector<std::string> out;
    if (table.empty()) return out;
    auto rows = session_->ExecParams(
        "SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid "
        "= to_regclass($1) "
        "AND NOT i.indisvalid AND NOT EXISTS (SELECT 1 FROM "
        "pg_stat_progress_create_index p "
        "WHERE p.index_relid = i.indexrelid)",
        {table});
    if (!rows.ok()) return out;
    for (size_t r = 0; r < rows->size(); ++r) out.push_back(rows->Text(r, 0));
    return out;
  };
  auto drop_index = [&](const std::string& name) {
    Say(Cat("dropping INVALID index ", name, " left by a failed concurrent build"));
    if (auto st = session_->Run(Cat("DROP INDEX CONCURRENTLY IF EXISTS ", name)); !st.ok()) {
      Say(Cat("could not drop ", name, ": ", st.message(), " (run repair)"));
    }
  };
  // A build left by a killed run may still be running on the server; let it end
  // first.
  auto wait_for_builds = [&]() {
    while (!stop_.interrupted()) {
      auto rows = session_->ExecParams(
          "SELECT count(*) FROM pg_stat_progress_create_index WHERE "
          "index_relid = to_regclass($1)",
          {index});
      if (!rows.ok() || rows->Text(0, 0) == "0") return;
      Say(Cat("waiting for another build of ", index, " to end"));
      stop_.SleepFor(std::chrono::seconds(1));
    }
  };
  if (!index.empty()) {
    auto state = index_state();
    if (!state.ok()) return state.status();
  }

  absl::Status st;
  Duration backoff = settings_.backoff_initial;
  for (int attempt = 1; attempt <= settings_.index_build_attempts; ++attempt) {
    if (stop_.interrupted()) {
      st = absl::CancelledError("stopped before the index step");
      break;
    }
    if (!index.empty()) {
      auto state = index_state();
      if (!state.ok()) {
        st = state.status();
        break;
      }
      if (step.kind == StepKind::kCreateIndexConcurrently && *state == IndexState::kValid) {
        Say(Cat("index ", index, " already exists and is valid"));
        st = absl::OkStatus();
        break;
      }
      if (step.kind == StepKind::kDropIndexConcurrently && *state == IndexState::kAbsent) {
        Say(Cat("index ", index, " is already gone"));
        st = absl::OkStatus();
        break;
      }
      if (step.kind == StepKind::kCreateIndexConcurrently && *state == IndexState::kInvalid) {
        wait_for_builds();
        if (index_state().value_or(IndexState::kAbsent) == IndexState::kInvalid) drop_index(index);
      }
    }
    std::vector<std::string> before = invalid_indexes();
    st = Attempt(step, [&]() { return session_->Run(step.sql[0]); });
    if (st.ok() || session_->Broken()) break;
    // Never leave an INVALID index behind: it slows every write and is not used
    // by reads.
    if (step.kind != StepKind::kDropIndexConcurrently) {
      for (const std::string& name : invalid_indexes()) {
        if (std::find(before.begin(), before.end(), name) == before.end()) drop_index(name);
      }
    }
    if (!IsRetryableSqlState(SqlStateOf(st)) || attempt == settings_.index_build_attempts) break;
    ++retries_;
    Say(Cat(st.message(), "; retrying the concurrent build (attempt ", attempt + 1, " of ",
            settings_.index_build_attempts, ")"));
    stop_.SleepFor(backoff);
    backoff = std::min<Duration>(backoff * 2, settings_.backoff_max);
  }
  if (!session_->Broken()) (void)SetSessionTimeouts(Duration(0), Duration(0));
  if (!st.ok()) return st;
  return record(*session_);
}

bool ShardRunner::WaitForReplicas() {
  if (target_.replica_conninfos.empty()) return true;
  replicas_.resize(target_.replica_conninfos.size());
  Clock::time_point last_report{};
  bool paused = false;
  while (true) {
    double worst = 0;
    std::string why;
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (!replicas_[i]) {
        auto s = PgSession::Connect(target_.replica_conninfos[i]);
        if (!s.ok()) {
          worst = std::numeric_limits<double>::infinity();
          why = Cat("replica ", target_.replica_endpoints[i], " is unreachable");
          continue;
        }
        replicas_[i] = std::move(*s);
      }
      auto rows = replicas_[i]->Exec(
          "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NULL OR "
          "pg_last_wal_receive_lsn() <= "
          "pg_last_wal_replay_lsn() THEN 0 ELSE coalesce(extract(epoch FROM "
          "now() - "
          "pg_last_xact_replay_timestamp()), 0) END");
      if (!rows.ok()) {
        replicas_[i].reset();
        worst = std::numeric_limits<double>::infinity();
        why = Cat("replica ", target_.replica_endpoints[i], " is unreachable");
        continue;
      }
      double lag = std::strtod(rows->Text(0, 0).c_str(), nullptr);
      if (lag > worst) {
        worst = lag;
        why = absl::StrFormat("replica %s lags %.1fs", target_.replica_endpoints[i], lag);
      }
    }
    double max_lag = std::chrono::duration<double>(settings_.max_replica_lag).count();
    if (worst <= max_lag) {
      if (paused) Say("backfill resumed: replica lag is back under --max-replica-lag");
      return true;
    }
    if (!paused || Clock::now() - last_report > std::chrono::seconds(2)) {
      Say(Cat("backfill paused: ", why, " (--max-replica-lag ",
              FormatDuration(settings_.max_replica_lag), ")"));
      last_report = Clock::now();
    }
    paused = true;
    if (!stop_.SleepFor(std::chrono::milliseconds(200))) return false;
  }
}

absl::Status ShardRunner::RunBackfill(const Step& step, const Recorder& record,
                                      const StateRow* existing) {
  const BackfillDirective& b = *step.backfill;
  std::optional<std::string> after;
  int64_t done = 0;
  if (existing && existing->backfill_after) {
    after = existing->backfill_after;
    done = existing->backfill_rows;
    Say(Cat("resuming the backfill after ", b.key, " = ", *after, " (", done, " rows done)"));
  }
  int64_t total = 0;
  auto estimate = session_->ExecParams(
      "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = "
      "to_regclass($1)",
      {b.table});
  if (estimate.ok()) (void)ParseInt(estimate->Text(0, 0), &total);
  if (total == 0) {
    auto count = session_->Exec(Cat("SELECT count(*) FROM ", b.table));
    if (count.ok()) (void)ParseInt(count->Text(0, 0), &total);
  }
  std::string batch_rows =
      Cat("SELECT (SELECT k::text FROM b ORDER BY k LIMIT 1), (SELECT k::text "
          "FROM b ORDER BY k DESC "
          "LIMIT 1), (SELECT count(*) FROM b)");
  std::string first_sql = Cat("WITH b AS (SELECT ", b.key, " AS k FROM ", b.table, " ORDER BY ",
                              b.key, " LIMIT ", b.batch, ") ", batch_rows);
  std::string next_sql = Cat("WITH b AS (SELECT ", b.key, " AS k FROM ", b.table, " WHERE ", b.key,
                             " > $1 ORDER BY ", b.key, " LIMIT ", b.batch, ") ", batch_rows);
  Duration statement_timeout = current_.plan->statement_timeout;
  Clock::time_point start = Clock::now(), last_report = start;
  int64_t done_this_run = 0;
  while (true) {
    if (stop_.interrupted()) return absl::CancelledError("stopped between backfill batches");
    if (!WaitForReplicas()) return absl::CancelledError("stopped while the backfill was paused");
    bool finished = false;
    int64_t rows = 0;
    std::string high;
    absl::Status st = WithLockRetry(step, [&]() {
      return Attempt(step, [&]() {
        return InTransaction(statement_timeout, [&]() -> absl::Status {
          auto bounds =
              after ? session_->ExecParams(next_sql, {*after}) : session_->Exec(first_sql);
          if (!bounds.ok()) return bounds.status();
          if (bounds->Text(0, 2) == "0") {
            finished = true;
            return absl::OkStatus();
          }
          std::string low = bounds->Text(0, 0);
          high = bounds->Text(0, 1);
          auto updated = session_->ExecParams(step.sql[0], {low, high});
          if (!updated.ok()) return updated.status();
          rows = updated->affected;
          return RecordBackfillBatch(*session_, current_.migration->version, high, rows);
        });
      });
    });
    if (!st.ok()) return st;
    if (finished) break;
    after = high;
    done += rows;
    done_this_run += rows;
    rows_backfilled_ += rows;
    Clock::time_point now = Clock::now();
    if (now - last_report >= std::chrono::seconds(1)) {
      last_report = now;
      double secs = std::chrono::duration<double>(now - start).count();
      std::string eta = BackfillEta(secs, done_this_run, done, total);
      Say(Cat("backfill ", b.table, ": ", done, "/", std::max(total, done), " rows, elapsed ",
              FormatElapsed(now - current_.step_start), ", retries ", retries_, ", ETA ", eta));
    }
    if (b.sleep > Duration(0) && !stop_.SleepFor(b.sleep)) {
      return absl::CancelledError("stopped between backfill batches");
    }
  }
  Say(Cat("backfilled ", done, " rows of ", b.table));
  return record(*session_);
}

absl::Status ShardRunner::RunStep(const Step& step, const Recorder& record,
                                  const StateRow* existing) {
  switch (step.kind) {
    case StepKind::kTransaction:
    case StepKind::kStatement:
      return RunInTransaction(step, current_.plan->statement_timeout, record);
    case StepKind::kOutsideTransaction:
      return RunOutsideTransaction(step, record);
    case StepKind::kCreateIndexConcurrently:
    case StepKind::kDropIndexConcurrently:
    case StepKind::kReindexConcurrently:
      return RunConcurrentIndexStep(step, record);
    case StepKind::kBackfill:
      return RunBackfill(step, record, existing);
  }
  return absl::InternalError("unknown step kind");
}

absl::Status ShardRunner::RunSteps(const Migration& m, const MigrationPlan& plan, int first_step,
                                   bool rollback, const StateRow* existing) {
  const Script& script = rollback ? *m.down : m.up;
  int steps = static_cast<int>(plan.steps.size());
  current_ = Current{&m, &plan, first_step, rollback, Clock::now()};
  for (int k = first_step; k < steps; ++k) {
    current_.step_index = k;
    current_.step_start = Clock::now();
    // Ctrl-C stops before the next step; a failure elsewhere lets this shard
    // finish the step it is on (its first one, if it has not run any yet) and
    // then stops it.
    if (stop_.interrupted() || (stop_.fleet_failed() && steps_completed_ > 0)) {
      std::string why = stop_.interrupted() ? "interrupted" : "stopped: another shard failed";
      if (!plan.transactional) {
        (void)MarkStatus(*session_, m.version,
                         rollback ? MigrationStatus::kRollingBack : MigrationStatus::kStopped, why);
      }
      Say(Cat("stopped before this step (", why, ")"));
      return absl::CancelledError(why);
    }
    const Step& step = plan.steps[static_cast<size_t>(k)];
    Recorder record;
    if (plan.transactional) {
      record = rollback ? Recorder([&](PgSession& s) { return DeleteState(s, m.version); })
                        : Recorder([&](PgSession& s) {
                            return MarkApplied(s, m.version, m.name, m.up.checksum, steps,
                                               settings_.applied_by);
                          });
    } else {
      record = [&m, k](PgSession& s) { return RecordStepsDone(s, m.version, k + 1); };
    }
    Say(Cat(step.Summary(), " [", LockSummary(step),
            step.UsesLockTimeout() ? Cat("; lock_timeout ", FormatDuration(plan.lock_timeout))
                                   : std::string("; no lock_timeout"),
            "]"));
    int retries_before = retries_;
    absl::Status st = RunStep(step, record, k == first_step ? existing : nullptr);
    if (st.ok()) {
      ++steps_completed_;
      Say(Cat("done in ", FormatElapsed(Clock::now() - current_.step_start), ", retries ",
              retries_ - retries_before));
      continue;
    }
    std::string message = Cat("step ", k + 1, "/", steps, " of ", script.path, ": ", st.message());
    if (!session_->Broken()) {
      if (st.code() == absl::StatusCode::kCancelled || st.code() == absl::StatusCode::kAborted) {
        if (!plan.transactional) {
          (void)MarkStatus(*session_, m.version,
                           rollback ? MigrationStatus::kRollingBack : MigrationStatus::kStopped,
                           message);
        }
      } else if (rollback) {
        (void)MarkStatus(*session_, m.version, MigrationStatus::kRollingBack, message);
      } else if (plan.transactional) {
        (void)UpsertFailed(*session_, m.version, m.name, m.up.checksum, steps, settings_.applied_by,
                           message);
      } else {
        (void)MarkStatus(*session_, m.version, MigrationStatus::kFailed, message);
      }
    }
    Say(st.code() == absl::StatusCode::kAborted     ? Cat("GAVE UP: ", st.message())
        : st.code() == absl::StatusCode::kCancelled ? Cat("stopped: ", st.message())
                                                    : Cat("FAILED: ", st.message()));
    return absl::Status(st.code(), message);
  }
  if (!plan.transactional) {
    absl::Status st = rollback ? DeleteState(*session_, m.version)
                               : MarkApplied(*session_, m.version, m.name, m.up.checksum, steps,
                                             settings_.applied_by);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status ShardRunner::Apply(const Migration& migration, const MigrationPlan& plan,
                                const StateRow* existing) {
  int first = 0;
  if (existing) {
    if (existing->status == MigrationStatus::kApplied) return absl::OkStatus();
    if (existing->status == MigrationStatus::kRollingBack) {
      return absl::FailedPreconditionError(
          Cat("the rollback of ", migration.label, " was interrupted; run rollback again"));
    }
    first = plan.transactional
                ? 0
                : std::clamp(existing->steps_done, 0, static_cast<int>(plan.steps.size()));
  }
  if (!plan.transactional) {
    if (auto st = UpsertRunning(*session_, migration.version, migration.name, migration.up.checksum,
                                static_cast<int>(plan.steps.size()), settings_.applied_by);
        !st.ok()) {
      return st;
    }
  }
  return RunSteps(migration, plan, first, /*rollback=*/false, existing);
}

absl::Status ShardRunner::Rollback(const Migration& migration, const MigrationPlan& down,
                                   const StateRow& existing) {
  if (!migration.down) {
    return absl::FailedPreconditionError(Cat(migration.label, " has no down file"));
  }
  int first = 0;
  const StateRow* resume = nullptr;
  if (existing.status == MigrationStatus::kRollingBack) {
    first = down.transactional
                ? 0
                : std::clamp(existing.steps_done, 0, static_cast<int>(down.steps.size()));
    resume = &existing;
  } else if (auto st =
                 StartRollback(*session_, migration.version, static_cast<int>(down.steps.size()));
             !st.ok()) {
    return st;
  }
  return RunSteps(migration, down, first, /*rollback=*/true, resume);
}

}  // namespace shardyard::migrate
