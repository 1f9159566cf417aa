// Tests accept steering (proxy/accept_steering.h): the policy's choices and hysteresis, and on
// real loopback listeners in one SO_REUSEPORT group, that each program sends a connection where
// it says (the receiving CPU's worker, or one chosen worker) and that AcceptSteering rebalances.
#include "proxy/accept_steering.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

namespace shardyard::proxy {
namespace {

constexpr int kByCpu = SteeringPolicy::kByCpu;

TEST(SteeringPolicyTest, StaysByCpuWhileBalanced) {
  SteeringPolicy policy;
  EXPECT_EQ(policy.Decide(std::vector<int>{0, 0}), kByCpu);
  EXPECT_EQ(policy.Decide(std::vector<int>{8, 0}), kByCpu);      // threshold is at least 8
  EXPECT_EQ(policy.Decide(std::vector<int>{530, 470}), kByCpu);  // 60 <= 1000 / 16
}

TEST(SteeringPolicyTest, SendsNewConnectionsToTheLeastLoadedWorkerPastTheThreshold) {
  SteeringPolicy policy;
  EXPECT_EQ(policy.Decide(std::vector<int>{9, 0}), 1);
  SteeringPolicy three;
  EXPECT_EQ(three.Decide(std::vector<int>{700, 300, 10}), 2);
}

TEST(SteeringPolicyTest, ReturnsToCpuOnlyAtHalfTheThreshold) {
  SteeringPolicy policy;
  ASSERT_EQ(policy.Decide(std::vector<int>{20, 0}), 1);
  EXPECT_EQ(policy.Decide(std::vector<int>{20, 10}), 1);       // spread 10 > 8 / 2
  EXPECT_EQ(policy.Decide(std::vector<int>{20, 15}), 1);       // spread 5 > 4
  EXPECT_EQ(policy.Decide(std::vector<int>{20, 16}), kByCpu);  // spread 4: balanced again
}

TEST(SteeringPolicyTest, RetargetsWhenTheLeastLoadedWorkerChanges) {
  SteeringPolicy policy;
  ASSERT_EQ(policy.Decide(std::vector<int>{40, 0, 30}), 1);
  EXPECT_EQ(policy.Decide(std::vector<int>{40, 35, 20}), 2);
}

TEST(SteeringPolicyTest, OneWorkerIsNeverSteered) {
  SteeringPolicy policy;
  EXPECT_EQ(policy.Decide(std::vector<int>{1000}), kByCpu);
}

// Two listeners on one port in one SO_REUSEPORT group, like the daemon's workers.
class SteeringGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      ASSERT_GE(fd, 0);
      int one = 1;
      ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = port_;
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
      ASSERT_EQ(::listen(fd, 64), 0);
      if (i == 0) {
        socklen_t len = sizeof addr;
        ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
        port_ = addr.sin_port;
      }
      listeners_.push_back(fd);
    }
  }
  void TearDown() override {
    for (int fd : listeners_) ::close(fd);
    for (int fd : clients_) ::close(fd);
  }

  // Connects once and returns which listener got the connection (-1 if none within 2 s).
  int ConnectAndSee() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = port_;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
    clients_.push_back(fd);
    pollfd fds[2] = {{listeners_[0], POLLIN, 0}, {listeners_[1], POLLIN, 0}};
    if (::poll(fds, 2, 2000) <= 0) return -1;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents & POLLIN) {
        int accepted = ::accept(listeners_[i], nullptr, nullptr);
        if (accepted >= 0) ::close(accepted);
        return i;
      }
    }
    return -1;
  }

  // Runs `f` on a thread pinned to `cpu`: a loopback connection's SYN is received on the CPU
  // that sends it.
  template <typename F>
  void OnCpu(int cpu, F f) {
    std::thread t([&] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
      f();
    });
    t.join();
  }

  in_port_t port_ = 0;
  std::vector<int> listeners_;
  std::vector<int> clients_;
};

TEST_F(SteeringGroupTest, AChosenWorkerGetsEveryConnection) {
  ASSERT_EQ(InstallSteering(listeners_[0], 2, 1), 0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ConnectAndSee(), 1);
  ASSERT_EQ(InstallSteering(listeners_[0], 2, 0), 0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ConnectAndSee(), 0);
}

TEST_F(SteeringGroupTest, ByCpuSendsAConnectionToTheReceivingCpusWorker) {
  ASSERT_GE(std::thread::hardware_concurrency(), 2u) << "needs two CPUs";
  ASSERT_EQ(InstallSteering(listeners_[0], 2, kByCpu), 0);
  for (int cpu : {0, 1, 0, 1}) {
    int got = -2;
    OnCpu(cpu, [&] { got = ConnectAndSee(); });
    EXPECT_EQ(got, cpu);
  }
}

TEST_F(SteeringGroupTest, AcceptSteeringRebalancesAndComesBack) {
  AcceptSteering steering(2);
  ASSERT_TRUE(steering.Start(listeners_[0]));
  EXPECT_EQ(steering.choice(), kByCpu);
  for (int i = 0; i < 9; ++i) steering.SessionOpened(0);  // all arrived on worker 0's CPU
  EXPECT_EQ(steering.choice(), 1);
  EXPECT_EQ(ConnectAndSee(), 1);
  for (int i = 0; i < 5; ++i) steering.SessionOpened(1);  // spread 4: balanced again
  EXPECT_EQ(steering.choice(), kByCpu);
  int got = -2;
  OnCpu(0, [&] { got = ConnectAndSee(); });
  EXPECT_EQ(got, 0);
  for (int i = 0; i < 9; ++i) steering.SessionClosed(0);
  for (int i = 0; i < 5; ++i) steering.SessionClosed(1);
}

}  // namespace
}  // namespace shardyard::proxy
