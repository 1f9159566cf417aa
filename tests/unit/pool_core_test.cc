// Drives the sans-io pool state machine with a fake clock: limits, queueing order, timers,
// login failures and the database-wide connection gate.
#include "pool/pool_core.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace shardyard::pool {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

using Core = PoolCore<int, int>;  // servers and waiters are plain ids here
using Kind = Core::CheckoutResult::Kind;

class PoolCoreTest : public ::testing::Test {
 protected:
  PoolCoreTest() : gate_(0) {
    limits_.size = 2;
    limits_.query_wait_timeout = 10s;
    limits_.server_login_retry = 1s;
    limits_.server_idle_timeout = 60s;
    limits_.server_lifetime = 3600s;
    limits_.reserve_timeout = 3s;
  }
  Core Make() { return Core("db/user@h:1", limits_, &gate_); }
  // Waiters 1 and 2 on worker 0 check out, and get the new servers 100 and 101.
  void LendTwo(Core& core, Core::Actions& a) {
    core.CheckOut(1, 0, now_, a);
    core.CheckOut(2, 0, now_, a);
    core.ConnectSucceeded(100, 0, now_, a);
    core.ConnectSucceeded(101, 0, now_, a);
  }

  TimePoint now_ = TimePoint{} + 1000s;
  PoolLimits limits_;
  ConnectionGate gate_;
};

TEST_F(PoolCoreTest, OpensOnDemandUpToSizeThenQueues) {
  Core core = Make();
  Core::Actions a;
  EXPECT_EQ(core.CheckOut(1, 0, now_, a).kind, Kind::kQueued);
  EXPECT_EQ(a.open, 1);
  EXPECT_EQ(core.CheckOut(2, 0, now_, a).kind, Kind::kQueued);
  EXPECT_EQ(a.open, 2);
  EXPECT_EQ(core.CheckOut(3, 0, now_, a).kind, Kind::kQueued);
  EXPECT_EQ(a.open, 2) << "never more than size";
  EXPECT_EQ(core.open(), 2);
  EXPECT_EQ(core.waiting(), 3);
}

TEST_F(PoolCoreTest, NewConnectionsServeWaitersInArrivalOrder) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.CheckOut(2, 0, now_, a);
  core.CheckOut(3, 0, now_, a);
  Core::Actions b;
  core.ConnectSucceeded(100, 0, now_, b);
  core.ConnectSucceeded(101, 0, now_, b);
  EXPECT_THAT(b.grants, ElementsAre(Pair(1, 100), Pair(2, 101)));
  Core::Actions c;
  core.CheckIn(100, 0, now_, now_, c);
  EXPECT_THAT(c.grants, ElementsAre(Pair(3, 100))) << "a released server goes to the next waiter";
  EXPECT_EQ(core.idle(), 0);
}

TEST_F(PoolCoreTest, AFollowerIsTheWaiterNextInLineOnTheServersWorker) {
  Core core = Make();
  Core::Actions a;
  LendTwo(core, a);                    // servers 100 and 101 to waiters 1 and 2
  core.CheckOut(3, 1, now_, a);        // waits on worker 1
  core.CheckOut(4, 0, now_ + 1ms, a);  // waits on worker 0
  ASSERT_EQ(core.waiting(), 2);
  EXPECT_EQ(core.TakeFollower(0), 4) << "first on worker 0, within the cross-worker grace";
  EXPECT_EQ(core.TakeFollower(0), std::nullopt) << "waiter 3 is on another worker";
  EXPECT_EQ(core.waiting(), 1);
  EXPECT_EQ(core.active(), 2) << "a follower's server is still the lead's: counted once";
  EXPECT_EQ(core.TakeFollower(1), 3);
  EXPECT_EQ(core.TakeFollower(1), std::nullopt) << "nobody waits";
}

