// The shardyard process: one event loop per worker thread, the listener, signals (reload,
// graceful and immediate shutdown), the registry of clients for cancels, and the pools.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/scram_secret.h"
#include "config/config.h"
#include "proxy/accept_steering.h"
#include "proxy/asio.h"
#include "proxy/pool.h"
#include "proxy/session_host.h"

namespace shardyard::proxy {

class ClientSession;

// Maps the BackendKeyData Shardyard gave each client to its session, for CancelRequests.
class ClientRegistry {
 public:
  // Assigns a unique process id and a random secret key.
  std::pair<int32_t, int32_t> Register(const std::shared_ptr<ClientSession>& session);
  void Unregister(int32_t process_id);
  // The session with this key, if the secret matches.
  std::shared_ptr<ClientSession> Find(int32_t process_id, int32_t secret_key);
  std::vector<std::shared_ptr<ClientSession>> All();

 private:
  // A raw pointer: sessions unregister in their destructor (under the mutex), and lookups
  // promote it with weak_from_this(), which fails for a session already being destroyed.
  struct Entry {
    ClientSession* session;
    int32_t secret_key;
  };
  std::mutex mu_;
  absl::flat_hash_map<int32_t, Entry> entries_;
  int32_t next_ = 0;
};

class Daemon : public SessionHost {
 public:
  explicit Daemon(std::shared_ptr<const config::Config> config, std::string config_path);
  ~Daemon();

  // Runs until shutdown; returns the process exit code.
  int Run();

  ClientRegistry& clients() { return clients_; }

  // SessionHost.
  std::shared_ptr<const config::Config> config() const override;
  bool shutting_down() const override { return shutting_down_.load(std::memory_order_relaxed); }
  bool AdmitClient(int max_clients) override;
  void ClientGone() override;
  // (Accept steering counts sessions per worker.)
  void SessionEnded(int worker) override { steering_.SessionClosed(worker); }
  absl::StatusOr<std::shared_ptr<Pool>> PoolFor(const config::Config& config,
                                                const config::Database& database,
                                                const std::string& user) override;
  // Derived once per plain password.
  ScramSecret ScramSecretFor(const config::User& user) override;
  std::pair<int32_t, int32_t> RegisterClient(
      const std::shared_ptr<ClientSession>& session) override {
    return clients_.Register(session);
  }
  void UnregisterClient(int32_t process_id) override { clients_.Unregister(process_id); }
  std::shared_ptr<ClientSession> FindClient(int32_t process_id, int32_t secret_key) override {
    return clients_.Find(process_id, secret_key);
  }

 private:
  // Accepts clients on worker `index`'s own listening socket.
  Task<> Accept(size_t index);
  // Opens one listening socket per worker on `endpoint` (SO_REUSEPORT: the kernel spreads
  // connections, no hand-off between threads). Returns the port actually bound.
  absl::StatusOr<uint16_t> Listen(tcp::endpoint endpoint);
  // Sets TCP_DEFER_ACCEPT on every worker's listening socket (config `tcp_defer_accept`).
  void DeferAccept(Duration wait);
  Task<> Signals();
  Task<> Maintenance();
  void Reload();
  void BeginShutdown(bool immediate);
  void StopNow();

  std::string config_path_;
  mutable std::mutex config_mu_;
  std::shared_ptr<const config::Config> config_;

  // One event loop per worker thread. Each client session lives on the worker whose listening
  // socket accepted it (see AcceptSteering); pools are shared, and a server connection moves to
  // the worker of the client it is lent to. Worker 0 also runs signals and the maintenance tick.
  struct Worker {
    asio::io_context io{1};
    asio::executor_work_guard<Executor> guard{io.get_executor()};
    Acceptor acceptor{io.get_executor()};
    std::thread thread;
  };
  static std::vector<std::unique_ptr<Worker>> MakeWorkers(int count);
  std::vector<std::unique_ptr<Worker>> workers_;
  AcceptSteering steering_;

  SignalSet signals_;
  Timer maintenance_timer_;

  ClientRegistry clients_;
  std::atomic<int> client_count_{0};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> stopped_{false};
  std::chrono::steady_clock::time_point shutdown_deadline_{};
  std::atomic<uint64_t> next_client_id_{1};

  std::mutex pools_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Pool>> pools_;  // "db\0user\0node"
  absl::flat_hash_map<std::string, std::shared_ptr<pool::ConnectionGate>> gates_;  // by db
  uint64_t target_generation_ = 0;

  std::mutex scram_mu_;
  absl::flat_hash_map<std::string, std::pair<std::string, ScramSecret>> scram_secrets_;
};

// Pool limits and server target as configured.
pool::PoolLimits LimitsFrom(const config::PoolSettings& settings);

}  // namespace shardyard::proxy
