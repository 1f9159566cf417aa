// A pool of server connections for one (database, user, backend node): drives pool::PoolCore
// with real connections, timers and waiting clients, across worker threads.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "config/config.h"
#include "pool/pool_core.h"
#include "pool/session_params.h"
#include "proxy/asio.h"
#include "proxy/server_conn.h"
#include "wire/backend_scanner.h"

namespace shardyard::proxy {

// What a server connection was left doing when its client went away; the reset uses it to
// bring the connection back to idle (or decides to close it).
struct ResetState {
  int pending_ready = 0;  // ReadyForQuery messages still owed for forwarded requests
  bool unsynced = false;  // extended-protocol messages sent after the last Sync
  bool copy_in = false;   // the server is waiting for COPY data
  // The client may have changed settings that were never read back: DISCARD ALL, whatever
  // the pool mode.
  bool discard_settings = false;
  // Where the session stopped reading the server's stream (possibly mid-message); it must
  // see ReadyForQuery (Z), CopyInResponse (G) and ParameterStatus (S).
  wire::BackendScanner scanner{"ZGS"};
};

// Per-pool numbers for logs and (later) metrics.
struct PoolStats {
  int open = 0;
  int idle = 0;
  int active = 0;
  int waiting = 0;
  int connecting = 0;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  // A parked coroutine continuation; always invoked on Waiter::executor.
  using AcquireHandler = absl::AnyInvocable<void(ServerConn*, absl::Status) &&>;

  // A client waiting for a server connection; lives in the client's coroutine frame. The
  // connection it gets is moved to its worker's event loop before use.
  struct Waiter {
    AcquireHandler handler;
    Executor executor;
    int home = 0;  // the client's worker
    // Called (outside the pool's lock) when the client has to queue, with the number of
    // clients queued ahead of it: a chance to give back memory it will not need while it waits.
    absl::AnyInvocable<void(int ahead)> on_queued;
    // Whether `handler` can take a server still busy with another client's request (a follow
    // grant: ServerConn::follow_grant), and wait for the hand-over. A coroutine's Acquire
    // cannot: it would use the server at once, beside the lead's pump.
    bool follows = false;
  };

  Pool(std::string name, pool::PoolLimits limits, config::PoolMode mode,
       std::shared_ptr<const ServerTarget> target, std::shared_ptr<pool::ConnectionGate> gate);

  const std::string& name() const { return name_; }
  config::PoolMode mode() const;

  // Hands out a server connection — at once from the idle list, or after waiting in FIFO
  // order — moved to the waiter's event loop. Fails with query_wait_timeout, a relayed server
  // login error, or a cancel. `waiter.executor` and `waiter.home` must be set.
  Task<std::pair<ServerConn*, absl::Status>> Acquire(Waiter& waiter);
  // Acquire's steps for callers without a coroutine. TryAcquire: an idle connection moved to
  // `executor`/`home`, or null when none is idle. Enqueue: queues `waiter` (its handler set),
  // or completes it at once; the handler always runs through a post on waiter.executor. A
  // server it receives must pass Accept before use (false: it was closed; acquire again).
  ServerConn* TryAcquire(const Executor& executor, int home);
  void Enqueue(Waiter& waiter);
  bool Accept(ServerConn* server, const Waiter& waiter);

  // Removes a waiting client from the queue and fails its wait with `why`. False if it was not
  // waiting (a server may already be on its way to it).
  bool CancelWait(Waiter& waiter, const absl::Status& why);

  // Pipelining: grants `server`, still busy with its client's last request, to the waiter
  // next in line on `home` (posted; server->follow_grant is set until it arrives). False when
  // pipelining is off or no waiter on `home` is next.
  bool PipelineTo(ServerConn* server, int home);

  // Returns a clean server (ReadyForQuery 'I', nothing outstanding).
  void Release(ServerConn* server);
  // Closes a checked-out server that cannot be reused.
  void Discard(ServerConn* server, CloseReason reason);
  // Brings a server left mid-request or mid-transaction back to idle (rollback, drain, or
  // DISCARD ALL in session mode) in the background, then releases or closes it.
  void ResetAndRelease(ServerConn* server, ResetState state);

