// A throwaway PostgreSQL 15 server for integration tests: its own temp dir and loopback port.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shardyard::testing {

// The directory holding initdb, pg_ctl, postgres, pgbench, psql.
std::string PgBinDir();

// A libpq connection that closes itself.
struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// Connects with a libpq connection string; fails with libpq's message.
absl::StatusOr<PgConn> Connect(const std::string& conninfo);
// Runs `sql` (simple protocol); fails with the server's error message.
absl::Status Exec(PGconn* conn, const std::string& sql);
// Runs a query and returns the rows as text (NULL becomes "<null>").
absl::StatusOr<std::vector<std::vector<std::string>>> Query(PGconn* conn, const std::string& sql);
// The single value of a one-row, one-column query.
absl::StatusOr<std::string> QueryValue(PGconn* conn, const std::string& sql);

class PgServer {
 public:
  struct Options {
    // Lines placed before the default pg_hba.conf lines (which trust the superuser `postgres`
    // on loopback and require scram-sha-256 from everyone else).
    std::vector<std::string> hba_lines;
    // Extra postgresql.conf lines.
    std::vector<std::string> conf_lines;
    int max_connections = 200;
  };

  // initdb + start; the superuser is `postgres` with no password (trusted on loopback).
  static absl::StatusOr<std::unique_ptr<PgServer>> Start(const Options& options);
  static absl::StatusOr<std::unique_ptr<PgServer>> Start() { return Start(Options{}); }
  // A streaming replica of `primary` (pg_basebackup -R), started and caught up.
  static absl::StatusOr<std::unique_ptr<PgServer>> StartReplica(const PgServer& primary);
  ~PgServer();

  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  std::string host() const { return "127.0.0.1"; }
  uint16_t port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }

  // "host=127.0.0.1 port=N dbname=db user=user [password=pw]".
  std::string ConnInfo(const std::string& dbname = "postgres", const std::string& user = "postgres",
                       const std::string& password = "") const;
  // A superuser connection to `dbname`.
  absl::StatusOr<PgConn> ConnectSuper(const std::string& dbname = "postgres") const;
  absl::Status ExecSuper(const std::string& sql, const std::string& dbname = "postgres") const;

  // Creates a login role with a password stored as scram-sha-256 or md5.
  absl::Status CreateUser(const std::string& name, const std::string& password,
                          const std::string& encryption = "scram-sha-256",
                          bool superuser = false) const;
  absl::Status CreateDatabase(const std::string& name, const std::string& owner) const;

  absl::Status Stop();
  absl::Status Restart();

 private:
  PgServer() = default;
  absl::Status StartProcess();

  std::string dir_;
  std::string data_dir_;
  uint16_t port_ = 0;
  bool running_ = false;
};

}  // namespace shardyard::testing
