// Validates a parsed YAML tree into a Config, reporting every unknown key, wrong type and bad
// value.
#include "config/config.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <span>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/crypto.h"
#include "common/scram_secret.h"
#include "common/strings.h"
#include "config/yaml_adapter.h"

namespace shardyard::config {

std::string_view PoolModeName(PoolMode mode) {
  switch (mode) {
    case PoolMode::kSession:
      return "session";
    case PoolMode::kTransaction:
      return "transaction";
    case PoolMode::kStatement:
      return "statement";
  }
  return "transaction";
}

std::string_view AuthTypeName(AuthType type) {
  switch (type) {
    case AuthType::kTrust:
      return "trust";
    case AuthType::kMd5:
      return "md5";
    case AuthType::kScramSha256:
      return "scram-sha-256";
  }
  return "scram-sha-256";
}

SecretKind ClassifySecret(std::string_view secret) {
  if (crypto::IsMd5Secret(secret)) return SecretKind::kMd5;
  if (secret.starts_with("SCRAM-SHA-256$")) return SecretKind::kScramSha256;
  return SecretKind::kPlain;
}

std::string Endpoint::ToString() const { return Cat(host, ":", port); }

const Database* Config::FindDatabase(std::string_view name) const {
  for (const auto& db : databases) {
    if (db.name == name) return &db;
  }
  return nullptr;
}

const User* Config::FindUser(std::string_view name) const {
  for (const auto& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

int Config::EffectiveWorkers() const {
  if (workers > 0) return workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

std::vector<std::string> ConfigWarnings(const Config& config) {
  std::vector<std::string> warnings;
  for (const Database& db : config.databases) {
    if (db.shards.empty()) continue;
    const size_t first_replicas = db.shards[0].replicas.size();
    const size_t more_shards = db.shards.size() - 1;
    size_t more_replicas = 0;
    for (size_t i = 1; i < db.shards.size(); ++i) more_replicas += db.shards[i].replicas.size();
    if (first_replicas == 0 && more_shards == 0) continue;

    std::vector<std::string> unused;
    if (first_replicas > 0) {
      unused.push_back(
          Cat(first_replicas, first_replicas == 1 ? " replica" : " replicas", " of shard 0"));
    }
    if (more_shards > 0) {
      std::string shards = more_shards == 1 ? "shard 1" : Cat("shards 1-", more_shards);
      if (more_replicas > 0) {
        Append(&shards, " (with ", more_replicas, more_replicas == 1 ? " replica)" : " replicas)");
      }
      unused.push_back(std::move(shards));
    }
    const bool plural = first_replicas + more_shards > 1;
    const bool replicas = first_replicas + more_replicas > 0;
    std::string_view until = replicas && more_shards > 0 ? "read/write splitting and sharding land"
                             : replicas                  ? "read/write splitting lands"
                                                         : "sharding lands";
    warnings.push_back(Cat("database \"", db.name, "\": ", Join(unused, " and "),
                           plural ? " are" : " is",
                           " accepted but not used yet: Shardyard routes every query to shard 0's "
                           "primary (",
                           db.shards[0].primary.ToString(), ") until ", until));
  }
  return warnings;
}

std::string ConfigError::ToString() const {
  std::string out = file;
  if (line > 0) Append(&out, ":", line);
  Append(&out, ": ");
  if (!key.empty()) Append(&out, key, ": ");
  Append(&out, why);
  return out;
}

namespace {

using Kind = YamlNode::Kind;

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kNull:
      return "nothing";
    case Kind::kScalar:
      return "a single value";
    case Kind::kSequence:
      return "a list";
    case Kind::kMap:
      return "a mapping";
  }
  return "?";
}

// The fields of one YAML mapping, checked against the keys the section allows.
class Section {
 public:
  Section(const YamlNode* node, std::string path) : node_(node), path_(std::move(path)) {}
  const YamlNode* Get(std::string_view key) const {
    if (node_ == nullptr) return nullptr;
    for (const auto& [k, v] : node_->entries) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  std::string Path(std::string_view key) const {
    return path_.empty() ? std::string(key) : Cat(path_, ".", key);
  }
  int line() const { return node_ ? node_->line : 0; }

 private:
  const YamlNode* node_;
  std::string path_;
};

class Validator {
 public:
  explicit Validator(std::string file) : file_(std::move(file)) {}

  void Error(int line, std::string key, std::string why) {
    errors_.push_back({file_, line, std::move(key), std::move(why)});
  }
  std::vector<ConfigError> TakeErrors() { return std::move(errors_); }

  // Opens a mapping, reporting unknown and repeated keys. Returns nullopt if `node` is no mapping.
  std::optional<Section> OpenMap(const YamlNode& node, const std::string& path,
                                 std::initializer_list<std::string_view> allowed) {
    if (node.kind != Kind::kMap) {
      Error(node.line, path, Cat("must be a mapping, not ", KindName(node.kind)));
      return std::nullopt;
    }
    absl::flat_hash_set<std::string_view> seen;
    for (size_t i = 0; i < node.entries.size(); ++i) {
      const std::string& key = node.entries[i].first;
      std::string full = path.empty() ? key : Cat(path, ".", key);
      bool known = false;
      for (std::string_view a : allowed) known |= (a == key);
      if (!known) {
        Error(node.entry_lines[i], full,
              Cat("unknown key (allowed here: ", Join(allowed, ", "), ")"));
      } else if (!seen.insert(key).second) {
        Error(node.entry_lines[i], full, "given more than once");
      }
    }
    return Section(&node, path);
  }

  // Each reader leaves `*out` untouched when the key is absent or invalid.
  void ReadInt(const Section& s, std::string_view key, int64_t min, int64_t max, int* out) {
    int64_t v = 0;
    if (ReadInt64(s, key, min, max, &v)) *out = static_cast<int>(v);
  }

  bool ReadInt64(const Section& s, std::string_view key, int64_t min, int64_t max, int64_t* out) {
    const YamlNode* n = s.Get(key);
    if (n == nullptr) return false;
    int64_t v = 0;
    if (n->kind != Kind::kScalar || n->quoted || !ParseInt(n->scalar, &v)) {
      Error(n->line, s.Path(key), Cat("must be a whole number, not ", Describe(*n)));
      return false;
    }
    if (v < min || v > max) {
      Error(n->line, s.Path(key), Cat("must be between ", min, " and ", max, " (got ", v, ")"));
      return false;
    }
    *out = v;
    return true;
  }

  void ReadDuration(const Section& s, std::string_view key, bool allow_zero, Duration* out) {
    const YamlNode* n = s.Get(key);
    if (n == nullptr) return;
    if (n->kind != Kind::kScalar) {
      Error(n->line, s.Path(key), Cat("must be a duration like \"5s\", not ", Describe(*n)));
      return;
    }
    auto d = ParseDuration(n->scalar);
    if (!d.ok()) {
      Error(n->line, s.Path(key), std::string(d.status().message()));
      return;
    }
    if (!allow_zero && d->count() == 0) {
      Error(n->line, s.Path(key), "must be more than 0");
      return;
    }
    *out = *d;
  }

  void ReadByteSize(const Section& s, std::string_view key, int64_t min, int64_t max,
                    int64_t* out) {
    const YamlNode* n = s.Get(key);
    if (n == nullptr) return;
    if (n->kind != Kind::kScalar) {
      Error(n->line, s.Path(key), Cat("must be a size like \"64MB\", not ", Describe(*n)));
      return;
    }
    auto v = ParseByteSize(n->scalar);
    if (!v.ok()) {
      Error(n->line, s.Path(key), std::string(v.status().message()));
      return;
    }
    if (*v < min || *v > max) {
      Error(n->line, s.Path(key),
            Cat("must be between ", min, " and ", max, " bytes (got ", *v, ")"));
      return;
    }
    *out = *v;
  }

  // A non-empty string. Returns false (after reporting) if present but wrong.
  bool ReadString(const Section& s, std::string_view key, std::string* out,
                  bool allow_empty = false) {
    const YamlNode* n = s.Get(key);
    if (n == nullptr) return false;
    if (n->kind != Kind::kScalar) {
      Error(n->line, s.Path(key), Cat("must be a string, not ", Describe(*n)));
      return false;
    }
    if (!allow_empty && n->scalar.empty()) {
      Error(n->line, s.Path(key), "must not be empty");
      return false;
    }
    *out = n->scalar;
    return true;
  }

  template <typename Enum>
  bool ReadEnum(const Section& s, std::string_view key,
                std::span<const std::pair<std::string_view, Enum>> choices, Enum* out) {
    const YamlNode* n = s.Get(key);
    if (n == nullptr) return false;
    std::vector<std::string_view> names;
    for (const auto& [name, value] : choices) {
      names.push_back(name);
      if (n->kind == Kind::kScalar && ToLowerAscii(n->scalar) == name) {
        *out = value;
        return true;
      }
    }
    Error(n->line, s.Path(key),
          Cat("must be one of ", Join(names, ", "), " (got ", Describe(*n), ")"));
    return false;
  }

  void Require(const Section& s, std::string_view key) {
    if (s.Get(key) == nullptr) Error(s.line(), s.Path(key), "is required");
  }

 private:
  static std::string Describe(const YamlNode& n) {
    if (n.kind == Kind::kScalar) return Cat("\"", n.scalar, "\"");
    return std::string(KindName(n.kind));
  }

  std::string file_;
  std::vector<ConfigError> errors_;
};

constexpr std::array<std::pair<std::string_view, AuthType>, 3> kAuthTypes = {{
    {"trust", AuthType::kTrust},
    {"md5", AuthType::kMd5},
    {"scram-sha-256", AuthType::kScramSha256},
}};

constexpr std::array<std::pair<std::string_view, PoolMode>, 3> kPoolModes = {{
    {"transaction", PoolMode::kTransaction},
    {"session", PoolMode::kSession},
    {"statement", PoolMode::kStatement},
}};

void ReadEndpoint(Validator& v, const YamlNode& node, const std::string& path, Endpoint* out) {
  auto s = v.OpenMap(node, path, {"host", "port"});
  if (!s) return;
  v.Require(*s, "host");
  v.Require(*s, "port");
  v.ReadString(*s, "host", &out->host);
  int port = out->port;
  v.ReadInt(*s, "port", 1, 65535, &port);
  out->port = static_cast<uint16_t>(port);
}

constexpr std::pair<std::string_view, bool> kBooleanNames[] = {
    {"true", true}, {"false", false}, {"on", true}, {"off", false}, {"yes", true}, {"no", false}};
constexpr std::span<const std::pair<std::string_view, bool>> kBooleans(kBooleanNames);

void ReadPool(Validator& v, const YamlNode& node, PoolSettings* p) {
  auto s = v.OpenMap(
      node, "pool",
      {"mode", "size", "min_size", "reserve_size", "reserve_timeout", "max_client_connections",
       "max_db_connections", "query_wait_timeout", "server_connect_timeout", "server_login_retry",
       "server_idle_timeout", "server_lifetime", "client_idle_timeout", "idle_transaction_timeout",
       "pipelining"});
  if (!s) return;
  v.ReadEnum<PoolMode>(*s, "mode", kPoolModes, &p->mode);
  constexpr int64_t kMaxConns = 100000;
  v.ReadInt(*s, "size", 1, kMaxConns, &p->size);
  v.ReadInt(*s, "min_size", 0, kMaxConns, &p->min_size);
  v.ReadInt(*s, "reserve_size", 0, kMaxConns, &p->reserve_size);
  v.ReadDuration(*s, "reserve_timeout", true, &p->reserve_timeout);
  v.ReadInt(*s, "max_client_connections", 1, 10'000'000, &p->max_client_connections);
  v.ReadInt(*s, "max_db_connections", 0, kMaxConns, &p->max_db_connections);
  v.ReadDuration(*s, "query_wait_timeout", true, &p->query_wait_timeout);
  v.ReadDuration(*s, "server_connect_timeout", false, &p->server_connect_timeout);
  v.ReadDuration(*s, "server_login_retry", true, &p->server_login_retry);
  v.ReadDuration(*s, "server_idle_timeout", true, &p->server_idle_timeout);
  v.ReadDuration(*s, "server_lifetime", true, &p->server_lifetime);
  v.ReadDuration(*s, "client_idle_timeout", true, &p->client_idle_timeout);
  v.ReadDuration(*s, "idle_transaction_timeout", true, &p->idle_transaction_timeout);
  v.ReadEnum<bool>(*s, "pipelining", kBooleans, &p->pipelining);
  if (p->min_size > p->size) {
    const YamlNode* n = s->Get("min_size");
    v.Error(n ? n->line : s->line(), "pool.min_size",
            Cat("must not exceed pool.size (", p->min_size, " > ", p->size, ")"));
  }
  if (p->max_db_connections > 0 && p->min_size > p->max_db_connections) {
    const YamlNode* n = s->Get("min_size");
    v.Error(n ? n->line : s->line(), "pool.min_size",
            Cat("must not exceed pool.max_db_connections (", p->min_size, " > ",
                p->max_db_connections, ")"));
  }
}

void ReadUsers(Validator& v, const YamlNode& node, AuthType global_auth, std::vector<User>* out) {
  if (node.kind != Kind::kSequence) {
    v.Error(node.line, "users", Cat("must be a list, not ", KindName(node.kind)));
    return;
  }
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < node.items.size(); ++i) {
    const YamlNode& item = node.items[i];
    std::string path = Cat("users[", i, "]");
    auto s = v.OpenMap(item, path, {"name", "password", "auth_type", "server_password"});
    if (!s) continue;
    User user;
    v.Require(*s, "name");
    if (v.ReadString(*s, "name", &user.name) && !names.insert(user.name).second) {
      v.Error(s->Get("name")->line, s->Path("name"),
              Cat("user \"", user.name, "\" is defined more than once"));
    }
    v.ReadString(*s, "password", &user.password, /*allow_empty=*/true);
    v.ReadString(*s, "server_password", &user.server_password);
    AuthType auth = global_auth;
    if (v.ReadEnum<AuthType>(*s, "auth_type", kAuthTypes, &auth)) user.auth_type = auth;

    const YamlNode* pw = s->Get("password");
    int pw_line = pw ? pw->line : item.line;
    SecretKind kind = ClassifySecret(user.password);
    if (kind == SecretKind::kScramSha256 && !ScramSecret::Parse(user.password).ok()) {
      v.Error(pw_line, s->Path("password"),
              "looks like a SCRAM secret but is not of the form "
              "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>");
    }
    if (auth != AuthType::kTrust && user.password.empty()) {
      v.Error(pw_line, s->Path("password"),
              Cat("is required when auth_type is ", AuthTypeName(auth)));
    }
    if (auth == AuthType::kMd5 && kind == SecretKind::kScramSha256) {
      v.Error(pw_line, s->Path("password"),
              "a SCRAM secret cannot check md5 logins; give the plain password or an md5 hash");
    }
    if (auth == AuthType::kScramSha256 && kind == SecretKind::kMd5) {
      v.Error(pw_line, s->Path("password"),
              "an md5 hash cannot check scram-sha-256 logins; give the plain password or a SCRAM "
              "secret, or set auth_type: md5");
    }
    if (kind == SecretKind::kMd5) {
      user.md5_secret = user.password;
    } else if (kind == SecretKind::kPlain) {
      user.md5_secret = crypto::Md5Secret(user.name, user.password);
    }
    out->push_back(std::move(user));
  }
}

void ReadDatabases(Validator& v, const YamlNode& node, std::vector<Database>* out) {
  if (node.kind != Kind::kSequence) {
    v.Error(node.line, "databases", Cat("must be a list, not ", KindName(node.kind)));
    return;
  }
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < node.items.size(); ++i) {
    const YamlNode& item = node.items[i];
    std::string path = Cat("databases[", i, "]");
    auto s = v.OpenMap(item, path, {"name", "server_database", "shards"});
    if (!s) continue;
    Database db;
    v.Require(*s, "name");
    v.Require(*s, "shards");
    if (v.ReadString(*s, "name", &db.name) && !names.insert(db.name).second) {
      v.Error(s->Get("name")->line, s->Path("name"),
              Cat("database \"", db.name, "\" is defined more than once"));
    }
    if (!v.ReadString(*s, "server_database", &db.server_database)) db.server_database = db.name;
    if (const YamlNode* shards = s->Get("shards")) {
      if (shards->kind != Kind::kSequence || shards->items.empty()) {
        v.Error(shards->line, s->Path("shards"), "must be a non-empty list of shards");
      } else {
        for (size_t j = 0; j < shards->items.size(); ++j) {
          std::string spath = Cat(path, ".shards[", j, "]");
          auto ss = v.OpenMap(shards->items[j], spath, {"primary", "replicas"});
          if (!ss) continue;
          Shard shard;
          v.Require(*ss, "primary");
          if (const YamlNode* p = ss->Get("primary")) {
            ReadEndpoint(v, *p, ss->Path("primary"), &shard.primary);
          }
          if (const YamlNode* r = ss->Get("replicas")) {
            if (r->kind == Kind::kNull) {
              // "replicas:" with nothing after it means none.
            } else if (r->kind != Kind::kSequence) {
              v.Error(r->line, ss->Path("replicas"), "must be a list of {host, port}");
            } else {
              for (size_t k = 0; k < r->items.size(); ++k) {
                Endpoint e;
                ReadEndpoint(v, r->items[k], Cat(spath, ".replicas[", k, "]"), &e);
                shard.replicas.push_back(std::move(e));
              }
            }
          }
          db.shards.push_back(std::move(shard));
        }
      }
    }
    out->push_back(std::move(db));
  }
}

}  // namespace

LoadResult LoadConfigText(std::string_view text, const std::string& file_name) {
  LoadResult result;
  Validator v(file_name);
  auto root = ParseYaml(text);
  if (!root.ok()) {
    // "line N: message" from the adapter; keep the line in its own field.
    std::string msg(root.status().message());
    int line = 0;
    size_t colon = msg.find(": ");
    if (msg.starts_with("line ") && colon != std::string::npos &&
        ParseInt(std::string_view(msg).substr(5, colon - 5), &line)) {
      msg = msg.substr(colon + 2);
    }
    result.errors.push_back({file_name, line, "", Cat("YAML syntax error: ", msg)});
    return result;
  }
  Config cfg;
  cfg.source_path = file_name;
  auto top = v.OpenMap(
      *root, "",
      {"listen", "workers", "log_level", "auth_type", "max_message_size", "client_login_timeout",
       "tcp_defer_accept", "shutdown_timeout", "pool", "users", "databases"});
  if (top) {
    if (const YamlNode* n = top->Get("listen")) {
      auto s = v.OpenMap(*n, "listen", {"host", "port"});
      if (s) {
        v.ReadString(*s, "host", &cfg.listen.host);
        int port = cfg.listen.port;
        v.ReadInt(*s, "port", 0, 65535, &port);  // 0: any free port (tests)
        cfg.listen.port = static_cast<uint16_t>(port);
      }
    }
    v.ReadInt(*top, "workers", 0, 256, &cfg.workers);
    if (const YamlNode* n = top->Get("log_level")) {
      auto level = n->kind == Kind::kScalar ? ParseLogLevel(n->scalar)
                                            : absl::InvalidArgumentError("must be a string");
      if (level.ok()) {
        cfg.log_level = *level;
      } else {
        v.Error(n->line, "log_level", std::string(level.status().message()));
      }
    }
    v.ReadEnum<AuthType>(*top, "auth_type", kAuthTypes, &cfg.auth_type);
    v.ReadByteSize(*top, "max_message_size", 1024, int64_t{1} << 30, &cfg.max_message_size);
    v.ReadDuration(*top, "client_login_timeout", true, &cfg.client_login_timeout);
    v.ReadDuration(*top, "tcp_defer_accept", true, &cfg.tcp_defer_accept);
    v.ReadDuration(*top, "shutdown_timeout", true, &cfg.shutdown_timeout);
    if (const YamlNode* n = top->Get("pool")) ReadPool(v, *n, &cfg.pool);
    v.Require(*top, "users");
    v.Require(*top, "databases");
    if (const YamlNode* n = top->Get("users")) ReadUsers(v, *n, cfg.auth_type, &cfg.users);
    if (const YamlNode* n = top->Get("databases")) ReadDatabases(v, *n, &cfg.databases);
  }
  result.errors = v.TakeErrors();
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  if (result.errors.empty()) result.config = std::move(cfg);
  return result;
}

LoadResult LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.errors.push_back({path, 0, "", "cannot open the file"});
    return result;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return LoadConfigText(buffer.str(), path);
}

}  // namespace shardyard::config
