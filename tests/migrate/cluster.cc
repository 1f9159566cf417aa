// Starts the shards in parallel, writes a Shardyard config for them, and runs
// the migrate binary.
#include "tests/migrate/cluster.h"

#include <filesystem>
#include <fstream>

#include "common/strings.h"

namespace shardyard::migrate::testing {

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(const Options& options) {
  std::unique_ptr<Cluster> c(new Cluster());
  // One at a time: the harness forks (initdb, pg_ctl) and looks up the postgres
  // user, which is not safe to do from several threads at once (a child can
  // inherit a held libc lock).
  for (int i = 0; i < options.shards; ++i) {
    PgServer::Options o;
    o.max_connections = 60;
    // pg_basebackup (StartReplica) waits for a spread checkpoint; make
    // checkpoints immediate.
    o.conf_lines.push_back("checkpoint_completion_target = 0");
    auto server = PgServer::Start(o);
    if (!server.ok()) return server.status();
    c->servers_.push_back(std::move(*server));
  }
  for (auto& s : c->servers_) {
    if (auto st = s->CreateDatabase(kDatabase, "postgres"); !st.ok()) return st;
  }
  if (options.replica_of_shard0) {
    auto replica = PgServer::StartReplica(*c->servers_[0]);
    if (!replica.ok()) return replica.status();
    c->replica_ = std::move(*replica);
  }
  c->work_dir_ = shardyard::testing::MakeTempDir("sy-migrate", /*for_postgres=*/false);
  c->migrations_dir_ = c->work_dir_ + "/migrations";
  c->config_path_ = c->work_dir_ + "/shardyard.yaml";
  std::string yaml =
      "listen: {host: 127.0.0.1, port: 0}\n"
      "auth_type: trust\n"
      "users:\n"
      "  - name: postgres\n"
      "databases:\n"
      "  - name: app\n"
      "    server_database: appdb\n"
      "    shards:\n";
  for (size_t i = 0; i < c->servers_.size(); ++i) {
    Append(&yaml, "      - primary: {host: 127.0.0.1, port: ", c->servers_[i]->port(), "}\n");
    if (i == 0 && c->replica_) {
      Append(&yaml, "        replicas:\n          - {host: 127.0.0.1, port: ", c->replica_->port(),
             "}\n");
    }
  }
  std::ofstream(c->config_path_) << yaml;
  std::filesystem::create_directories(c->migrations_dir_);
  return c;
}

Cluster::~Cluster() {
  replica_.reset();
  servers_.clear();
  if (!work_dir_.empty()) shardyard::testing::RemoveTree(work_dir_);
}

void Cluster::WriteMigration(const std::string& file, const std::string& text) const {
  std::ofstream(migrations_dir_ + "/" + file) << text;
}

std::vector<std::string> Cluster::MigrateArgv(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {SHARDYARD_MIGRATE_BIN, "--config", config_path_,
                                   "--database",          "app",      "--dir",
                                   migrations_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

CommandResult Cluster::Migrate(const std::vector<std::string>& args) const {
  return shardyard::testing::RunCommand(MigrateArgv(args));
}

absl::StatusOr<std::unique_ptr<Daemon>> Cluster::MigrateInBackground(
    const std::vector<std::string>& args, const std::string& log_name) const {
  return Daemon::Start(MigrateArgv(args), work_dir_ + "/" + log_name);
}

absl::StatusOr<PgConn> Cluster::Connect(int shard) const {
  return servers_.at(static_cast<size_t>(shard))->ConnectSuper(kDatabase);
}

absl::Status Cluster::Exec(int shard, const std::string& sql) const {
  return servers_.at(static_cast<size_t>(shard))->ExecSuper(sql, kDatabase);
}

absl::Status Cluster::ExecAll(const std::string& sql) const {
  for (int i = 0; i < shards(); ++i) {
    if (auto st = Exec(i, sql); !st.ok()) return st;
  }
  return absl::OkStatus();
}

std::string Cluster::Value(int shard, const std::string& sql) const {
  auto conn = Connect(shard);
  if (!conn.ok()) return Cat("<error: ", conn.status().message(), ">");
  auto v = shardyard::testing::QueryValue(conn->get(), sql);
  return v.ok() ? *v : Cat("<error: ", v.status().message(), ">");
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace shardyard::migrate::testing
