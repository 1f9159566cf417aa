// A throwaway sharded cluster for shardyard-migrate tests: N PostgreSQL
// primaries, a config, a dir.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/harness/pg_server.h"
#include "tests/harness/process.h"

namespace shardyard::migrate::testing {

using shardyard::testing::CommandResult;
using shardyard::testing::Daemon;
using shardyard::testing::PgConn;
using shardyard::testing::PgServer;

class Cluster {
 public:
  struct Options {
    int shards = 4;
    bool replica_of_shard0 = false;  // adds a streaming replica to shard 0 in the config
  };
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(const Options& options);
  ~Cluster();

  static constexpr const char* kDatabase = "appdb";

  int shards() const { return static_cast<int>(servers_.size()); }
  PgServer& shard(int i) { return *servers_.at(static_cast<size_t>(i)); }
  PgServer* replica() { return replica_.get(); }
  const std::string& dir() const { return migrations_dir_; }
  const std::string& work_dir() const { return work_dir_; }

  // Writes (or overwrites) a file in the migrations directory.
  void WriteMigration(const std::string& file, const std::string& text) const;
  // Runs shardyard-migrate with --config, --database and --dir set.
  CommandResult Migrate(const std::vector<std::string>& args) const;
  std::vector<std::string> MigrateArgv(const std::vector<std::string>& args) const;
  absl::StatusOr<std::unique_ptr<Daemon>> MigrateInBackground(const std::vector<std::string>& args,
                                                              const std::string& log_name) const;

  absl::StatusOr<PgConn> Connect(int shard) const;
  // Runs SQL on one shard (or all) as the superuser in the app database.
  absl::Status Exec(int shard, const std::string& sql) const;
  absl::Status ExecAll(const std::string& sql) const;
  // The single value of a query on one shard ("<error: ...>" on failure).
  std::string Value(int shard, const std::string& sql) const;

 private:
  Cluster() = default;
  std::vector<std::unique_ptr<PgServer>> servers_;
  std::unique_ptr<PgServer> replica_;
  std::string work_dir_;
  std::string migrations_dir_;
  std::string config_path_;
};

// Milliseconds since `start`.
double MillisSince(std::chrono::steady_clock::time_point start);

}  // namespace shardyard::migrate::testing