TEST_F(PoolCoreTest, AWaiterThatCannotFollowIsNotSkippedButEndsPipelining) {
  Core core = Make();
  Core::Actions a;
  LendTwo(core, a);  // servers 100 and 101 to waiters 1 and 2
  core.CheckOut(5, 0, now_, a);
  core.CheckOut(6, 0, now_, a);
  // Waiter 5 (a coroutine's wait, say) cannot take a server still busy: nobody follows, and
  // waiter 6 does not jump the queue.
  auto only_even = [](int waiter) { return waiter % 2 == 0; };
  EXPECT_EQ(core.TakeFollower(0, only_even), std::nullopt);
  EXPECT_EQ(core.TakeFollower(0), 5) << "waiter 5 is still first in line";
  EXPECT_EQ(core.TakeFollower(0, only_even), 6);
}

TEST_F(PoolCoreTest, NoFollowersWithPipeliningOffOrPastTheGrace) {
  limits_.pipelining = false;
  Core off = Make();
  Core::Actions a;
  off.CheckOut(1, 0, now_, a);
  off.CheckOut(2, 0, now_, a);
  EXPECT_EQ(off.TakeFollower(0), std::nullopt);
  limits_.pipelining = true;
  Core core = Make();
  core.CheckOut(1, 1, now_, a);
  core.CheckOut(2, 1, now_, a);
  core.CheckOut(3, 1, now_, a);
  core.CheckOut(4, 0, now_ + kCrossWorkerGrace + 1ms, a);
  EXPECT_EQ(core.TakeFollower(0), std::nullopt)
      << "the first in line, on worker 1, has waited longer than the grace";
  EXPECT_TRUE(core.PastLifetime(now_, now_ + limits_.server_lifetime));
  EXPECT_FALSE(core.PastLifetime(now_, now_ + limits_.server_lifetime - 1s));
}

TEST_F(PoolCoreTest, IdleServersAreReusedWarmestFirst) {
  Core core = Make();
  Core::Actions a;
  LendTwo(core, a);  // servers 100 and 101 to waiters 1 and 2
  core.CheckIn(100, 0, now_, now_, a);
  core.CheckIn(101, 0, now_, now_ + 1s, a);
  EXPECT_EQ(core.idle(), 2);
  Core::CheckoutResult r = core.CheckOut(3, 0, now_ + 2s, a);
  EXPECT_EQ(r.kind, Kind::kGranted);
  EXPECT_EQ(r.server, 101) << "LIFO keeps the rest idle long enough to time out";
  EXPECT_EQ(core.active(), 1);
}

TEST_F(PoolCoreTest, QueryWaitTimeoutFailsTheWaiterWithSqlstate57014NamingThePool) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.ConnectSucceeded(100, 0, now_, a);  // granted to 1
  core.CheckOut(2, 0, now_, a);
  core.CheckOut(3, 0, now_, a);
  Core::Actions tick;
  core.Tick(now_ + 9s, tick);
  EXPECT_TRUE(tick.failures.empty());
  core.Tick(now_ + 10s, tick);
  ASSERT_EQ(tick.failures.size(), 2u);
  EXPECT_EQ(tick.failures[0].first, 2);
  PgErrorFields f = PgErrorFor(tick.failures[0].second);
  EXPECT_EQ(f.sqlstate, "57014");
  EXPECT_THAT(f.message, HasSubstr("query_wait_timeout"));
  EXPECT_THAT(f.message, HasSubstr("db/user@h:1"));
  EXPECT_EQ(core.waiting(), 0);
}

TEST_F(PoolCoreTest, ReservePoolOpensOnlyAfterReserveTimeout) {
  limits_.size = 1;
  limits_.reserve_size = 2;
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.ConnectSucceeded(100, 0, now_, a);
  core.CheckOut(2, 0, now_, a);
  core.CheckOut(3, 0, now_, a);
  Core::Actions early;
  core.Tick(now_ + 2s, early);
  EXPECT_EQ(early.open, 0);
  Core::Actions late;
  core.Tick(now_ + 3s, late);
  EXPECT_EQ(late.open, 2) << "one per waiting client, up to reserve_size";
  // After the burst, a surplus connection is closed instead of parked.
  Core::Actions c;
  core.ConnectSucceeded(101, 0, now_ + 3s, c);
  core.ConnectSucceeded(102, 0, now_ + 3s, c);
  EXPECT_EQ(c.grants.size(), 2u);
  Core::Actions d;
  core.CheckIn(101, 0, now_, now_ + 4s, d);
  EXPECT_THAT(d.closes, ElementsAre(Pair(101, CloseReason::kServerPoolShrunk)));
}

