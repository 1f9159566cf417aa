// Implements the pool driver: checkout and check-in under one mutex, server logins, resets and
// cancel forwarding as background coroutines, and every close logged with its reason.
#include "proxy/pool.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "common/log.h"
#include "proxy/spawn.h"
#include "wire/messages.h"

namespace shardyard::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {

// Connections idle longer than this are checked for a server-side close before reuse (a
// non-blocking peek: one system call, skipped on the hot path of a busy pool).
constexpr auto kStaleCheckAfter = std::chrono::seconds(1);
// How long a reset (drain, rollback, DISCARD ALL) may take before the connection is closed.
constexpr auto kResetTimeout = std::chrono::seconds(10);
// A portal name no client uses (it explains itself in the server's log): executing it fails,
// which rolls back what a vanished client left unsynced.
constexpr std::string_view kAbandonedPortal =
    "shardyard: client disconnected before Sync, rolling back its work";
// How long delivering a CancelRequest may take.
constexpr auto kCancelTimeout = std::chrono::seconds(5);

std::atomic<uint64_t> g_next_server_id{1};

// Completes an acquire on the waiting client's own executor (its strand).
void Complete(const Executor& executor, Pool::AcquireHandler handler, ServerConn* server,
              absl::Status status) {
  asio::post(executor, [h = std::move(handler), server, st = std::move(status)]() mutable {
    std::move(h)(server, std::move(st));
  });
}

}  // namespace

uint64_t NextServerId() { return g_next_server_id.fetch_add(1, std::memory_order_relaxed); }

Pool::Pool(std::string name, pool::PoolLimits limits, config::PoolMode mode,
           std::shared_ptr<const ServerTarget> target, std::shared_ptr<pool::ConnectionGate> gate)
    : name_(std::move(name)),
      gate_(std::move(gate)),
      core_(name_, limits, gate_.get()),
      mode_(mode),
      target_(std::move(target)),
      generation_(target_->generation) {}

config::PoolMode Pool::mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

bool Pool::Outdated(const ServerConn* server) const {
  return server->target().generation != generation_.load(std::memory_order_relaxed);
}

bool Pool::Usable(ServerConn* server, const Core::CheckoutResult& grant) {
  bool outdated = Outdated(server);
  // The peek costs a system call, so it is made only where something may have arrived while
  // the connection was idle (the reactor saw it become readable) or after kStaleCheckAfter.
  bool stale =
      !server->usable() ||
      ((server->MayHaveInput() || pool::Clock::now() - grant.idle_since >= kStaleCheckAfter) &&
       server->IsStale());
  if (!stale && !outdated) return true;
  Discard(server, outdated ? CloseReason::kServerPoolShrunk : CloseReason::kServerStaleOnCheckout);
  return false;
}

ServerConn* Pool::TryAcquire(const Executor& executor, int home) {
  while (true) {
    std::optional<Core::CheckoutResult> idle;
    {
      std::lock_guard lock(mu_);
      idle = core_.TakeIdle(home);
    }
    if (!idle) return nullptr;
    if (Usable(idle->server, *idle)) {
      idle->server->MoveTo(executor, home);
      return idle->server;
    }
  }
}

void Pool::Enqueue(Waiter& waiter) {
  Core::Actions actions;
  std::unique_lock lock(mu_);
  Core::CheckoutResult r = core_.CheckOut(&waiter, waiter.home, pool::Clock::now(), actions);
  if (r.kind == Core::CheckoutResult::Kind::kQueued) {
    const int ahead = core_.waiting() - 1;
    lock.unlock();
    // The handler is parked and runs only through a post: the waiter's owner may still be
    // touched here.
    if (waiter.on_queued) waiter.on_queued(ahead);
    Execute(actions);
    return;
  }
  lock.unlock();
  Execute(actions);
  // A connection found idle here was released since the caller's TryAcquire failed: it is as
  // fresh as one handed over after waiting, and Accept checks both alike.
  Complete(waiter.executor, std::move(waiter.handler), r.server, r.error);
}

bool Pool::Accept(ServerConn* server, const Waiter& waiter) {
  Core::CheckoutResult grant;
  grant.idle_since = pool::Clock::now();  // just released: no stale check
  if (!Usable(server, grant)) return false;
  server->MoveTo(waiter.executor, waiter.home);
  return true;
}

