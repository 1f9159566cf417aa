// SQL for the state table and the runner lock row; every write is one short
// statement.
#include "migrate/state.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "common/crypto.h"
#include "common/strings.h"

namespace shardyard::migrate {

std::string_view MigrationStatusName(MigrationStatus status) {
  switch (status) {
    case MigrationStatus::kRunning:
      return "running";
    case MigrationStatus::kApplied:
      return "applied";
    case MigrationStatus::kFailed:
      return "failed";
    case MigrationStatus::kStopped:
      return "stopped";
    case MigrationStatus::kRollingBack:
      return "rolling_back";
  }
  return "?";
}

std::optional<MigrationStatus> ParseMigrationStatus(std::string_view name) {
  for (auto s : {MigrationStatus::kRunning, MigrationStatus::kApplied, MigrationStatus::kFailed,
                 MigrationStatus::kStopped, MigrationStatus::kRollingBack}) {
    if (MigrationStatusName(s) == name) return s;
  }
  return std::nullopt;
}

namespace {

constexpr std::string_view kCreateTables = R"sql(
CREATE TABLE IF NOT EXISTS public.shardyard_migrations (
  version bigint PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  status text NOT NULL
    CHECK (status IN ('running', 'applied', 'failed', 'stopped', 'rolling_back')),
  steps_done integer NOT NULL DEFAULT 0,
  steps_total integer NOT NULL DEFAULT 0,
  backfill_after text,
  backfill_rows bigint NOT NULL DEFAULT 0,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  duration interval,
  applied_by text NOT NULL,
  error text
);
CREATE TABLE IF NOT EXISTS public.shardyard_migrate_lock (
  id integer PRIMARY KEY CHECK (id = 1),
  owner text NOT NULL,
  acquired_at timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
))sql";

std::string Seconds(std::chrono::seconds s) { return Cat(s.count(), " seconds"); }

std::string IsoTime(std::string_view column) {
  return Cat("coalesce(to_char(", column,
             " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')");
}

std::string HostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) return "unknown-host";
  return host;
}

}  // namespace

absl::Status EnsureStateTables(PgSession& session) {
  // Two runners creating the tables at once can collide on the catalog's unique
  // indexes.
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = session.Run(kCreateTables);
    std::string code = SqlStateOf(st);
    if (st.ok() || (code != "23505" && code != "42P07")) return st;
  }
  return st;
}

