// Implements the shardyard test fixture: config file, process start, port discovery, reload.
#include "tests/harness/shardyard.h"

#include <signal.h>

#include <fstream>
#include <regex>
#include <thread>

#include "common/strings.h"

namespace shardyard::testing {

std::string ShardyardBinary() {
  if (const char* bin = getenv("SHARDYARD_BIN")) return bin;
  return SHARDYARD_DEFAULT_BIN;
}

absl::StatusOr<std::unique_ptr<Shardyard>> Shardyard::Start(const std::string& yaml) {
  std::unique_ptr<Shardyard> s(new Shardyard());
  s->dir_ = MakeTempDir("sy-proxy", false);
  s->config_path_ = s->dir_ + "/shardyard.yaml";
  {
    std::ofstream out(s->config_path_);
    out << yaml;
  }
  auto daemon =
      Daemon::Start({ShardyardBinary(), "--config", s->config_path_}, s->dir_ + "/shardyard.log");
  if (!daemon.ok()) return daemon.status();
  s->daemon_ = *std::move(daemon);
  std::regex listening("listening on [0-9.]+:([0-9]+)");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    std::string log = s->daemon_->Log();
    if (std::regex_search(log, m, listening)) {
      s->port_ = static_cast<uint16_t>(std::stoi(m[1].str()));
      return s;
    }
    if (!s->daemon_->Running()) {
      return absl::InternalError(Cat("shardyard exited during startup:\n", log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError(Cat("shardyard did not start:\n", s->daemon_->Log()));
}

Shardyard::~Shardyard() {
  daemon_.reset();
  RemoveTree(dir_);
}

std::string Shardyard::ConnInfo(const std::string& dbname, const std::string& user,
                                const std::string& password, const std::string& extra) const {
  std::string s =
      Cat("host=127.0.0.1 port=", port_, " dbname=", dbname, " user=", user, " connect_timeout=10");
  if (!password.empty()) Append(&s, " password=", password);
  if (!extra.empty()) Append(&s, " ", extra);
  return s;
}

absl::Status Shardyard::Reload(const std::string& yaml) {
  {
    std::ofstream out(config_path_);
    out << yaml;
  }
  auto count = [this] {
    std::string log = daemon_->Log();
    int n = 0;
    for (std::string_view needle :
         {"SIGHUP: configuration reloaded", "keeping the current configuration"}) {
      for (size_t at = 0; (at = log.find(needle, at)) != std::string::npos; ++at) ++n;
    }
    return n;
  };
  int before = count();
  daemon_->Signal(SIGHUP);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (count() > before) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError("no reload log line");
}

std::string MakeConfig(const PgServer& pg, const ConfigOptions& o) {
  std::string yaml = Cat("listen: {host: 127.0.0.1, port: 0}\nworkers: ", o.workers,
                         "\nlog_level: ", o.log_level, "\n", o.top);
  Append(&yaml, "pool:\n", o.pool.empty() ? "  size: 20\n" : o.pool);
  Append(&yaml, "users:\n",
         o.users.empty() ? std::string("  - {name: app, password: secret}\n") : o.users);
  Append(&yaml, "databases:\n",
         o.databases.empty()
             ? Cat("  - name: app\n    shards:\n      - primary: {host: 127.0.0.1, port: ",
                   pg.port(), "}\n")
             : o.databases);
  return yaml;
}

absl::StatusOr<std::unique_ptr<PgServer>> StartAppServer(PgServer::Options options) {
  auto pg = PgServer::Start(options);
  if (!pg.ok()) return pg.status();
  if (auto st = (*pg)->CreateUser("app", "secret"); !st.ok()) return st;
  if (auto st = (*pg)->CreateDatabase("app", "app"); !st.ok()) return st;
  if (auto st =
          (*pg)->ExecSuper("SET ROLE app; CREATE TABLE items(id int PRIMARY KEY, v text); "
                           "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g",
                           "app");
      !st.ok()) {
    return st;
  }
  return pg;
}

int CountBackends(const PgServer& pg, const std::string& user) {
  auto conn = pg.ConnectSuper();
  if (!conn.ok()) return -1;
  auto v = QueryValue(conn->get(),
                      Cat("SELECT count(*) FROM pg_stat_activity WHERE usename = '", user, "'"));
  return v.ok() ? std::stoi(*v) : -1;
}

}  // namespace shardyard::testing
