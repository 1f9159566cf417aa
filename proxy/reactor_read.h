// A socket read that the event loop performs when the socket turns readable, and that re-arms
// without a system call after a read that emptied the socket.
//
// Asio cannot re-arm for free: its async_wait re-arms with an epoll_ctl(MOD) every time, and its
// async_read_some first tries a recv that fails whenever the peer has not answered yet. Both are
// paid on every transaction, for the idle client and for the server's reply. This operation
// tells Asio's epoll reactor, when a read came back short, that the socket is exhausted (as Asio
// itself does for short writes), so the reactor queues the next read without trying it; the
// next edge-triggered readiness event performs it. A readiness event that arrives while no read
// is queued makes the reactor try the next one at once, so no wake-up is lost.
//
// Other reads on the same socket (Asio's, or plain recv calls) do not break this. Two caveats.
// An Asio read that sees end of file marks the socket exhausted too, and no later event comes, so
// a reactor read must not follow one; sessions and server connections close at end of file. And
// bytes followed at once by the peer's close can arrive as one event: the read that takes the
// bytes is short, so the end of file waits for an event that never comes. A caller that would
// not otherwise notice the close (nothing it writes will fail) reads or peeks once before it
// waits, as ClientSession::ArmClientWait and the pump (mid-response) do.
#pragma once

#include <sys/socket.h>

// clang-format off
// The proxy's Asio types first: Asio's reactor headers expect the io_context to be declared.
#include "proxy/asio.h"
#include "proxy/socket_access.h"
// clang-format on

#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <cerrno>
#include <span>
#include <utility>

namespace shardyard::proxy {

namespace reactor_read_internal {

// The epoll reactor of the calling worker's event loop (one per thread: looked up once).
inline asio::detail::reactor& ReactorOf(asio::io_context& context) {
  thread_local asio::io_context* cached_context = nullptr;
  thread_local asio::detail::reactor* cached = nullptr;
  if (cached_context != &context) {
    cached = &asio::use_service<asio::detail::reactor>(context);
    cached_context = &context;
  }
  return *cached;
}

// `Fill(fd)` reads without blocking and keeps what it read. It returns {recv's result (or -1
// with errno set), bytes asked for}.
template <typename Fill, typename Handler>
class ReadOp final : public asio::detail::reactor_op {
 public:
  using Allocator = asio::recycling_allocator<ReadOp>;

  ReadOp(int fd, Fill fill, Handler handler)
      : reactor_op(error_code(), &ReadOp::Perform, &ReadOp::Complete),
        fd_(fd),
        fill_(std::move(fill)),
        handler_(std::move(handler)) {}

 private:
  static status Perform(reactor_op* base) {
    auto* op = static_cast<ReadOp*>(base);
    while (true) {
      auto [n, asked] = op->fill_(op->fd_);
      if (n > 0) {
        op->bytes_transferred_ = static_cast<size_t>(n);
        op->filled_ = static_cast<size_t>(n) == asked;
        // A short read emptied the socket: the next read waits for the next event.
        return op->filled_ ? done : done_and_exhausted;
      }
      if (n == 0) {
        op->ec_ = asio::error::eof;
        return done;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      op->ec_ = error_code(errno, asio::error::get_system_category());
      return done;
    }
  }

  // owner is null when the event loop is destroyed with the read still queued.
  static void Complete(void* owner, asio::detail::operation* base, const error_code&, size_t) {
    auto* op = static_cast<ReadOp*>(base);
    Handler handler(std::move(op->handler_));
    const error_code ec = op->ec_;
    const size_t n = op->bytes_transferred_;
    const bool filled = op->filled_;
    Allocator alloc;
    op->~ReadOp();
    alloc.deallocate(op, 1);
    if (owner != nullptr) handler(ec, n, filled);
  }

  int fd_;
  bool filled_ = false;
  Fill fill_;
  Handler handler_;
};

}  // namespace reactor_read_internal

// Starts the read; `handler(error_code, bytes, filled)` runs on the socket's event loop, with
// operation_aborted if the socket is cancelled or closed first; `filled` says the read took all
// the room it had, so more may be waiting. One read at a time per socket.
template <typename Fill, typename Handler>
void StartReactorRead(Socket& socket, Fill fill, Handler handler) {
  using Op = reactor_read_internal::ReadOp<Fill, Handler>;
  error_code ec;
  if (!EnsureInternalNonBlocking(socket, ec)) {
    asio::post(socket.get_executor(),
               [handler = std::move(handler), ec]() mutable { handler(ec, size_t{0}, false); });
    return;
  }
  auto& impl = SocketImpl(socket);
  typename Op::Allocator alloc;
  Op* op = alloc.allocate(1);
  new (op) Op(impl.socket_, std::move(fill), std::move(handler));
  auto& reactor = reactor_read_internal::ReactorOf(socket.get_executor().context());
  reactor.start_op(asio::detail::reactor::read_op, impl.socket_, impl.reactor_data_, op,
                   /*is_continuation=*/false, /*allow_speculative=*/true);
}

// Fill for reading into a fixed span.
inline auto RecvInto(std::span<char> space) {
  return [space](int fd) {
    return std::pair<ssize_t, size_t>(::recv(fd, space.data(), space.size(), 0), space.size());
  };
}

}  // namespace shardyard::proxy