absl::StatusOr<std::vector<StateRow>> ReadState(PgSession& session) {
  auto exists = session.Exec("SELECT to_regclass('public.shardyard_migrations') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  std::vector<StateRow> out;
  if (exists->Text(0, 0) != "t") return out;
  auto rows =
      session.Exec(Cat("SELECT version, name, checksum, status, steps_done, "
                       "steps_total, backfill_after, "
                       "backfill_rows, ",
                       IsoTime("started_at"), ", ", IsoTime("finished_at"),
                       ", coalesce(extract(epoch FROM duration), 0), "
                       "applied_by, coalesce(error, '') FROM ",
                       kStateTable, " ORDER BY version"));
  if (!rows.ok()) return rows.status();
  for (size_t r = 0; r < rows->size(); ++r) {
    StateRow row;
    (void)ParseInt(rows->Text(r, 0), &row.version);
    row.name = rows->Text(r, 1);
    row.checksum = rows->Text(r, 2);
    row.status = ParseMigrationStatus(rows->Text(r, 3)).value_or(MigrationStatus::kFailed);
    (void)ParseInt(rows->Text(r, 4), &row.steps_done);
    (void)ParseInt(rows->Text(r, 5), &row.steps_total);
    if (!rows->IsNull(r, 6)) row.backfill_after = rows->Text(r, 6);
    (void)ParseInt(rows->Text(r, 7), &row.backfill_rows);
    row.started_at = rows->Text(r, 8);
    row.finished_at = rows->Text(r, 9);
    row.duration_seconds = std::strtod(rows->Text(r, 10).c_str(), nullptr);
    row.applied_by = rows->Text(r, 11);
    row.error = rows->Text(r, 12);
    out.push_back(std::move(row));
  }
  return out;
}

absl::Status UpsertRunning(PgSession& session, int64_t version, std::string_view name,
                           std::string_view checksum, int steps_total,
                           std::string_view applied_by) {
  return session
      .ExecParams(Cat("INSERT INTO ", kStateTable,
                      " (version, name, checksum, status, steps_total, applied_by) "
                      "VALUES ($1, $2, $3, 'running', $4, $5) ON CONFLICT (version) DO "
                      "UPDATE "
                      "SET status = 'running', error = NULL, checksum = "
                      "excluded.checksum, name = excluded.name, "
                      "steps_total = excluded.steps_total, applied_by = "
                      "excluded.applied_by"),
                  {std::to_string(version), std::string(name), std::string(checksum),
                   std::to_string(steps_total), std::string(applied_by)})
      .status();
}

absl::Status RecordStepsDone(PgSession& session, int64_t version, int steps_done) {
  return session
      .ExecParams(Cat("UPDATE ", kStateTable,
                      " SET steps_done = $2, backfill_after = NULL WHERE version = $1"),
                  {std::to_string(version), std::to_string(steps_done)})
      .status();
}

absl::Status RecordBackfillBatch(PgSession& session, int64_t version, std::string_view after,
                                 int64_t rows) {
  return session
      .ExecParams(Cat("UPDATE ", kStateTable,
                      " SET backfill_after = $2, backfill_rows = backfill_rows + $3 "
                      "WHERE version = $1"),
                  {std::to_string(version), std::string(after), std::to_string(rows)})
      .status();
}

absl::Status MarkApplied(PgSession& session, int64_t version, std::string_view name,
                         std::string_view checksum, int steps_total, std::string_view applied_by) {
  // started_at stays from the first attempt; for a one-step transactional
  // migration the row appears here for the first time.
  return session
      .ExecParams(Cat("INSERT INTO ", kStateTable,
                      " AS m (version, name, checksum, status, steps_done, "
                      "steps_total, applied_by, "
                      "started_at, finished_at, duration) VALUES ($1, $2, $3, "
                      "'applied', $4, $4, $5, "
                      "now(), clock_timestamp(), clock_timestamp() - now()) ON "
                      "CONFLICT (version) DO UPDATE SET status = 'applied', "
                      "checksum = excluded.checksum, "
                      "steps_done = $4, error = NULL, backfill_after = NULL, "
                      "finished_at = "
                      "clock_timestamp(), duration = clock_timestamp() - m.started_at"),
                  {std::to_string(version), std::string(name), std::string(checksum),
                   std::to_string(steps_total), std::string(applied_by)})
      .status();
}

absl::Status MarkStatus(PgSession& session, int64_t version, MigrationStatus status,
                        std::string_view error) {
  Param err = error.empty() ? Param() : Param(std::string(error));
  return session
      .ExecParams(Cat("UPDATE ", kStateTable, " SET status = $2, error = $3 WHERE version = $1"),
                  {std::to_string(version), std::string(MigrationStatusName(status)), err})
      .status();
}

absl::Status UpsertFailed(PgSession& session, int64_t version, std::string_view name,
                          std::string_view checksum, int steps_total, std::string_view applied_by,
                          std::string_view error) {
  return session
      .ExecParams(Cat("INSERT INTO ", kStateTable,
                      " (version, name, checksum, status, steps_total, applied_by, "
                      "error, "
                      "finished_at) VALUES ($1, $2, $3, 'failed', $4, $5, $6, now()) "
                      "ON CONFLICT (version) DO UPDATE SET status = 'failed', checksum "
                      "= excluded.checksum, error = "
                      "$6, "
                      "finished_at = now()"),
                  {std::to_string(version), std::string(name), std::string(checksum),
                   std::to_string(steps_total), std::string(applied_by), std::string(error)})
      .status();
}

absl::Status StartRollback(PgSession& session, int64_t version, int down_steps) {
  return session
      .ExecParams(Cat("UPDATE ", kStateTable,
                      " SET status = 'rolling_back', steps_done = 0, steps_total = $2, "
                      "backfill_after = NULL, error = NULL WHERE version = $1"),
                  {std::to_string(version), std::to_string(down_steps)})
      .status();
}

absl::Status DeleteState(PgSession& session, int64_t version) {
  return session
      .ExecParams(Cat("DELETE FROM ", kStateTable, " WHERE version = $1"),
                  {std::to_string(version)})
      .status();
}

std::string MakeLockOwner() {
  return Cat(HostName(), ":", getpid(), ":", crypto::RandomUint32() % 1000000);
}

bool OwnerIsDeadLocalProcess(std::string_view owner) {
  std::vector<std::string_view> parts = Split(owner, ':');
  if (parts.size() != 3 || parts[0] != HostName()) return false;
  int pid = 0;
  if (!ParseInt(parts[1], &pid) || pid <= 0) return false;
  return kill(pid, 0) != 0 && errno == ESRCH;
}

absl::Status AcquireRunnerLock(PgSession& session, const std::string& owner,
                               std::chrono::seconds ttl) {
  std::string stale;  // a holder we may take over: a dead process on this host
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto rows = session.ExecParams(Cat("INSERT INTO ", kLockTable,
                                       " AS l (id, owner, acquired_at, heartbeat_at, "
                                       "expires_at) VALUES (1, $1, now(), "
                                       "now(), now() + $2::interval) ON CONFLICT (id) "
                                       "DO UPDATE SET owner = excluded.owner, "
                                       "acquired_at = excluded.acquired_at, "
                                       "heartbeat_at = now(), expires_at = "
                                       "excluded.expires_at WHERE l.expires_at < now() "
                                       "OR l.owner = excluded.owner OR "
                                       "l.owner = $3 RETURNING owner"),
                                   {owner, Seconds(ttl), stale});
    if (!rows.ok()) return rows.status();
    if (!rows->empty()) return absl::OkStatus();
    auto holder = ReadRunnerLock(session);
    if (!holder.ok()) return holder.status();
    if (!*holder) continue;  // released in between
    if (OwnerIsDeadLocalProcess((*holder)->owner) && stale.empty()) {
      stale = (*holder)->owner;
      continue;
    }
    return absl::AbortedError(Cat("another run holds the runner lock (owner ", (*holder)->owner,
                                  ", since ", (*holder)->acquired_at, ", expires in ",
                                  static_cast<int64_t>((*holder)->expires_in_seconds), "s)"));
  }
  return absl::AbortedError("could not take the runner lock");
}

