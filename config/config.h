// Shardyard's configuration: the typed settings and the loader that validates a YAML file into
// them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "common/log.h"

namespace shardyard::config {

enum class PoolMode { kSession, kTransaction, kStatement };
std::string_view PoolModeName(PoolMode mode);

// How clients authenticate to Shardyard.
enum class AuthType { kTrust, kMd5, kScramSha256 };
std::string_view AuthTypeName(AuthType type);

// What a configured password is: the password itself, or a hash PostgreSQL also stores.
enum class SecretKind { kPlain, kMd5, kScramSha256 };
SecretKind ClassifySecret(std::string_view secret);

struct Endpoint {
  std::string host;
  uint16_t port = 5432;
  std::string ToString() const;  // "host:port"
  bool operator==(const Endpoint&) const = default;
};

struct Shard {
  Endpoint primary;
  std::vector<Endpoint> replicas;
  bool operator==(const Shard&) const = default;
};

struct Database {
  std::string name;             // what clients ask for
  std::string server_database;  // the name on the servers
  std::vector<Shard> shards;
  bool operator==(const Database&) const = default;
};

struct User {
  std::string name;
  std::string password;               // plain, md5..., or SCRAM-SHA-256$... secret
  std::optional<AuthType> auth_type;  // overrides Config::auth_type
  // Used to log in to servers when `password` is a hash that cannot be (e.g. SCRAM to an md5
  // server). Empty: use `password`.
  std::string server_password;
  // Derived from name and password when the config is loaded: what an md5 login is checked
  // against ("md5" and hex MD5(password || name), as PostgreSQL stores it), so a login hashes
  // once, not twice. Empty for SCRAM secrets.
  std::string md5_secret;
  bool operator==(const User&) const = default;
};

struct PoolSettings {
  PoolMode mode = PoolMode::kTransaction;
  int size = 20;  // server connections per (database, user, node)
  int min_size = 0;
  int reserve_size = 0;
  Duration reserve_timeout = std::chrono::seconds(5);
  int max_client_connections = 10000;
  int max_db_connections = 0;  // 0 = unlimited
  Duration query_wait_timeout = std::chrono::seconds(120);
  Duration server_connect_timeout = std::chrono::seconds(5);
  Duration server_login_retry = std::chrono::seconds(1);
  Duration server_idle_timeout = std::chrono::seconds(600);
  Duration server_lifetime = std::chrono::seconds(3600);
  Duration client_idle_timeout = Duration(0);       // 0 = never
  Duration idle_transaction_timeout = Duration(0);  // 0 = never
  // Transaction mode: a waiting client's plain statement is written behind a busy server's
  // last one, so the server finds it waiting (see docs/config.md).
  bool pipelining = true;
  bool operator==(const PoolSettings&) const = default;
};

struct Config {
  std::string source_path;
  Endpoint listen{"127.0.0.1", 6432};
  int workers = 0;  // 0 = one per core
  LogLevel log_level = LogLevel::kInfo;
  AuthType auth_type = AuthType::kScramSha256;
  int64_t max_message_size = int64_t{64} << 20;
  Duration client_login_timeout = std::chrono::seconds(60);
  // TCP_DEFER_ACCEPT on the listening sockets: the kernel hands over a connection only once the
  // client has sent its first bytes, or after this long (0: at once, as without the option).
  Duration tcp_defer_accept = std::chrono::seconds(45);
  Duration shutdown_timeout = std::chrono::seconds(30);
  PoolSettings pool;
  std::vector<User> users;
  std::vector<Database> databases;

  const Database* FindDatabase(std::string_view name) const;
  const User* FindUser(std::string_view name) const;
  AuthType AuthTypeFor(const User& user) const { return user.auth_type.value_or(auth_type); }
  // The number of worker threads to start (resolves 0 to the core count).
  int EffectiveWorkers() const;
};

// One problem found in a config file.
struct ConfigError {
  std::string file;
  int line = 0;     // 0 when the problem has no single line (e.g. a missing section)
  std::string key;  // dotted path, e.g. "pool.size" or "databases[0].shards[1].primary.port"
  std::string why;
  std::string ToString() const;  // "file:line: key: why"
};

struct LoadResult {
  std::optional<Config> config;     // set only when `errors` is empty
  std::vector<ConfigError> errors;  // every problem, in file order
};

// What a valid config asks for that Shardyard accepts but does not do yet: one sentence per
// database that lists replicas or more than one shard, since every query still goes to the first
// shard's primary (router::ComputeRoute). `--check` prints these and the daemon logs them at
// startup and on reload, so the wording lives here once.
std::vector<std::string> ConfigWarnings(const Config& config);

// Reads and validates a config file; collects every error rather than stopping at the first.
LoadResult LoadConfigFile(const std::string& path);
// The same for text already in memory; `file_name` is used in error messages.
LoadResult LoadConfigText(std::string_view text, const std::string& file_name);

}  // namespace shardyard::config
