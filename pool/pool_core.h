// The pool as a sans-io state machine: which client gets which server connection, when to open
// or close one, and when a waiting client fails. No sockets, no threads, no clock of its own:
// the caller passes `now`, holds the lock, and carries out the returned Actions.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "common/close_reason.h"
#include "common/duration.h"
#include "common/pg_error.h"
#include "common/strings.h"

namespace shardyard::pool {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// Server connections shared by every pool of one database (max_db_connections). Thread-safe.
class ConnectionGate {
 public:
  explicit ConnectionGate(int max = 0) : max_(max) {}
  void set_max(int max) { max_.store(max, std::memory_order_relaxed); }
  int max() const { return max_.load(std::memory_order_relaxed); }
  int used() const { return used_.load(std::memory_order_relaxed); }
  bool TryAcquire() {
    int cur = used_.load(std::memory_order_relaxed);
    while (true) {
      int max = max_.load(std::memory_order_relaxed);
      if (max > 0 && cur >= max) return false;
      if (used_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) return true;
    }
  }
  void Release() { used_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  std::atomic<int> max_;
  std::atomic<int> used_{0};
};

struct PoolLimits {
  int size = 20;
  int min_size = 0;
  int reserve_size = 0;
  Duration reserve_timeout = std::chrono::seconds(5);
  Duration query_wait_timeout = std::chrono::seconds(120);
  Duration server_idle_timeout = std::chrono::seconds(600);
  Duration server_lifetime = std::chrono::seconds(3600);
  Duration server_login_retry = std::chrono::seconds(1);
  bool pipelining = true;  // config pool.pipelining
};

// A waiter on another worker gets a released connection before a same-worker waiter once it
// has waited this much longer than that waiter (bounded unfairness, for locality).
inline constexpr auto kCrossWorkerGrace = std::chrono::milliseconds(5);

// `Server` and `Waiter` are small copyable handles (pointers in the proxy, ints in tests).
// Every server and waiter has a `home`: the worker (event loop) it lives on. Handing a server
// to a waiter of another home costs a move between event loops, so among comparable choices
// the pool prefers the same home — idle connections and, within kCrossWorkerGrace, waiters.
template <typename Server, typename Waiter>
class PoolCore {
 public:
  // What the caller must do after a call, outside the lock. One grant or close per call is the
  // common case (a release handing its server to the next waiter): stored inline, no malloc.
  template <typename T>
  using List = absl::InlinedVector<T, 1>;
  struct Actions {
    int open = 0;                                    // start this many server logins
    List<std::pair<Waiter, Server>> grants;          // hand these servers to waiters
    List<std::pair<Waiter, absl::Status>> failures;  // fail these waiters
    List<std::pair<Server, CloseReason>> closes;     // close these (already uncounted)
    bool empty() const { return open == 0 && grants.empty() && failures.empty() && closes.empty(); }
  };

  struct CheckoutResult {
    enum class Kind { kGranted, kQueued, kFailed };
    Kind kind = Kind::kQueued;
    Server server{};
    absl::Status error;
    TimePoint idle_since{};  // for kGranted: when the connection was returned
  };

  PoolCore(std::string name, PoolLimits limits, ConnectionGate* gate)
      : name_(std::move(name)), limits_(limits), gate_(gate) {}

  const std::string& name() const { return name_; }
  const PoolLimits& limits() const { return limits_; }

  // A client wants a server connection now.
  CheckoutResult CheckOut(Waiter waiter, int home, TimePoint now, Actions& actions) {
    if (auto idle = TakeIdle(home)) return *idle;
    if (open_ == 0 && InLoginBackoff(now)) {
      return {CheckoutResult::Kind::kFailed, Server{}, login_error_};
    }
    waiters_.push_back({waiter, now, home});
    OpenForWaiters(now, limits_.size, actions);
    return {CheckoutResult::Kind::kQueued, Server{}, {}};
  }

  // The warmest idle connection, if any, without queueing (the common, non-waiting path);
  // among the few warmest, one already living on `home`.
  std::optional<CheckoutResult> TakeIdle(int home) {
    if (idle_.empty()) return std::nullopt;
    // LIFO: the warmest connections are reused, so idle ones can time out.
    size_t pick = idle_.size() - 1;
    for (size_t i = idle_.size(), seen = 0; i-- > 0 && seen < 8; ++seen) {
      if (idle_[i].home == home) {
        pick = i;
        break;
      }
    }
    Idle chosen = idle_[pick];
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(pick));
    ++active_;
    return CheckoutResult{CheckoutResult::Kind::kGranted, chosen.server, {}, chosen.since};
  }

