// The libpq wrapper: result collection, SQLSTATE-carrying errors, thread-safe
// cancel.
#include "migrate/pg_session.h"

#include <libpq-fe.h>

#include <chrono>

#include "common/pg_error.h"
#include "common/strings.h"

namespace shardyard::migrate {

std::string Rows::Text(size_t row, size_t column) const {
  if (row >= rows.size() || column >= rows[row].size() || !rows[row][column]) return "";
  return *rows[row][column];
}

bool Rows::IsNull(size_t row, size_t column) const {
  return row >= rows.size() || column >= rows[row].size() || !rows[row][column];
}

std::string SqlStateOf(const absl::Status& status) {
  if (status.ok()) return "";
  auto fields = GetPgError(status);
  return fields ? fields->sqlstate : "";
}

bool IsConnectionError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable;
}

std::string BuildConninfo(const std::map<std::string, std::string>& params) {
  std::string out;
  for (const auto& [key, value] : params) {
    if (!out.empty()) out += ' ';
    out += key;
    out += "='";
    for (char c : value) {
      if (c == '\'' || c == '\\') out += '\\';
      out += c;
    }
    out += '\'';
  }
  return out;
}

std::string QuoteLiteral(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

std::string DurationLiteral(std::chrono::nanoseconds d) {
  return Cat("'", std::chrono::duration_cast<std::chrono::milliseconds>(d).count(), "ms'");
}

absl::StatusOr<std::unique_ptr<PgSession>> PgSession::Connect(const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return PgErrorStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure, message);
  }
  return std::unique_ptr<PgSession>(new PgSession(conn));
}

namespace {
// Notices ("relation already exists, skipping") are not errors; the runner
// reports what matters.
void IgnoreNotice(void*, const char*) {}
}  // namespace

PgSession::PgSession(pg_conn* conn) : conn_(conn) {
  cancel_ = PQgetCancel(conn_);
  PQsetNoticeProcessor(conn_, IgnoreNotice, nullptr);
}

PgSession::~PgSession() {
  {
    std::lock_guard<std::mutex> lock(cancel_mu_);
    if (cancel_) PQfreeCancel(cancel_);
    cancel_ = nullptr;
  }
  PQfinish(conn_);
}

void PgSession::Cancel() {
  std::lock_guard<std::mutex> lock(cancel_mu_);
  if (!cancel_) return;
  char err[256];
  (void)PQcancel(cancel_, err, sizeof(err));
}

bool PgSession::Broken() const { return PQstatus(conn_) != CONNECTION_OK; }

int PgSession::BackendPid() const { return PQbackendPID(conn_); }

absl::StatusOr<Rows> PgSession::Collect(void* raw) {
  PGresult* result = static_cast<PGresult*>(raw);
  ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
    auto field = [&](int code) {
      const char* v = PQresultErrorField(result, code);
      return std::string(v ? v : "");
    };
    std::string sqlstate = field(PG_DIAG_SQLSTATE);
    std::string message = field(PG_DIAG_MESSAGE_PRIMARY);
    std::string detail = field(PG_DIAG_MESSAGE_DETAIL);
    std::string hint = field(PG_DIAG_MESSAGE_HINT);
    PQclear(result);
    if (sqlstate.empty() || Broken()) {
      std::string m = PQerrorMessage(conn_);
      while (!m.empty() && m.back() == '\n') m.pop_back();
      return PgErrorStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                           m.empty() ? message : m);
    }
    // The detail often says what to fix ("Key (v)=(1) is duplicated."), so it
    // is shown too.
    std::string shown = detail.empty() ? message : Cat(message, " (", detail, ")");
    return PgErrorStatus(absl::StatusCode::kFailedPrecondition, sqlstate, shown, detail, hint);
  }
  Rows rows;
  int n = PQntuples(result), cols = PQnfields(result);
  rows.rows.reserve(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    std::vector<Param> row;
    row.reserve(static_cast<size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(result, r, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(
            std::string(PQgetvalue(result, r, c), static_cast<size_t>(PQgetlength(result, r, c))));
      }
    }
    rows.rows.push_back(std::move(row));
  }
  const char* tuples = PQcmdTuples(result);
  if (tuples && *tuples) (void)ParseInt(std::string_view(tuples), &rows.affected);
  PQclear(result);
  return rows;
}

absl::StatusOr<Rows> PgSession::Exec(std::string_view sql) {
  std::string text(sql);
  return Collect(PQexec(conn_, text.c_str()));
}

absl::StatusOr<Rows> PgSession::ExecParams(std::string_view sql, const std::vector<Param>& params) {
  std::string text(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) values.push_back(p ? p->c_str() : nullptr);
  return Collect(PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                              values.data(), nullptr, nullptr, 0));
}

}  // namespace shardyard::migrate
