// One synchronous libpq connection to a shard, with errors as absl::Status
// carrying the SQLSTATE.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct pg_conn;
struct pg_cancel;

namespace shardyard::migrate {

using Param = std::optional<std::string>;  // nullopt is SQL NULL

// The rows of a result as text.
struct Rows {
  std::vector<std::vector<Param>> rows;
  int64_t affected = 0;  // the command's row count (UPDATE 42 → 42)

  size_t size() const { return rows.size(); }
  bool empty() const { return rows.empty(); }
  // The value at (row, column); "" for NULL or out of range.
  std::string Text(size_t row, size_t column) const;
  bool IsNull(size_t row, size_t column) const;
};

// The SQLSTATE of a failed statement ("" when the failure did not come from the
// server).
std::string SqlStateOf(const absl::Status& status);
// Whether the connection itself failed (not just the statement).
bool IsConnectionError(const absl::Status& status);

// Builds a libpq connection string, quoting every value.
std::string BuildConninfo(const std::map<std::string, std::string>& params);

// Contract: one thread uses a session at a time, except Cancel(), which any
// thread may call.
class PgSession {
 public:
  static absl::StatusOr<std::unique_ptr<PgSession>> Connect(const std::string& conninfo);
  ~PgSession();
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;

  // Runs SQL with the simple query protocol (as psql would).
  absl::StatusOr<Rows> Exec(std::string_view sql);
  // Runs one statement with text parameters (extended protocol).
  absl::StatusOr<Rows> ExecParams(std::string_view sql, const std::vector<Param>& params);
  absl::Status Run(std::string_view sql) { return Exec(sql).status(); }

  // Asks the server to cancel the statement now running on this session, if
  // any.
  void Cancel();
  // Whether the connection is gone (a new session is needed).
  bool Broken() const;
  // The server's backend process id.
  int BackendPid() const;

 private:
  explicit PgSession(pg_conn* conn);
  absl::StatusOr<Rows> Collect(void* result);  // takes ownership of a PGresult

  pg_conn* conn_;
  std::mutex cancel_mu_;
  pg_cancel* cancel_ = nullptr;
};

// Single-quoted SQL literal ('it''s').
std::string QuoteLiteral(std::string_view text);
// PostgreSQL interval literal of a duration in milliseconds ('1500ms').
std::string DurationLiteral(std::chrono::nanoseconds d);

}  // namespace shardyard::migrate