absl::StatusOr<bool> RenewRunnerLock(PgSession& session, const std::string& owner,
                                     std::chrono::seconds ttl) {
  auto rows = session.ExecParams(Cat("UPDATE ", kLockTable,
                                     " SET heartbeat_at = now(), expires_at = now() + "
                                     "$2::interval WHERE id = 1 AND owner = $1"),
                                 {owner, Seconds(ttl)});
  if (!rows.ok()) return rows.status();
  return rows->affected == 1;
}

absl::Status ReleaseRunnerLock(PgSession& session, const std::string& owner) {
  return session
      .ExecParams(Cat("DELETE FROM ", kLockTable, " WHERE id = 1 AND owner = $1"), {owner})
      .status();
}

absl::StatusOr<std::optional<LockRow>> ReadRunnerLock(PgSession& session) {
  auto exists = session.Exec("SELECT to_regclass('public.shardyard_migrate_lock') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->Text(0, 0) != "t") return std::optional<LockRow>();
  auto rows = session.Exec(Cat("SELECT owner, ", IsoTime("acquired_at"),
                               ", extract(epoch FROM expires_at - now()) FROM ", kLockTable,
                               " WHERE id = 1"));
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<LockRow>();
  LockRow lock;
  lock.owner = rows->Text(0, 0);
  lock.acquired_at = rows->Text(0, 1);
  lock.expires_in_seconds = std::strtod(rows->Text(0, 2).c_str(), nullptr);
  return std::optional<LockRow>(lock);
}

absl::StatusOr<bool> ClearStaleRunnerLock(PgSession& session) {
  auto lock = ReadRunnerLock(session);
  if (!lock.ok()) return lock.status();
  if (!*lock) return false;
  if ((*lock)->expires_in_seconds >= 0 && !OwnerIsDeadLocalProcess((*lock)->owner)) return false;
  auto rows = session.ExecParams(Cat("DELETE FROM ", kLockTable, " WHERE id = 1 AND owner = $1"),
                                 {(*lock)->owner});
  if (!rows.ok()) return rows.status();
  return rows->affected == 1;
}

}  // namespace shardyard::migrate