Task<std::pair<ServerConn*, absl::Status>> Pool::Acquire(Waiter& waiter) {
  while (true) {
    // Fast path: an idle connection, handed over without suspending the caller.
    if (ServerConn* server = TryAcquire(waiter.executor, waiter.home)) {
      co_return std::make_pair(server, absl::OkStatus());
    }
    auto [server, status] =
        co_await asio::async_initiate<const asio::deferred_t&, void(ServerConn*, absl::Status)>(
            [this, &waiter](auto handler) {
              waiter.handler = std::move(handler);
              Enqueue(waiter);
            },
            asio::deferred);
    if (server == nullptr) co_return std::make_pair(nullptr, status);
    if (Accept(server, waiter)) co_return std::make_pair(server, absl::OkStatus());
  }
}

bool Pool::CancelWait(Waiter& waiter, const absl::Status& why) {
  std::unique_lock lock(mu_);
  if (!core_.CancelWaiter(&waiter)) return false;
  AcquireHandler handler = std::move(waiter.handler);
  lock.unlock();
  Complete(waiter.executor, std::move(handler), nullptr, why);
  return true;
}

void Pool::ReleaseLocked(ServerConn* server, pool::TimePoint now, Core::Actions& actions) {
  if (server->cancels_in_flight > 0) {
    // Not reusable until the cancel has landed, or it could stop the next client's query.
    server->release_pending = true;
    return;
  }
  bool outdated = Outdated(server);
  if (!server->usable() || outdated) {  // a connection with close_pending is closed: unusable
    core_.Discard(now, actions);
    actions.closes.emplace_back(
        server, server->close_pending.value_or(outdated ? CloseReason::kServerPoolShrunk
                                                        : CloseReason::kServerResetFailed));
    return;
  }
  core_.CheckIn(server, server->home(), server->created_at, now, actions);
}

bool Pool::PipelineTo(ServerConn* server, int home) {
  // A connection due to retire (reload, lifetime) must come back to the pool to do so, which a
  // chain of followers would never let it.
  if (Outdated(server) || server->close_pending) return false;
  std::unique_lock lock(mu_);
  if (core_.PastLifetime(server->created_at, pool::Clock::now())) return false;
  std::optional<Waiter*> w = core_.TakeFollower(home, [](Waiter* w) { return w->follows; });
  lock.unlock();
  if (!w) return false;
  server->follow_grant = true;
  Complete((*w)->executor, std::move((*w)->handler), server, absl::OkStatus());
  return true;
}

void Pool::Release(ServerConn* server) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    ReleaseLocked(server, pool::Clock::now(), actions);
  }
  Execute(actions);
}

void Pool::Discard(ServerConn* server, CloseReason reason) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    if (server->cancels_in_flight > 0) {
      // The cancel's delivery still refers to this connection: close its socket now, and let
      // the delivery's end close the rest (ReleaseLocked), so it never touches a deleted one.
      server->close_pending = reason;
      server->release_pending = true;
      server->Close();  // and unusable from now on
      return;
    }
    core_.Discard(pool::Clock::now(), actions);
  }
  CloseServer(server, reason);
  Execute(actions);
}

void Pool::CloseServer(ServerConn* server, CloseReason reason) {
  SY_LOG_INFO("S-%d %s pool=%s closing because: %s", server->id(),
              server->target().endpoint.ToString(), name_, CloseReasonText(reason));
  CountClose(reason);
  server->Close();
  delete server;
}

void Pool::Execute(Core::Actions& actions) {
  for (int i = 0; i < actions.open; ++i) {
    // The login runs on the calling worker (usually the waiting client's), so the new
    // connection is most likely used where it was opened.
    Spawn(
        CurrentExecutor(), [self = shared_from_this()]() { return self->OpenOne(); },
        "server login");
  }
  for (auto& [waiter, server] : actions.grants) {
    Complete(waiter->executor, std::move(waiter->handler), server, absl::OkStatus());
  }
  for (auto& [waiter, error] : actions.failures) {
    Complete(waiter->executor, std::move(waiter->handler), nullptr, std::move(error));
  }
  for (auto& [server, reason] : actions.closes) CloseServer(server, reason);
}

Task<> Pool::OpenOne() {
  std::shared_ptr<const ServerTarget> target;
  std::shared_ptr<const ScramClientKeys> keys;
  {
    std::lock_guard lock(mu_);
    target = target_;
    keys = scram_keys_;
  }
  auto* server = new ServerConn(CurrentExecutor(), CurrentWorker(), NextServerId(), target);
  absl::Status st = co_await server->Connect(keys);
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    auto now = pool::Clock::now();
    if (st.ok()) {
      if (!welcome_) welcome_ = server->params;
      core_.ConnectSucceeded(server, server->home(), now, actions);
    } else {
      core_.ConnectFailed(st, now, actions);
    }
  }
  if (st.ok()) {
    SY_LOG_INFO("S-%d %s pool=%s login ok (backend pid %d)", server->id(),
                target->endpoint.ToString(), name_, server->key.process_id);
  } else {
    SY_LOG_WARNING("S-%d %s pool=%s closing because: %s: %s", server->id(),
                   target->endpoint.ToString(), name_,
                   CloseReasonText(CloseReason::kServerLoginFailed), st.message());
    CountClose(CloseReason::kServerLoginFailed);
    delete server;
  }
  Execute(actions);
}

