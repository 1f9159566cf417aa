// Starts, configures and tears down PostgreSQL servers for tests with initdb and pg_ctl.
#include "tests/harness/pg_server.h"

#include <fstream>
#include <thread>

#include "common/strings.h"
#include "tests/harness/process.h"

namespace shardyard::testing {

std::string PgBinDir() {
  if (const char* dir = getenv("SHARDYARD_PG_BIN")) return dir;
  return "/usr/lib/postgresql/15/bin";
}

absl::StatusOr<PgConn> Connect(const std::string& conninfo) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(PQerrorMessage(conn.get()));
  }
  return conn;
}

absl::Status Exec(PGconn* conn, const std::string& sql) {
  PgResult res(PQexec(conn, sql.c_str()));
  ExecStatusType st = PQresultStatus(res.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
    return absl::InternalError(PQresultErrorMessage(res.get()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<std::string>>> Query(PGconn* conn, const std::string& sql) {
  PgResult res(PQexec(conn, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    return absl::InternalError(PQresultErrorMessage(res.get()));
  }
  std::vector<std::vector<std::string>> rows;
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    std::vector<std::string> row;
    for (int c = 0; c < PQnfields(res.get()); ++c) {
      row.push_back(PQgetisnull(res.get(), r, c) ? "<null>" : PQgetvalue(res.get(), r, c));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::string> QueryValue(PGconn* conn, const std::string& sql) {
  auto rows = Query(conn, sql);
  if (!rows.ok()) return rows.status();
  if (rows->size() != 1 || (*rows)[0].size() != 1) {
    return absl::InternalError(Cat("expected one value from: ", sql));
  }
  return (*rows)[0][0];
}

namespace {

absl::Status WriteFile(const std::string& path, const std::string& text, bool append) {
  std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
  if (!out) return absl::InternalError(Cat("cannot write ", path));
  out << text;
  return absl::OkStatus();
}

absl::Status Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv, {}, /*as_postgres=*/true);
  if (r.exit_code != 0) {
    return absl::InternalError(Cat(argv[0], " failed (", r.exit_code, "): ", r.output));
  }
  return absl::OkStatus();
}

std::string BaseConf(uint16_t port, int max_connections) {
  return Cat("\nlisten_addresses = '127.0.0.1'\nport = ", port,
             "\nunix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
             "full_page_writes = off\nmax_connections = ",
             max_connections,
             "\nshared_buffers = 32MB\nwal_level = replica\nmax_wal_senders = 5\n"
             "hot_standby = on\nlog_min_messages = warning\nlogging_collector = off\n"
             "password_encryption = 'scram-sha-256'\n");
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::Start(const Options& options) {
  std::unique_ptr<PgServer> s(new PgServer());
  s->dir_ = MakeTempDir("sy-pg", /*for_postgres=*/true);
  if (s->dir_.empty()) return absl::InternalError("mkdtemp failed");
  s->data_dir_ = s->dir_ + "/data";
  if (auto st = Run({PgBinDir() + "/initdb", "-D", s->data_dir_, "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--locale=C", "--no-sync"});
      !st.ok()) {
    return st;
  }
  std::string hba;
  for (const auto& line : options.hba_lines) Append(&hba, line, "\n");
  Append(&hba,
         "host all postgres 127.0.0.1/32 trust\n"
         "host replication postgres 127.0.0.1/32 trust\n"
         "host all all 127.0.0.1/32 scram-sha-256\n");
  if (auto st = WriteFile(s->data_dir_ + "/pg_hba.conf", hba, false); !st.ok()) return st;
  std::string extra;
  for (const auto& line : options.conf_lines) Append(&extra, line, "\n");
  // The port is only known to be free a moment before the server binds it; retry on a clash.
  for (int attempt = 0; attempt < 5; ++attempt) {
    s->port_ = FreePort();
    if (auto st = WriteFile(s->data_dir_ + "/postgresql.auto.conf",
                            BaseConf(s->port_, options.max_connections) + extra, false);
        !st.ok()) {
      return st;
    }
    if (s->StartProcess().ok()) return s;
  }
  return absl::InternalError(Cat("PostgreSQL did not start; see ", s->data_dir_, "/server.log"));
}

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::StartReplica(const PgServer& primary) {
  std::unique_ptr<PgServer> s(new PgServer());
  s->dir_ = MakeTempDir("sy-pgr", /*for_postgres=*/true);
  s->data_dir_ = s->dir_ + "/data";
  if (auto st = Run({PgBinDir() + "/pg_basebackup", "-h", "127.0.0.1", "-p",
                     std::to_string(primary.port()), "-U", "postgres", "-D", s->data_dir_, "-R",
                     "-X", "stream", "--checkpoint=fast", "--no-sync"});
      !st.ok()) {
    return st;
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    s->port_ = FreePort();
    std::string conf = Cat("\nport = ", s->port_, "\n");
    if (auto st = WriteFile(s->data_dir_ + "/postgresql.auto.conf", conf, true); !st.ok())
      return st;
    if (s->StartProcess().ok()) return s;
  }
  return absl::InternalError("replica did not start");
}

absl::Status PgServer::StartProcess() {
  auto st = Run({PgBinDir() + "/pg_ctl", "-D", data_dir_, "-l", data_dir_ + "/server.log", "-w",
                 "-t", "30", "start"});
  running_ = st.ok();
  return st;
}

absl::Status PgServer::Stop() {
  if (!running_) return absl::OkStatus();
  running_ = false;
  return Run({PgBinDir() + "/pg_ctl", "-D", data_dir_, "-m", "immediate", "-w", "stop"});
}

absl::Status PgServer::Restart() {
  if (auto st = Stop(); !st.ok()) return st;
  return StartProcess();
}

PgServer::~PgServer() {
  (void)Stop();
  RemoveTree(dir_);
}

std::string PgServer::ConnInfo(const std::string& dbname, const std::string& user,
                               const std::string& password) const {
  std::string s = Cat("host=127.0.0.1 port=", port_, " dbname=", dbname, " user=", user);
  if (!password.empty()) Append(&s, " password=", password);
  return s;
}

absl::StatusOr<PgConn> PgServer::ConnectSuper(const std::string& dbname) const {
  return Connect(ConnInfo(dbname));
}

absl::Status PgServer::ExecSuper(const std::string& sql, const std::string& dbname) const {
  auto conn = ConnectSuper(dbname);
  if (!conn.ok()) return conn.status();
  return Exec(conn->get(), sql);
}

absl::Status PgServer::CreateUser(const std::string& name, const std::string& password,
                                  const std::string& encryption, bool superuser) const {
  auto conn = ConnectSuper();
  if (!conn.ok()) return conn.status();
  if (auto st = Exec(conn->get(), Cat("SET password_encryption = '", encryption, "'")); !st.ok()) {
    return st;
  }
  return Exec(conn->get(), Cat("CREATE ROLE \"", name, "\" LOGIN ", superuser ? "SUPERUSER " : "",
                               "PASSWORD '", password, "'"));
}

absl::Status PgServer::CreateDatabase(const std::string& name, const std::string& owner) const {
  return ExecSuper(Cat("CREATE DATABASE \"", name, "\" OWNER \"", owner, "\""));
}

}  // namespace shardyard::testing
