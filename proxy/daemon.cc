// Implements the daemon: one io_context run by `workers` threads, the accept loop, signal
// handling (SIGHUP reload, SIGTERM graceful, SIGINT immediate), and the pools' maintenance tick.
#include "proxy/daemon.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "common/crypto.h"
#include "common/log.h"
#include "common/pg_error.h"
#include "common/strings.h"
#include "proxy/client_session.h"
#include "proxy/spawn.h"
#include "router/route.h"

namespace shardyard::proxy {
namespace {

// How often pool timers are checked: the resolution of query_wait_timeout, idle timeouts, etc.
constexpr auto kTickInterval = std::chrono::milliseconds(100);
// SCRAM iterations for secrets derived from plain passwords (PostgreSQL's default).
constexpr int kScramIterations = 4096;

std::string PoolKey(const std::string& db, const std::string& user, const router::NodeId& node) {
  return Cat(db, std::string_view("\0", 1), user, std::string_view("\0", 1), node.ToString());
}

// The server target for a node of a database, as seen by `user`.
std::shared_ptr<ServerTarget> TargetFor(const config::Config& cfg, const config::Database& db,
                                        const config::User* user, const std::string& user_name,
                                        const router::NodeId& node) {
  auto t = std::make_shared<ServerTarget>();
  const config::Shard& shard = db.shards.at(static_cast<size_t>(node.shard));
  t->endpoint = node.role == router::NodeRole::kPrimary
                    ? shard.primary
                    : shard.replicas.at(static_cast<size_t>(node.replica));
  t->database = db.server_database;
  t->user = user_name;
  if (user != nullptr) {
    t->password = user->server_password.empty() ? user->password : user->server_password;
  }
  t->connect_timeout = cfg.pool.server_connect_timeout;
  return t;
}

bool SameTarget(const ServerTarget& a, const ServerTarget& b) {
  return a.endpoint == b.endpoint && a.database == b.database && a.user == b.user &&
         a.password == b.password && a.connect_timeout == b.connect_timeout;
}

thread_local Executor* t_executor = nullptr;
thread_local int t_worker = 0;

}  // namespace

Executor CurrentExecutor() { return *t_executor; }
int CurrentWorker() { return t_worker; }
void SetCurrentWorker(const Executor& executor, int index) {
  t_executor = new Executor(executor);  // lives as long as the thread's worker
  t_worker = index;
}

pool::PoolLimits LimitsFrom(const config::PoolSettings& s) {
  pool::PoolLimits l;
  l.size = s.size;
  l.min_size = s.min_size;
  l.reserve_size = s.reserve_size;
  l.reserve_timeout = s.reserve_timeout;
  l.query_wait_timeout = s.query_wait_timeout;
  l.server_idle_timeout = s.server_idle_timeout;
  l.server_lifetime = s.server_lifetime;
  l.server_login_retry = s.server_login_retry;
  l.pipelining = s.pipelining && s.mode == config::PoolMode::kTransaction;
  return l;
}

// ---------------------------------------------------------------------------------------------

std::pair<int32_t, int32_t> ClientRegistry::Register(
    const std::shared_ptr<ClientSession>& session) {
  int32_t key = static_cast<int32_t>(crypto::RandomUint32());
  std::lock_guard lock(mu_);
  if (next_ == 0) next_ = static_cast<int32_t>(crypto::RandomUint32() & 0x3fffffff) + 1;
  int32_t pid;
  do {
    pid = next_;
    next_ = next_ >= 0x7ffffffe ? 1 : next_ + 1;
  } while (entries_.contains(pid));
  entries_[pid] = Entry{session.get(), key};
  return {pid, key};
}

void ClientRegistry::Unregister(int32_t process_id) {
  std::lock_guard lock(mu_);
  entries_.erase(process_id);
}

std::shared_ptr<ClientSession> ClientRegistry::Find(int32_t process_id, int32_t secret_key) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(process_id);
  if (it == entries_.end()) return nullptr;
  int32_t expected = it->second.secret_key;
  if (!crypto::ConstantTimeEqual(
          {reinterpret_cast<const uint8_t*>(&expected), sizeof(expected)},
          {reinterpret_cast<const uint8_t*>(&secret_key), sizeof(secret_key)})) {
    return nullptr;
  }
  return it->second.session->weak_from_this().lock();
}