  // Pipelining: the waiter that a server on `home` would go to next, if that waiter is on
  // `home` too. It gets a server still busy with its last request (already counted active).
  // `can_follow(waiter)`: whether that waiter can take a server still busy with the lead's
  // request (not every kind of wait knows how to hand it over).
  template <typename CanFollow>
  std::optional<Waiter> TakeFollower(int home, CanFollow can_follow) {
    if (!limits_.pipelining || waiters_.empty()) return std::nullopt;
    auto it = PickWaiter(home);
    if (it->home != home || !can_follow(it->waiter)) return std::nullopt;
    Waiter w = it->waiter;
    waiters_.erase(it);
    return w;
  }
  std::optional<Waiter> TakeFollower(int home) {
    return TakeFollower(home, [](const Waiter&) { return true; });
  }

  // A client is done with a clean, reusable server connection living on `home`.
  void CheckIn(Server server, int home, TimePoint created, TimePoint now, Actions& actions) {
    --active_;
    Offer(server, home, created, now, actions);
  }

  // A checked-out (or connecting) server connection was closed by the caller.
  void Discard(TimePoint now, Actions& actions, bool was_active = true) {
    if (was_active) --active_;
    Uncount();
    OpenForWaiters(now, limits_.size, actions);
  }

  // A login started by Actions::open finished (on `home`).
  void ConnectSucceeded(Server server, int home, TimePoint now, Actions& actions) {
    --connecting_;
    Offer(server, home, now, now, actions);
  }

  void ConnectFailed(const absl::Status& error, TimePoint now, Actions& actions) {
    --connecting_;
    Uncount();
    login_error_ = error;
    retry_at_ = now + limits_.server_login_retry;
    // With no server connection at all, nobody will be served before the retry: fail fast.
    if (open_ == 0) {
      for (const auto& w : waiters_) actions.failures.emplace_back(w.waiter, error);
      waiters_.clear();
    }
  }

