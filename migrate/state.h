// Per-shard migration state: the shardyard_migrations table and the runner lock
// row.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "migrate/pg_session.h"

namespace shardyard::migrate {

// running: a runner is on it, or was killed on it (dirty); stopped: left
// between steps (Ctrl-C, or another shard failed); failed: a step failed;
// rolling_back: its down file is running.
enum class MigrationStatus { kRunning, kApplied, kFailed, kStopped, kRollingBack };
std::string_view MigrationStatusName(MigrationStatus status);
std::optional<MigrationStatus> ParseMigrationStatus(std::string_view name);

struct StateRow {
  int64_t version = 0;
  std::string name;
  std::string checksum;
  MigrationStatus status = MigrationStatus::kRunning;
  int steps_done = 0;
  int steps_total = 0;
  std::optional<std::string> backfill_after;  // last key a committed backfill batch covered
  int64_t backfill_rows = 0;
  std::string started_at;   // ISO 8601, UTC
  std::string finished_at;  // "" while not finished
  double duration_seconds = 0;
  std::string applied_by;
  std::string error;
};

struct LockRow {
  std::string owner;
  std::string acquired_at;
  double expires_in_seconds = 0;  // negative once expired
};

inline constexpr std::string_view kStateTable = "public.shardyard_migrations";
inline constexpr std::string_view kLockTable = "public.shardyard_migrate_lock";

// Creates both tables if missing (idempotent, safe to race with another
// runner).
absl::Status EnsureStateTables(PgSession& session);
// All rows by version; empty when the table does not exist yet.
absl::StatusOr<std::vector<StateRow>> ReadState(PgSession& session);

// The statements below are single statements, so each is its own transaction
// unless the caller opened one (the runner records a step in the same
// transaction as the step itself).
absl::Status UpsertRunning(PgSession& session, int64_t version, std::string_view name,
                           std::string_view checksum, int steps_total, std::string_view applied_by);
absl::Status RecordStepsDone(PgSession& session, int64_t version, int steps_done);
absl::Status RecordBackfillBatch(PgSession& session, int64_t version, std::string_view after,
                                 int64_t rows);
absl::Status MarkApplied(PgSession& session, int64_t version, std::string_view name,
                         std::string_view checksum, int steps_total, std::string_view applied_by);
absl::Status MarkStatus(PgSession& session, int64_t version, MigrationStatus status,
                        std::string_view error);
// Failed before anything of it was recorded (e.g. a transactional migration
// rolled back).
absl::Status UpsertFailed(PgSession& session, int64_t version, std::string_view name,
                          std::string_view checksum, int steps_total, std::string_view applied_by,
                          std::string_view error);
absl::Status StartRollback(PgSession& session, int64_t version, int down_steps);
absl::Status DeleteState(PgSession& session, int64_t version);

// The runner lock: one row per shard with an owner and an expiry, taken,
// renewed and released by single statements, so it works through a transaction
// pooler. A lock whose owner is a dead process on this host is taken over at
// once; any other must expire first.
std::string MakeLockOwner();
// Ok when taken (or already ours); Aborted naming the holder when another live
// runner has it.
absl::Status AcquireRunnerLock(PgSession& session, const std::string& owner,
                               std::chrono::seconds ttl);
// False when the lock is no longer ours (it expired and someone else took it).
absl::StatusOr<bool> RenewRunnerLock(PgSession& session, const std::string& owner,
                                     std::chrono::seconds ttl);
absl::Status ReleaseRunnerLock(PgSession& session, const std::string& owner);
absl::StatusOr<std::optional<LockRow>> ReadRunnerLock(PgSession& session);
// Removes an expired lock or one held by a dead local process (repair).
absl::StatusOr<bool> ClearStaleRunnerLock(PgSession& session);
// Whether `owner` names a process on this host that no longer exists.
bool OwnerIsDeadLocalProcess(std::string_view owner);

}  // namespace shardyard::migrate
