// Tests the reactor read (proxy/reactor_read.h) on real loopback sockets: that a read re-armed
// with no system call after a short read still sees every byte that arrives later, whenever it
// arrives, and that end of file, errors, cancellation and a destroyed event loop end it properly.
#include "proxy/reactor_read.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace shardyard::proxy {
namespace {

using namespace std::chrono_literals;

struct Result {
  error_code ec;
  size_t n = 0;
  bool filled = false;
};

class ReactorReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Acceptor acceptor(io_.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer_.connect(acceptor.local_endpoint());
    ours_ = acceptor.accept();
    ours_.non_blocking(true);
  }

  // Starts a read into buf_ and returns where its result will land.
  std::shared_ptr<std::optional<Result>> Read(size_t room = 64) {
    auto result = std::make_shared<std::optional<Result>>();
    StartReactorRead(ours_, RecvInto({buf_.data(), room}),
                     [result](const error_code& ec, size_t n, bool filled) {
                       *result = Result{ec, n, filled};
                     });
    return result;
  }

  // Runs the event loop until `result` is set or two seconds pass.
  bool RunUntil(const std::shared_ptr<std::optional<Result>>& result) {
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!result->has_value() && std::chrono::steady_clock::now() < deadline) {
      io_.run_one_for(10ms);
    }
    io_.restart();
    return result->has_value();
  }

  // Runs the event loop for 50 ms with no read queued: a readiness event that comes in the
  // meantime finds no read to perform (a timer keeps the loop and its epoll_wait running).
  void HandleEventsWithNoReadQueued() {
    Timer timer(io_.get_executor());
    timer.expires_after(50ms);
    bool fired = false;
    timer.async_wait([&fired](const error_code&) { fired = true; });
    while (!fired) io_.run_one();
    io_.restart();
  }

  void Send(std::string_view bytes) {
    asio::write(peer_, asio::buffer(bytes.data(), bytes.size()));
  }
  std::string Got(const Result& r) const { return std::string(buf_.data(), r.n); }

  asio::io_context io_{1};
  tcp::socket peer_{io_};
  Socket ours_{io_.get_executor()};
  std::array<char, 64> buf_{};
};

TEST_F(ReactorReadTest, AReadQueuedAfterAShortReadCompletesWhenMoreArrives) {
  Send("abc");
  auto first = Read();
  ASSERT_TRUE(RunUntil(first));
  EXPECT_FALSE((*first)->ec);
  EXPECT_EQ(Got(**first), "abc");
  EXPECT_FALSE((*first)->filled);

  // The socket is empty and the next read is queued without being tried: it must still wake.
  auto second = Read();
  io_.poll();
  io_.restart();
  EXPECT_FALSE(second->has_value());
  Send("de");
  ASSERT_TRUE(RunUntil(second));
  EXPECT_FALSE((*second)->ec);
  EXPECT_EQ(Got(**second), "de");
}

TEST_F(ReactorReadTest, BytesThatArriveWhileNoReadIsQueuedAreNotLost) {
  Send("abc");
  auto first = Read();
  ASSERT_TRUE(RunUntil(first));
  ASSERT_EQ(Got(**first), "abc");

  // The readiness event for these bytes is handled while no read is queued.
  Send("late");
  HandleEventsWithNoReadQueued();
  auto second = Read();
  ASSERT_TRUE(RunUntil(second));
  EXPECT_FALSE((*second)->ec);
  EXPECT_EQ(Got(**second), "late");
}

TEST_F(ReactorReadTest, BytesThatArriveBeforeTheirEventIsHandledAreNotLost) {
  Send("abc");
  auto first = Read();
  ASSERT_TRUE(RunUntil(first));
  ASSERT_EQ(Got(**first), "abc");

  // The event for these bytes is still pending when the next read starts.
  Send("next");
  auto second = Read();
  ASSERT_TRUE(RunUntil(second));
  EXPECT_FALSE((*second)->ec);
  EXPECT_EQ(Got(**second), "next");
}

TEST_F(ReactorReadTest, AReadThatFillsItsRoomSaysSoAndTheRestFollows) {
  Send("0123456789");
  HandleEventsWithNoReadQueued();  // so no pending event would rescue a wrongly parked read
  auto first = Read(4);
  ASSERT_TRUE(RunUntil(first));
  EXPECT_EQ(Got(**first), "0123");
  EXPECT_TRUE((*first)->filled);
  auto second = Read(64);
  ASSERT_TRUE(RunUntil(second));
  EXPECT_EQ(Got(**second), "456789");
  EXPECT_FALSE((*second)->filled);
}

TEST_F(ReactorReadTest, EndOfFileEndsTheRead) {
  Send("x");
  auto first = Read();
  ASSERT_TRUE(RunUntil(first));
  auto second = Read();
  peer_.close();
  ASSERT_TRUE(RunUntil(second));
  EXPECT_EQ((*second)->ec, asio::error::eof);
}

TEST_F(ReactorReadTest, CancelAndCloseAbortAQueuedRead) {
  auto read = Read();
  ours_.cancel();
  ASSERT_TRUE(RunUntil(read));
  EXPECT_EQ((*read)->ec, asio::error::operation_aborted);

  auto next = Read();
  ours_.close();
  ASSERT_TRUE(RunUntil(next));
  EXPECT_EQ((*next)->ec, asio::error::operation_aborted);
}

TEST(ReactorReadLifetimeTest, ADestroyedEventLoopReleasesAReadWithoutRunningIt) {
  auto io = std::make_unique<asio::io_context>(1);
  auto owner = std::make_shared<int>(0);
  bool ran = false;
  {
    Acceptor acceptor(io->get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket peer(*io);
    peer.connect(acceptor.local_endpoint());
    Socket ours = acceptor.accept();
    std::array<char, 16> buf{};
    StartReactorRead(ours, RecvInto(buf),
                     [owner, &ran](const error_code&, size_t, bool) { ran = true; });
    io->poll();
    EXPECT_EQ(owner.use_count(), 2);  // queued, holding its handler
  }  // closing the socket completes the read with operation_aborted, but nothing runs it
  io.reset();
  EXPECT_FALSE(ran);
  EXPECT_EQ(owner.use_count(), 1);
}

}  // namespace
}  // namespace shardyard::proxy
