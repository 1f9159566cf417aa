// Runs the real shardyard binary for integration tests, against PostgreSQL servers the test
// started, with a config written to a temp dir and an ephemeral listen port.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/harness/pg_server.h"
#include "tests/harness/process.h"

namespace shardyard::testing {

// Path of the shardyard binary under test (SHARDYARD_BIN, else the build tree's).
std::string ShardyardBinary();

class Shardyard {
 public:
  // Starts shardyard with `yaml` (whose listen port should be 0) and waits until it listens.
  static absl::StatusOr<std::unique_ptr<Shardyard>> Start(const std::string& yaml);
  ~Shardyard();

  uint16_t port() const { return port_; }
  std::string ConnInfo(const std::string& dbname, const std::string& user,
                       const std::string& password = "", const std::string& extra = "") const;
  Daemon& process() { return *daemon_; }
  std::string Log() const { return daemon_->Log(); }
  const std::string& config_path() const { return config_path_; }

  // Rewrites the config file and sends SIGHUP; waits for the reload (or refusal) log line.
  absl::Status Reload(const std::string& yaml);

 private:
  Shardyard() = default;
  std::string dir_;
  std::string config_path_;
  std::unique_ptr<Daemon> daemon_;
  uint16_t port_ = 0;
  int reloads_ = 0;
};

// Options for the standard test config; fields are YAML fragments.
struct ConfigOptions {
  std::string pool;       // lines under "pool:", each indented two spaces
  std::string top;        // extra top-level lines (e.g. "auth_type: md5\n")
  std::string users;      // replaces the default users list (lines under "users:")
  std::string databases;  // replaces the default databases list (lines under "databases:")
  int workers = 2;
  std::string log_level = "info";
};

// The standard test config: database "app" on `pg` and user app/secret (plus whatever
// `options` change).
std::string MakeConfig(const PgServer& pg, const ConfigOptions& options = {});

// A PostgreSQL server set up for proxy tests: role app (password "secret", SCRAM-stored),
// owner of database app, with a table `items(id int primary key, v text)` holding 10 rows.
absl::StatusOr<std::unique_ptr<PgServer>> StartAppServer(PgServer::Options options = {});

// Counts the backends `user` has open on `pg` (pg_stat_activity).
int CountBackends(const PgServer& pg, const std::string& user);

}  // namespace shardyard::testing