void Pool::ResetAndRelease(ServerConn* server, ResetState state) {
  Spawn(
      server->socket().get_executor(),
      [self = shared_from_this(), server, state]() -> Task<> {
        Timer timer(server->socket().get_executor());
        timer.expires_after(kResetTimeout);
        auto r = co_await (self->Reset(server, state) || timer.async_wait(kAwaitable));
        if (r.index() == 0) {
          self->Release(server);
        } else {
          server->set_unusable();
          self->Discard(server, CloseReason::kServerResetFailed);
        }
      },
      "server reset");
}

Task<> Pool::Reset(ServerConn* server, ResetState state) {
  std::string messages;
  int ready = state.pending_ready;
  if (state.copy_in) wire::Encode(wire::fe::CopyFail{"client disconnected"}, &messages);
  if (state.unsynced) {
    // The client left before its Sync, so what it ran since the last one must not commit:
    // PostgreSQL rolls it back when it loses its client, whereas a Sync alone would commit it.
    // Executing a portal that does not exist raises an error first, which aborts that work
    // (or, inside a transaction block, leaves the block failed for the ROLLBACK below).
    wire::Encode(wire::fe::Execute{std::string(kAbandonedPortal), 0}, &messages);
    wire::Encode(wire::fe::Sync{}, &messages);
    ++ready;
  }
  if (ready > 0) {
    // A request may still be running (and holding locks): cancel it, then read what it owes.
    ForwardCancel(server);
    absl::Status st = co_await server->RunInternal(messages, 0);
    if (st.ok()) st = co_await server->Drain(ready, state.scanner);
    if (!st.ok()) server->set_unusable();
    co_await CancelsLanded(server);  // before anything else runs on this backend
  } else if (!messages.empty()) {
    absl::Status st = co_await server->RunInternal(messages, 0);
    if (!st.ok()) server->set_unusable();
  }
  if (server->usable() && server->tx_status != wire::be::TxStatus::kIdle) {
    std::string rollback = wire::Encode(wire::fe::Query{"ROLLBACK"});
    absl::Status st = co_await server->RunInternal(rollback, 1);
    if (!st.ok()) server->set_unusable();
  }
  if (server->usable() && (mode() == config::PoolMode::kSession || state.discard_settings)) {
    std::string discard = wire::Encode(wire::fe::Query{"DISCARD ALL"});
    absl::Status st = co_await server->RunInternal(discard, 1);
    if (st.ok()) {
      server->ForgetUnreportedParams();
    } else {
      server->set_unusable();
    }
  }
  if (server->tx_status != wire::be::TxStatus::kIdle) server->set_unusable();
}

Task<> Pool::CancelsLanded(ServerConn* server) {
  Timer wait(server->socket().get_executor());
  while (server->usable()) {
    {
      std::lock_guard lock(mu_);
      if (server->cancels_in_flight == 0) break;
    }
    wait.expires_after(std::chrono::milliseconds(5));
    co_await wait.async_wait(kAwait);
  }
}

void Pool::ForwardCancel(ServerConn* server, absl::AnyInvocable<void() &&> done) {
  {
    std::lock_guard lock(mu_);
    ++server->cancels_in_flight;
  }
  SY_LOG_INFO("S-%d %s pool=%s forwarding cancel to backend pid %d", server->id(),
              server->target().endpoint.ToString(), name_, server->key.process_id);
  Spawn(
      CurrentExecutor(),
      [self = shared_from_this(), server, endpoint = server->target().endpoint, key = server->key,
       done = std::move(done)]() mutable -> Task<> {
        co_await SendCancelRequest(CurrentExecutor(), endpoint, key);
        if (done) std::move(done)();
        Core::Actions actions;
        {
          std::lock_guard lock(self->mu_);
          if (--server->cancels_in_flight == 0 && server->release_pending) {
            server->release_pending = false;
            self->ReleaseLocked(server, pool::Clock::now(), actions);
          }
        }
        self->Execute(actions);
      },
      "cancel");
}