std::vector<std::shared_ptr<ClientSession>> ClientRegistry::All() {
  std::vector<std::shared_ptr<ClientSession>> out;
  std::lock_guard lock(mu_);
  out.reserve(entries_.size());
  for (auto& [pid, e] : entries_) {
    if (auto s = e.session->weak_from_this().lock()) out.push_back(std::move(s));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::unique_ptr<Daemon::Worker>> Daemon::MakeWorkers(int count) {
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < count; ++i) workers.push_back(std::make_unique<Worker>());
  return workers;
}

Daemon::Daemon(std::shared_ptr<const config::Config> config, std::string config_path)
    : config_path_(std::move(config_path)),
      config_(std::move(config)),
      workers_(MakeWorkers(config_->EffectiveWorkers())),
      steering_(static_cast<int>(workers_.size())),
      signals_(workers_[0]->io.get_executor(), SIGHUP, SIGTERM, SIGINT),
      maintenance_timer_(workers_[0]->io.get_executor()) {}

Daemon::~Daemon() = default;

std::shared_ptr<const config::Config> Daemon::config() const {
  std::lock_guard lock(config_mu_);
  return config_;
}

bool Daemon::AdmitClient(int max_clients) {
  int n = client_count_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n > max_clients) {
    client_count_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void Daemon::ClientGone() { client_count_.fetch_sub(1, std::memory_order_relaxed); }

int Daemon::Run() {
  auto cfg = config();
  SetLogLevel(cfg->log_level);
  for (const auto& w : config::ConfigWarnings(*cfg)) SY_LOG_WARNING("%s", w);
  error_code ec;
  auto address = asio::ip::make_address(cfg->listen.host, ec);
  if (ec) {
    // A host name: resolve it once.
    Resolver resolver(workers_[0]->io.get_executor());
    auto results = resolver.resolve(cfg->listen.host, std::to_string(cfg->listen.port), ec);
    if (ec || results.empty()) {
      SY_LOG_ERROR("cannot resolve listen.host \"%s\": %s", cfg->listen.host, ec.message());
      return 1;
    }
    address = results.begin()->endpoint().address();
  }
  auto port = Listen(tcp::endpoint(address, cfg->listen.port));
  if (!port.ok()) {
    SY_LOG_ERROR("cannot listen on %s: %s", cfg->listen.ToString(), port.status().message());
    return 1;
  }
  SY_LOG_INFO("shardyard listening on %s:%d with %d worker threads (%s pooling)",
              address.to_string(), *port, static_cast<int>(workers_.size()),
              config::PoolModeName(cfg->pool.mode));

  Executor main = workers_[0]->io.get_executor();
  for (size_t i = 0; i < workers_.size(); ++i) {
    Spawn(
        workers_[i]->io.get_executor(), [this, i] { return Accept(i); }, "accept loop");
  }
  Spawn(
      main, [this] { return Signals(); }, "signal handler");
  Spawn(
      main, [this] { return Maintenance(); }, "maintenance");

  for (size_t i = 1; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    w->thread = std::thread([w, i] {
      SetCurrentWorker(w->io.get_executor(), static_cast<int>(i));
      w->io.run();
    });
  }
  SetCurrentWorker(main, 0);
  workers_[0]->io.run();
  for (size_t i = 1; i < workers_.size(); ++i) workers_[i]->thread.join();
  SY_LOG_INFO("shardyard stopped");
  return 0;
}

absl::StatusOr<uint16_t> Daemon::Listen(tcp::endpoint endpoint) {
  using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  error_code ec;
  // A probe without SO_REUSEPORT fails if anything already listens there: otherwise a second
  // shardyard on the same port would silently share its clients.
  {
    Acceptor probe(workers_[0]->io.get_executor());
    probe.open(endpoint.protocol(), ec);
    if (!ec) probe.set_option(Acceptor::reuse_address(true), ec);
    if (!ec) probe.bind(endpoint, ec);
    if (ec) return absl::UnavailableError(ec.message());
    endpoint.port(probe.local_endpoint().port());  // resolves port 0 once for all workers
  }
  for (auto& w : workers_) {
    w->acceptor.open(endpoint.protocol(), ec);
    if (!ec) w->acceptor.set_option(Acceptor::reuse_address(true), ec);
    if (!ec) w->acceptor.set_option(ReusePort(true), ec);
    if (!ec) w->acceptor.bind(endpoint, ec);
    if (!ec) w->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(ec.message());
  }
  DeferAccept(config()->tcp_defer_accept);
  if (workers_.size() > 1 && !steering_.Start(workers_[0]->acceptor.native_handle())) {
    SY_LOG_INFO("accept steering unavailable: the kernel's hash spreads new connections");
  }
  return endpoint.port();
}

void Daemon::DeferAccept(Duration wait) {
  // A PostgreSQL client speaks first, so a connection is handed over with its StartupMessage (or
  // SSLRequest) already there: accepting it and reading its first message take one wake-up, not
  // two, and connections that never send anything cost the kernel a little, not a session.
  // Whole seconds, rounded up; the kernel counts them in SYN-ACK retransmissions.
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(wait).count();
  const int value = static_cast<int>(std::min<int64_t>(seconds, 3600));
  for (auto& w : workers_) {
    if (!w->acceptor.is_open()) continue;
    if (::setsockopt(w->acceptor.native_handle(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &value,
                     sizeof value) != 0) {
      SY_LOG_WARNING("cannot set TCP_DEFER_ACCEPT on the listening socket: %s",
                     std::strerror(errno));
      return;
    }
  }
}

Task<> Daemon::Accept(size_t worker) {
  Acceptor& acceptor = workers_[worker]->acceptor;
  while (true) {
    // Each worker accepts on its own socket; its clients live on its event loop.
    // accept(2) reports the peer's address anyway: kept now, it costs no getpeername later.
    tcp::endpoint peer;
    auto [ec, socket] = co_await acceptor.async_accept(peer, kAwait);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of file descriptors and the like: log, pause briefly, keep serving the rest.
      SY_LOG_WARNING("accept failed: %s", ec.message());
      Timer pause(CurrentExecutor());
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(kAwait);
      continue;
    }
    auto session = std::make_shared<ClientSession>(
        *this, std::move(socket), static_cast<int>(worker),
        next_client_id_.fetch_add(1, std::memory_order_relaxed),
        PeerAddress::From(peer.data(), static_cast<socklen_t>(peer.size())));
    steering_.SessionOpened(static_cast<int>(worker));  // ~ClientSession: SessionEnded
    session->Start();
  }
}

Task<> Daemon::Signals() {
  while (true) {
    auto [ec, signo] = co_await signals_.async_wait(kAwait);
    if (ec) co_return;
    switch (signo) {
      case SIGHUP:
        Reload();
        break;
      case SIGTERM:
        SY_LOG_INFO("SIGTERM: no new connections; waiting for transactions to finish (up to %s)",
                    FormatDuration(config()->shutdown_timeout));
        BeginShutdown(false);
        break;
      case SIGINT:
        SY_LOG_INFO("SIGINT: closing every connection now");
        BeginShutdown(true);
        break;
      default:
        break;
    }
  }
}

void Daemon::BeginShutdown(bool immediate) {
  if (!shutting_down_.exchange(true)) {
    shutdown_deadline_ = std::chrono::steady_clock::now() + config()->shutdown_timeout;
    // Each acceptor belongs to its worker's thread: close it there.
    for (auto& w : workers_) {
      asio::post(w->io, [w = w.get()] {
        error_code ignored;
        w->acceptor.close(ignored);
      });
    }
  }
  if (immediate) shutdown_deadline_ = std::chrono::steady_clock::now();
  for (auto& session : clients_.All()) session->Shutdown(immediate);
  std::lock_guard lock(pools_mu_);
  for (auto& [key, pool] : pools_) {
    pool->CloseIdleAndFailWaiters(PgFatalStatus(absl::StatusCode::kUnavailable,
                                                sqlstate::kAdminShutdown,
                                                "terminating connection due to administrator "
                                                "command"));
  }
}

void Daemon::StopNow() {
  if (stopped_.exchange(true)) return;
  error_code ignored;
  signals_.cancel(ignored);
  maintenance_timer_.cancel();
  for (auto& w : workers_) {
    w->guard.reset();
    w->io.stop();
  }
}

Task<> Daemon::Maintenance() {
  while (!stopped_) {
    maintenance_timer_.expires_after(kTickInterval);
    auto [ec] = co_await maintenance_timer_.async_wait(kAwait);
    if (ec && stopped_) co_return;
    auto now = pool::Clock::now();
    std::vector<std::shared_ptr<Pool>> pools;
    {
      std::lock_guard lock(pools_mu_);
      pools.reserve(pools_.size());
      for (auto& [key, pool] : pools_) pools.push_back(pool);
    }
    for (auto& pool : pools) pool->Tick(now);
    // max_db_connections: a pool whose clients wait for a slot another pool of the same
    // database holds idle gets one of those slots.
    for (auto& starving : pools) {
      if (!starving->starved_by_gate()) continue;
      for (auto& other : pools) {
        if (other != starving && other->gate() == starving->gate() && other->EvictIdle(1) > 0) {
          starving->Tick(now);
          break;
        }
      }
    }
    if (shutting_down_) {
      int open = 0;
      for (auto& pool : pools) {
        PoolStats s = pool->stats();
        open += s.active + s.connecting;
      }
      bool clients_left = !clients_.All().empty();
      if (std::chrono::steady_clock::now() >= shutdown_deadline_ && clients_left) {
        // The grace period is over: close whatever is still running.
        for (auto& session : clients_.All()) session->Shutdown(true);
      }
      if (!clients_left && open == 0) {
        for (auto& pool : pools) pool->CloseIdleAndFailWaiters(absl::CancelledError("shutdown"));
        StopNow();
        co_return;
      }
    }
  }
}

void Daemon::Reload() {
  auto result = config::LoadConfigFile(config_path_);
  if (!result.config) {
    SY_LOG_ERROR("SIGHUP: %s has %d problem(s); keeping the current configuration", config_path_,
                 static_cast<int>(result.errors.size()));
    for (const auto& e : result.errors) SY_LOG_ERROR("  %s", e.ToString());
    return;
  }
  auto fresh = std::make_shared<const config::Config>(*std::move(result.config));
  auto old = config();
  if (!(fresh->listen == old->listen)) {
    SY_LOG_WARNING("SIGHUP: listen changed to %s; this takes effect only after a restart",
                   fresh->listen.ToString());
  }
  if (fresh->workers != old->workers) {
    SY_LOG_WARNING("SIGHUP: workers changed; this takes effect only after a restart");
  }
  if (fresh->tcp_defer_accept != old->tcp_defer_accept) DeferAccept(fresh->tcp_defer_accept);
  SetLogLevel(fresh->log_level);
  for (const auto& w : config::ConfigWarnings(*fresh)) SY_LOG_WARNING("SIGHUP: %s", w);
  {
    std::lock_guard lock(config_mu_);
    config_ = fresh;
  }
  // Pools pick up new limits and targets; pools of removed databases or users keep serving the
  // clients they have (new logins are refused by the new config) until they are idle.
  std::lock_guard lock(pools_mu_);
  for (auto& [db_name, gate] : gates_) gate->set_max(fresh->pool.max_db_connections);
  for (auto& [key, pool] : pools_) {
    std::vector<std::string_view> parts = Split(key, '\0');
    const config::Database* db = fresh->FindDatabase(parts[0]);
    if (db == nullptr) continue;
    const config::User* user = fresh->FindUser(parts[1]);
    router::RoutingContext ctx{db};
    auto route = router::ComputeRoute(ctx);
    if (!route.ok()) continue;
    auto target = TargetFor(*fresh, *db, user, std::string(parts[1]), route->node);
    // Server connections survive a reload unless what they logged in with changed.
    std::shared_ptr<const ServerTarget> current = pool->target();
    target->generation = SameTarget(*target, *current) ? current->generation : ++target_generation_;
    pool->Reconfigure(LimitsFrom(fresh->pool), fresh->pool.mode, target);
  }
  SY_LOG_INFO("SIGHUP: configuration reloaded from %s (%d databases, %d users)", config_path_,
              static_cast<int>(fresh->databases.size()), static_cast<int>(fresh->users.size()));
}

absl::StatusOr<std::shared_ptr<Pool>> Daemon::PoolFor(const config::Config& cfg,
                                                      const config::Database& db,
                                                      const std::string& user_name) {
  router::RoutingContext ctx{&db};
  auto route = router::ComputeRoute(ctx);
  if (!route.ok()) return route.status();
  std::string key = PoolKey(db.name, user_name, route->node);
  std::lock_guard lock(pools_mu_);
  auto it = pools_.find(key);
  if (it != pools_.end()) return it->second;
  auto& gate = gates_[db.name];
  if (gate == nullptr) gate = std::make_shared<pool::ConnectionGate>(cfg.pool.max_db_connections);
  auto target = TargetFor(cfg, db, cfg.FindUser(user_name), user_name, route->node);
  target->generation = target_generation_;
  std::string name = Cat(db.name, "/", user_name, "@", target->endpoint.ToString());
  auto pool = std::make_shared<Pool>(std::move(name), LimitsFrom(cfg.pool), cfg.pool.mode,
                                     std::move(target), gate);
  pools_[key] = pool;
  return pool;
}

ScramSecret Daemon::ScramSecretFor(const config::User& user) {
  if (user.password.starts_with("SCRAM-SHA-256$")) {
    auto parsed = ScramSecret::Parse(user.password);
    if (parsed.ok()) return *parsed;  // the config loader already validated it
  }
  std::lock_guard lock(scram_mu_);
  auto it = scram_secrets_.find(user.name);
  if (it != scram_secrets_.end() && it->second.first == user.password) return it->second.second;
  // Derived once per (user, password): PBKDF2 is deliberately slow.
  std::string salt(16, '\0');
  crypto::RandomBytes({reinterpret_cast<uint8_t*>(salt.data()), salt.size()});
  ScramSecret secret = ScramSecret::FromPassword(user.password, std::move(salt), kScramIterations);
  scram_secrets_[user.name] = {user.password, secret};
  return secret;
}

}  // namespace shardyard::proxy