TEST_F(PoolCoreTest, FailedLoginWithNoServersFailsWaitersAndFastFailsUntilRetry) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.CheckOut(2, 0, now_, a);
  ASSERT_EQ(a.open, 2);
  absl::Status refused = absl::UnavailableError("password authentication failed");
  Core::Actions b;
  core.ConnectFailed(refused, now_, b);
  EXPECT_TRUE(b.failures.empty()) << "the second login may still succeed";
  core.ConnectFailed(refused, now_, b);
  EXPECT_EQ(b.failures.size(), 2u) << "nobody could serve them before the retry";
  Core::CheckoutResult r = core.CheckOut(3, 0, now_ + 500ms, b);
  EXPECT_EQ(r.kind, Kind::kFailed) << "the server is not hammered during server_login_retry";
  EXPECT_EQ(r.error, refused);
  Core::Actions c;
  EXPECT_EQ(core.CheckOut(4, 0, now_ + 1s, c).kind, Kind::kQueued);
  EXPECT_EQ(c.open, 1) << "after server_login_retry a new attempt is made";
}

TEST_F(PoolCoreTest, FailedLoginWhileServersExistKeepsWaitersWaiting) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.ConnectSucceeded(100, 0, now_, a);
  core.CheckOut(2, 0, now_, a);  // opens the second
  core.ConnectFailed(absl::UnavailableError("too many connections"), now_, a);
  EXPECT_TRUE(a.failures.empty());
  EXPECT_EQ(core.waiting(), 1);
  Core::Actions b;
  core.CheckIn(100, 0, now_, now_, b);
  EXPECT_THAT(b.grants, ElementsAre(Pair(2, 100)));
}

TEST_F(PoolCoreTest, IdleTimeoutClosesConnectionsButKeepsMinSize) {
  limits_.min_size = 1;
  Core core = Make();
  Core::Actions a;
  LendTwo(core, a);  // servers 100 and 101 to waiters 1 and 2
  core.CheckIn(100, 0, now_, now_, a);
  core.CheckIn(101, 0, now_, now_, a);
  Core::Actions t;
  core.Tick(now_ + 59s, t);
  EXPECT_TRUE(t.closes.empty());
  core.Tick(now_ + 60s, t);
  EXPECT_EQ(t.closes.size(), 1u);
  EXPECT_EQ(t.closes[0].second, CloseReason::kServerIdleTimeout);
  EXPECT_EQ(core.open(), 1);
}

TEST_F(PoolCoreTest, MinSizeIsKeptWarmWithoutClients) {
  limits_.min_size = 2;
  Core core = Make();
  Core::Actions t;
  core.Tick(now_, t);
  EXPECT_EQ(t.open, 2);
  Core::Actions u;
  core.Tick(now_ + 100ms, u);
  EXPECT_EQ(u.open, 0) << "logins in flight count";
}

TEST_F(PoolCoreTest, LifetimeClosesOnlyIdleConnections) {
  limits_.server_lifetime = 100s;
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.ConnectSucceeded(100, 0, now_, a);
  Core::Actions t;
  core.Tick(now_ + 200s, t);
  EXPECT_TRUE(t.closes.empty()) << "a connection in use is never closed for its age";
  Core::Actions b;
  core.CheckIn(100, 0, now_, now_ + 200s, b);
  EXPECT_THAT(b.closes, ElementsAre(Pair(100, CloseReason::kServerLifetime)));
  EXPECT_EQ(core.open(), 0);
}

TEST_F(PoolCoreTest, GateCapsConnectionsAcrossPoolsOfADatabase) {
  gate_.set_max(3);
  limits_.size = 5;
  Core a = Make();
  Core b = Make();
  Core::Actions x;
  for (int i = 0; i < 2; ++i) a.CheckOut(i, 0, now_, x);
  for (int i = 10; i < 13; ++i) b.CheckOut(i, 0, now_, x);
  EXPECT_EQ(x.open, 3);
  EXPECT_EQ(gate_.used(), 3);
  EXPECT_TRUE(b.blocked_by_gate());
  // A slot freed by pool a lets pool b open on its next tick.
  a.ConnectSucceeded(100, 0, now_, x);
  a.ConnectSucceeded(101, 0, now_, x);
  Core::Actions y;
  a.CheckIn(100, 0, now_, now_, y);
  a.CloseIdle(CloseReason::kServerEvicted, y, 1);
  EXPECT_EQ(gate_.used(), 2);
  Core::Actions z;
  b.Tick(now_, z);
  EXPECT_EQ(z.open, 1);
}