Task<> SendCancelRequest(const Executor& executor, const config::Endpoint& endpoint,
                         const wire::be::BackendKeyData& key) {
  Socket socket(executor);
  Timer timer(executor);
  timer.expires_after(kCancelTimeout);
  auto deliver = [&]() -> Task<> {
    Resolver resolver(executor);
    std::string port = std::to_string(endpoint.port);
    auto [rec, endpoints] = co_await resolver.async_resolve(endpoint.host, port, kAwait);
    if (rec) co_return;
    auto [cec, ep] = co_await asio::async_connect(socket, endpoints, kAwait);
    if (cec) co_return;
    std::string packet = wire::Encode(wire::fe::CancelRequest{key.process_id, key.secret_key});
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(packet), kAwait);
    if (wec) co_return;
    // The server closes the connection once it has signalled the backend.
    char byte;
    while (true) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(&byte, 1), kAwait);
      if (ec) break;
    }
  };
  co_await (deliver() || timer.async_wait(kAwaitable));
  error_code ignored;
  socket.close(ignored);
}

void Pool::Tick(pool::TimePoint now) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    core_.Tick(now, actions);
  }
  Execute(actions);
}

void Pool::Reconfigure(pool::PoolLimits limits, config::PoolMode mode,
                       std::shared_ptr<const ServerTarget> target) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    mode_ = mode;
    if (target->generation != target_->generation) {
      target_ = std::move(target);
      generation_.store(target_->generation, std::memory_order_relaxed);
      core_.CloseIdle(CloseReason::kServerPoolShrunk, actions);
      welcome_.reset();
      normalized_.clear();
      welcome_by_settings_.clear();
    }
    core_.SetLimits(limits, pool::Clock::now(), actions);
  }
  Execute(actions);
}

int Pool::EvictIdle(int count) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    core_.CloseIdle(CloseReason::kServerEvicted, actions, count);
  }
  int closed = static_cast<int>(actions.closes.size());
  Execute(actions);
  return closed;
}

void Pool::CloseIdleAndFailWaiters(const absl::Status& why) {
  Core::Actions actions;
  {
    std::lock_guard lock(mu_);
    core_.CloseIdle(CloseReason::kServerShutdown, actions);
    core_.FailWaiters(why, actions);
  }
  Execute(actions);
}

PoolStats Pool::stats() const {
  std::lock_guard lock(mu_);
  return {core_.open(), core_.idle(), core_.active(), core_.waiting(), core_.connecting()};
}

std::shared_ptr<const ServerTarget> Pool::target() const {
  std::lock_guard lock(mu_);
  return target_;
}

bool Pool::starved_by_gate() const {
  std::lock_guard lock(mu_);
  return core_.waiting() > 0 && core_.blocked_by_gate();
}

pool::SharedParams Pool::welcome_params() const {
  std::lock_guard lock(mu_);
  return welcome_;
}

std::optional<std::string> Pool::NormalizedParam(const std::string& name,
                                                 const std::string& raw) const {
  std::lock_guard lock(mu_);
  auto it = normalized_.find(Cat(name, std::string_view("\0", 1), raw));
  if (it == normalized_.end()) return std::nullopt;
  return it->second;
}

void Pool::RememberNormalizedParam(const std::string& name, const std::string& raw,
                                   const std::string& normalized) {
  std::lock_guard lock(mu_);
  // Bounded: distinct startup settings are few; a client cycling values cannot grow it forever.
  if (normalized_.size() >= 4096) normalized_.clear();
  normalized_[Cat(name, std::string_view("\0", 1), raw)] = normalized;
}

Pool::Welcome Pool::WelcomeFor(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = welcome_by_settings_.find(key);
  return it == welcome_by_settings_.end() ? Welcome{} : it->second;
}

void Pool::RememberWelcome(const std::string& key, Welcome welcome) {
  std::lock_guard lock(mu_);
  if (welcome_by_settings_.size() >= 1024) welcome_by_settings_.clear();  // bounded
  welcome_by_settings_[key] = std::move(welcome);
}

pool::SharedParams Pool::Intern(pool::SharedParams params) {
  std::lock_guard lock(mu_);
  for (const auto& known : interned_) {
    if (known == params || *known == *params) return known;
  }
  // Bounded: a pool sees few distinct settings; clients cycling values cannot grow it forever.
  if (interned_.size() >= 256) interned_.erase(interned_.begin());
  interned_.push_back(params);
  return params;
}

void Pool::SetScramKeys(std::shared_ptr<const ScramClientKeys> keys) {
  std::lock_guard lock(mu_);
  scram_keys_ = std::move(keys);
}

}  // namespace shardyard::proxy