  // Sends a CancelRequest for `server`'s current query; the server is not handed to another
  // client until the cancel has been delivered. `done`, if given, runs once it has been.
  void ForwardCancel(ServerConn* server, absl::AnyInvocable<void() &&> done = nullptr);
  // Returns once no cancel sent for `server` is still on its way (or the connection became
  // unusable): a late cancel would otherwise hit whatever runs next on the backend.
  Task<> CancelsLanded(ServerConn* server);

  // Timers: query_wait_timeout, reserve pool, login retry, idle timeout, lifetime, min size.
  void Tick(pool::TimePoint now);
  // Applies new limits / server target after a reload.
  void Reconfigure(pool::PoolLimits limits, config::PoolMode mode,
                   std::shared_ptr<const ServerTarget> target);
  // Closes up to `count` idle connections so another pool of the database can open one.
  int EvictIdle(int count);
  // Shutdown: closes idle connections and fails waiters.
  void CloseIdleAndFailWaiters(const absl::Status& why);

  PoolStats stats() const;
  bool starved_by_gate() const;  // clients wait because max_db_connections is used up
  std::shared_ptr<pool::ConnectionGate> gate() const { return gate_; }
  std::shared_ptr<const ServerTarget> target() const;

  // The parameters a fresh server reports (known after the first login).
  pool::SharedParams welcome_params() const;
  // What a client with these startup settings is welcomed with, if a client with exactly these
  // settings logged in before (`key` encodes the settings in order): its interned parameter
  // set and the encoded ParameterStatus messages for it.
  struct Welcome {
    pool::SharedParams params;
    std::shared_ptr<const std::string> parameter_status;
  };
  Welcome WelcomeFor(const std::string& key) const;
  void RememberWelcome(const std::string& key, Welcome welcome);

  // The normalised value a server reported for a client's raw startup setting, if seen before.
  std::optional<std::string> NormalizedParam(const std::string& name, const std::string& raw) const;
  void RememberNormalizedParam(const std::string& name, const std::string& raw,
                               const std::string& normalized);

  // The one shared instance of a parameter set equal to `params`, so that clients and servers
  // with equal settings share a pointer and the per-transaction comparison is a pointer check.
  pool::SharedParams Intern(pool::SharedParams params);

  // SCRAM keys from a client login, used to log in to servers that store the same secret.
  void SetScramKeys(std::shared_ptr<const ScramClientKeys> keys);

 private:
  using Core = pool::PoolCore<ServerConn*, Waiter*>;

  void Execute(Core::Actions& actions);
  void CloseServer(ServerConn* server, CloseReason reason);
  void ReleaseLocked(ServerConn* server, pool::TimePoint now, Core::Actions& actions);
  Task<> OpenOne();
  // A granted connection that sat idle long enough to have been closed by the server is
  // checked (without blocking) before use; stale ones are replaced.
  bool Usable(ServerConn* server, const Core::CheckoutResult& grant);
  // The server logged in with settings a reload has since replaced.
  bool Outdated(const ServerConn* server) const;
  Task<> Reset(ServerConn* server, ResetState state);
  Task<> Cancel(ServerConn* server);

  std::string name_;
  std::shared_ptr<pool::ConnectionGate> gate_;

  mutable std::mutex mu_;
  Core core_;
  config::PoolMode mode_;
  std::shared_ptr<const ServerTarget> target_;
  // target_->generation, readable without the lock (checked on every checkout).
  std::atomic<uint64_t> generation_;
  std::shared_ptr<const ScramClientKeys> scram_keys_;
  pool::SharedParams welcome_;
  absl::flat_hash_map<std::string, std::string> normalized_;  // "name\0raw" → value
  std::vector<pool::SharedParams> interned_;
  absl::flat_hash_map<std::string, Welcome> welcome_by_settings_;
};

// Sends a CancelRequest for `key` to `endpoint` and waits until the server has handled it.
Task<> SendCancelRequest(const Executor& executor, const config::Endpoint& endpoint,
                         const wire::be::BackendKeyData& key);

// Next unique id for server connections (log lines).
uint64_t NextServerId();

}  // namespace shardyard::proxy