TEST_F(PoolCoreTest, ShrinkingThePoolClosesSurplusIdleConnections) {
  limits_.size = 3;
  Core core = Make();
  Core::Actions a;
  for (int i = 0; i < 3; ++i) core.CheckOut(i, 0, now_, a);
  for (int s = 100; s < 103; ++s) core.ConnectSucceeded(s, 0, now_, a);
  for (int s = 100; s < 103; ++s) core.CheckIn(s, 0, now_, now_, a);
  PoolLimits smaller = limits_;
  smaller.size = 1;
  Core::Actions b;
  core.SetLimits(smaller, now_, b);
  EXPECT_EQ(b.closes.size(), 2u);
  EXPECT_EQ(core.open(), 1);
}

TEST_F(PoolCoreTest, CancelledWaiterLeavesTheQueue) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.CheckOut(2, 0, now_, a);
  core.CheckOut(3, 0, now_, a);
  EXPECT_TRUE(core.CancelWaiter(2));
  EXPECT_FALSE(core.CancelWaiter(2));
  Core::Actions b;
  core.ConnectSucceeded(100, 0, now_, b);
  core.ConnectSucceeded(101, 0, now_, b);
  EXPECT_THAT(b.grants, ElementsAre(Pair(1, 100), Pair(3, 101)));
}

TEST_F(PoolCoreTest, IdleConnectionOnTheCallersWorkerIsPreferred) {
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.CheckOut(2, 1, now_, a);
  core.ConnectSucceeded(100, /*home=*/0, now_, a);
  core.ConnectSucceeded(101, /*home=*/1, now_, a);
  core.CheckIn(100, 0, now_, now_, a);
  core.CheckIn(101, 1, now_, now_ + 1s, a);  // the warmest lives on worker 1
  EXPECT_EQ(core.CheckOut(3, /*home=*/0, now_ + 2s, a).server, 100);
  EXPECT_EQ(core.CheckOut(4, /*home=*/0, now_ + 2s, a).server, 101) << "else the warmest";
}

TEST_F(PoolCoreTest, ReleasedConnectionGoesToAWaiterOnItsWorkerWithinTheGrace) {
  limits_.size = 1;
  Core core = Make();
  Core::Actions a;
  core.CheckOut(1, 0, now_, a);
  core.ConnectSucceeded(100, 0, now_, a);       // granted to 1
  core.CheckOut(2, /*home=*/1, now_, a);        // first in line, on worker 1
  core.CheckOut(3, /*home=*/0, now_ + 1ms, a);  // queued 1 ms later, on worker 0
  Core::Actions b;
  core.CheckIn(100, /*home=*/0, now_, now_ + 20ms, b);
  EXPECT_THAT(b.grants, ElementsAre(Pair(3, 100)))
      << "the same-worker waiter arrived within the grace of the first in line";
  core.CheckOut(4, /*home=*/0, now_ + kCrossWorkerGrace, b);  // arrived a grace later
  Core::Actions c;
  core.CheckIn(100, 0, now_, now_ + 30ms, c);
  EXPECT_THAT(c.grants, ElementsAre(Pair(2, 100))) << "the first in line waited a grace longer";
}

TEST_F(PoolCoreTest, DiscardedServerIsReplacedForWaiters) {
  Core core = Make();
  Core::Actions a;
  LendTwo(core, a);  // servers 100 and 101 to waiters 1 and 2
  core.CheckOut(3, 0, now_, a);
  Core::Actions b;
  core.Discard(now_, b);
  EXPECT_EQ(b.open, 1);
  EXPECT_EQ(core.open(), 2);
}

}  // namespace
}  // namespace shardyard::pool
