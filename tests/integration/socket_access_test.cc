// Tests the socket helpers of proxy/socket_access.h on real loopback sockets: non-blocking mode
// set with one call works for Asio and for plain recv, a send takes what fits and reports real
// failures, a socket marked as the descriptor's sole owner still leaves its event loop's epoll
// set when it is closed, and MayHaveInput follows the reactor's readiness record.
#include "proxy/socket_access.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "proxy/reactor_read.h"

namespace shardyard::proxy {
namespace {

class SocketAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Acceptor acceptor(io_.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer_.connect(acceptor.local_endpoint());
    ours_ = acceptor.accept();  // adopted by Asio: it assumes the descriptor may be shared
  }

  // Whether `fd` is registered in any epoll set of this process (the event loop's), from the
  // kernel's own account in /proc/self/fdinfo.
  static bool InSomeEpollSet(int fd) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(entry.path(), ec);
      if (ec || target.string() != "anon_inode:[eventpoll]") continue;
      std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
      std::string line;
      while (std::getline(info, line)) {
        int registered = -1;  // lines read "tfd:       14 events: ..."
        if (std::sscanf(line.c_str(), "tfd: %d", &registered) == 1 && registered == fd) return true;
      }
    }
    return false;
  }

  // Starts an Asio wait so the socket is registered with the event loop, as the proxy's are.
  void Register(Socket& socket) {
    socket.async_wait(Socket::wait_read, [](const error_code&) {});
    io_.poll();
    io_.restart();
  }

  asio::io_context io_{1};
  tcp::socket peer_{io_};
  Socket ours_{io_.get_executor()};
};

TEST_F(SocketAccessTest, SetNonBlockingMakesPlainRecvReturnAtOnce) {
  const int fd = ours_.native_handle();
  ASSERT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_FALSE(SetNonBlocking(ours_));
  EXPECT_NE(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_TRUE(ours_.non_blocking());  // Asio knows, so it sets nothing again
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), -1);  // would block forever if the mode were not set
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
}

TEST_F(SocketAccessTest, AsioReadsStillWorkAfterSetNonBlocking) {
  ASSERT_FALSE(SetNonBlocking(ours_));
  std::array<char, 8> buf{};
  size_t got = 0;
  error_code result = asio::error::would_block;
  ours_.async_read_some(asio::buffer(buf), [&](const error_code& ec, size_t n) {
    result = ec;
    got = n;
  });
  asio::write(peer_, asio::buffer("hi", 2));
  io_.run_for(std::chrono::seconds(2));
  EXPECT_FALSE(result);
  EXPECT_EQ(std::string(buf.data(), got), "hi");
}

TEST_F(SocketAccessTest, SendNowTakesWhatFitsAndLeavesTheRest) {
  ASSERT_FALSE(SetNonBlocking(ours_));
  error_code ec;
  EXPECT_EQ(SendNow(ours_, "hello", ec), 5u);
  EXPECT_FALSE(ec);
  const std::string big(64 << 20, 'x');  // far more than loopback buffers hold
  size_t sent = SendNow(ours_, big, ec);
  EXPECT_FALSE(ec);
  EXPECT_GT(sent, 0u);
  EXPECT_LT(sent, big.size());
  EXPECT_EQ(SendNow(ours_, "more", ec), 0u);  // full: nothing taken, no error
  EXPECT_FALSE(ec);
  std::array<char, 5> got{};
  asio::read(peer_, asio::buffer(got));
  EXPECT_EQ(std::string(got.data(), got.size()), "hello");
}

TEST_F(SocketAccessTest, SendNowReportsAClosedPeer) {
  ASSERT_FALSE(SetNonBlocking(ours_));
  peer_.set_option(asio::socket_base::linger(true, 0));
  peer_.close();  // reset: the next send fails
  error_code ec;
  for (int i = 0; i < 100 && !ec; ++i) SendNow(ours_, "after the reset", ec);
  EXPECT_TRUE(ec == asio::error::connection_reset || ec == asio::error::broken_pipe) << ec;
}

TEST_F(SocketAccessTest, ASoleOwnersSocketLeavesTheEpollSetWhenClosed) {
  Register(ours_);
  const int fd = ours_.native_handle();
  ASSERT_TRUE(InSomeEpollSet(fd));
  MarkSoleOwner(ours_);
  ours_.close();  // no epoll_ctl: closing the only descriptor removes it
  EXPECT_FALSE(InSomeEpollSet(fd));
  char c;
  error_code ec;
  EXPECT_EQ(peer_.read_some(asio::buffer(&c, 1), ec), 0u);  // and the peer sees it closed
  EXPECT_EQ(ec, asio::error::eof);
}

// Why MarkSoleOwner is only for descriptors nothing else holds: with a duplicate open, closing
// ours leaves the registration behind unless Asio removes it, which it does when not told
// otherwise.
TEST_F(SocketAccessTest, ASharedDescriptorNeedsAsiosOwnRemoval) {
  Register(ours_);
  const int fd = ours_.native_handle();
  const int dup = ::dup(fd);
  ASSERT_GE(dup, 0);
  ours_.close();  // Asio removes it from epoll first (possible_dup)
  EXPECT_FALSE(InSomeEpollSet(fd));
  ::close(dup);

  Socket other(io_.get_executor());
  {
    Acceptor acceptor(io_.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket peer(io_);
    peer.connect(acceptor.local_endpoint());
    other = acceptor.accept();
  }
  Register(other);
  const int fd2 = other.native_handle();
  const int dup2 = ::dup(fd2);
  ASSERT_GE(dup2, 0);
  MarkSoleOwner(other);
  other.close();  // wrongly told it is the only one: the registration outlives the socket
  EXPECT_TRUE(InSomeEpollSet(fd2));
  ::close(dup2);
}

TEST_F(SocketAccessTest, MayHaveInputIsFalseOnlyWhileNothingArrivedSinceADrainingRead) {
  SetNonBlocking(ours_);
  Register(ours_);
  EXPECT_TRUE(MayHaveInput(ours_)) << "a fresh registration knows nothing yet";
  // As in the proxy, the event loop always has work, so poll() also polls epoll.
  auto work = asio::make_work_guard(io_);
  std::array<char, 64> buf{};
  auto drain = [&] {
    size_t got = 0;
    StartReactorRead(ours_, RecvInto(buf), [&](const error_code& ec, size_t n, bool) {
      ASSERT_FALSE(ec) << ec.message();
      got = n;
    });
    io_.poll();
    io_.restart();
    return got;
  };
  asio::write(peer_, asio::buffer(std::string_view("ready")));
  EXPECT_EQ(drain(), 5u);
  EXPECT_FALSE(MayHaveInput(ours_)) << "a short read emptied the socket";
  io_.poll();  // no event: still nothing
  io_.restart();
  EXPECT_FALSE(MayHaveInput(ours_));

  asio::write(peer_, asio::buffer(std::string_view("N")));  // e.g. an unsolicited message
  io_.poll();  // the event loop sees the readiness event with no read queued
  io_.restart();
  EXPECT_TRUE(MayHaveInput(ours_));
  EXPECT_EQ(drain(), 1u);
  EXPECT_FALSE(MayHaveInput(ours_));

  peer_.close();  // the server went away while the connection was idle
  io_.poll();
  io_.restart();
  EXPECT_TRUE(MayHaveInput(ours_));
}

}  // namespace
}  // namespace shardyard::proxy