  // Removes a waiting client (it disconnected or was cancelled). False if it was not waiting.
  bool CancelWaiter(Waiter waiter) {
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->waiter == waiter) {
        waiters_.erase(it);
        return true;
      }
    }
    return false;
  }

  // Timers: query_wait_timeout, reserve pool, login retry, idle timeout, lifetime, min size.
  void Tick(TimePoint now, Actions& actions) {
    while (!waiters_.empty() && now - waiters_.front().since >= limits_.query_wait_timeout) {
      actions.failures.emplace_back(waiters_.front().waiter, QueryWaitTimeoutError());
      waiters_.pop_front();
    }
    if (!waiters_.empty() && !InLoginBackoff(now)) {
      int limit = limits_.size;
      if (limits_.reserve_size > 0 && now - waiters_.front().since >= limits_.reserve_timeout) {
        limit += limits_.reserve_size;
      }
      OpenForWaiters(now, limit, actions);
    }
    // Idle connections past their idle timeout or lifetime, oldest first, keeping min_size.
    for (auto it = idle_.begin(); it != idle_.end();) {
      bool too_old =
          limits_.server_lifetime.count() > 0 && now - it->created >= limits_.server_lifetime;
      bool idle_long = limits_.server_idle_timeout.count() > 0 &&
                       now - it->since >= limits_.server_idle_timeout && open_ > limits_.min_size;
      if (too_old || idle_long) {
        actions.closes.emplace_back(
            it->server, too_old ? CloseReason::kServerLifetime : CloseReason::kServerIdleTimeout);
        Uncount();
        it = idle_.erase(it);
      } else {
        ++it;
      }
    }
    if (open_ < limits_.min_size && !InLoginBackoff(now)) {
      while (open_ < limits_.min_size && StartOpen()) ++actions.open;
    }
  }

  // New limits after a config reload; surplus idle connections close now, busy ones on check-in.
  void SetLimits(PoolLimits limits, TimePoint now, Actions& actions) {
    limits_ = limits;
    while (open_ > limits_.size && !idle_.empty()) {
      actions.closes.emplace_back(idle_.front().server, CloseReason::kServerPoolShrunk);
      idle_.pop_front();
      Uncount();
    }
    OpenForWaiters(now, limits_.size, actions);
  }

  // Closes every idle connection (shutdown, or another pool needs the database's slots).
  void CloseIdle(CloseReason reason, Actions& actions, int max_count = -1) {
    while (!idle_.empty() && max_count != 0) {
      actions.closes.emplace_back(idle_.front().server, reason);
      idle_.pop_front();
      Uncount();
      if (max_count > 0) --max_count;
    }
  }

  // Fails every waiting client with `error` (shutdown, database removed).
  void FailWaiters(const absl::Status& error, Actions& actions) {
    for (const auto& w : waiters_) actions.failures.emplace_back(w.waiter, error);
    waiters_.clear();
  }

  int open() const { return open_; }  // connected or connecting
  int connecting() const { return connecting_; }
  int active() const { return active_; }
  int idle() const { return static_cast<int>(idle_.size()); }
  // Whether a connection created at `created` is closed the next time it is returned.
  bool PastLifetime(TimePoint created, TimePoint now) const {
    return limits_.server_lifetime.count() > 0 && now - created >= limits_.server_lifetime;
  }
  int waiting() const { return static_cast<int>(waiters_.size()); }
  bool blocked_by_gate() const { return blocked_by_gate_; }
  // How long the longest-waiting client has waited.
  Duration max_wait(TimePoint now) const {
    return waiters_.empty() ? Duration(0) : Duration(now - waiters_.front().since);
  }

 private:
  struct Idle {
    Server server;
    TimePoint created;
    TimePoint since;
    int home;
  };
  struct Waiting {
    Waiter waiter;
    TimePoint since;
    int home;
  };

  bool InLoginBackoff(TimePoint now) const { return now < retry_at_; }

  absl::Status QueryWaitTimeoutError() const {
    return PgErrorStatus(
        absl::StatusCode::kDeadlineExceeded, sqlstate::kQueryCanceled,
        Cat("canceling statement due to query_wait_timeout: no server connection in pool \"", name_,
            "\" became free within ", FormatDuration(limits_.query_wait_timeout)),
        Cat("The pool has ", open_, " of ", limits_.size, " server connections, all busy."),
        "Raise pool.size or pool.query_wait_timeout, or shorten transactions.");
  }

  // The waiter to serve next: the first in line, or the first one on the server's home unless
  // the first in line has waited kCrossWorkerGrace longer than it.
  typename std::deque<Waiting>::iterator PickWaiter(int home) {
    auto first = waiters_.begin();
    if (first->home == home) return first;
    size_t scanned = 0;
    for (auto it = first; it != waiters_.end() && scanned < 64; ++it, ++scanned) {
      if (it->home != home) continue;
      return it->since - first->since < kCrossWorkerGrace ? it : first;
    }
    return first;
  }

  // Gives a usable server to a waiter, or parks it idle, or closes it if surplus.
  void Offer(Server server, int home, TimePoint created, TimePoint now, Actions& actions) {
    if (PastLifetime(created, now)) {
      actions.closes.emplace_back(server, CloseReason::kServerLifetime);
      Uncount();
      OpenForWaiters(now, limits_.size, actions);
      return;
    }
    if (!waiters_.empty()) {
      auto it = PickWaiter(home);
      actions.grants.emplace_back(it->waiter, server);
      waiters_.erase(it);
      ++active_;
      return;
    }
    if (open_ > limits_.size) {  // a reserve connection after the burst, or a shrunk pool
      actions.closes.emplace_back(server, CloseReason::kServerPoolShrunk);
      Uncount();
      return;
    }
    idle_.push_back({server, created, now, home});
  }

  // Opens connections while waiters outnumber logins in flight, up to `limit`.
  void OpenForWaiters(TimePoint now, int limit, Actions& actions) {
    if (InLoginBackoff(now)) return;
    while (connecting_ < static_cast<int>(waiters_.size()) && open_ < limit && StartOpen()) {
      ++actions.open;
    }
  }

  bool StartOpen() {
    if (!gate_->TryAcquire()) {
      blocked_by_gate_ = true;
      return false;
    }
    blocked_by_gate_ = false;
    ++open_;
    ++connecting_;
    return true;
  }

  void Uncount() {
    --open_;
    gate_->Release();
  }

  std::string name_;
  PoolLimits limits_;
  ConnectionGate* gate_;
  std::deque<Idle> idle_;
  std::deque<Waiting> waiters_;
  int open_ = 0;
  int connecting_ = 0;
  int active_ = 0;
  bool blocked_by_gate_ = false;
  TimePoint retry_at_{};
  absl::Status login_error_;
};

}  // namespace shardyard::pool
