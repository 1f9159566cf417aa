// What the proxy needs from an Asio socket that Asio's public API does not offer: its
// implementation (for the reactor read), non-blocking mode set once, a send that does not go
// through the event loop, and sole ownership of an accepted descriptor so that closing it costs
// no epoll_ctl.
#pragma once

// clang-format off
// The proxy's Asio types first: Asio's reactor headers expect the io_context to be declared.
#include "proxy/asio.h"
// clang-format on

#include <sys/socket.h>

#include <boost/asio/detail/socket_ops.hpp>
#include <cerrno>
#include <string_view>

namespace shardyard::proxy {

namespace socket_access_internal {

// Asio keeps a socket's implementation protected; this names it through a derived class, which
// the language allows without touching Asio.
struct SocketAccess : Socket {
  static auto& Impl(Socket& socket) {
    return (socket.*(&SocketAccess::impl_)).get_implementation();
  }
};

}  // namespace socket_access_internal

// The socket's implementation: its descriptor, state flags and reactor registration.
inline auto& SocketImpl(Socket& socket) {
  return socket_access_internal::SocketAccess::Impl(socket);
}

// Puts the descriptor in non-blocking mode for Asio's own operations (one ioctl, only the first
// time). False, with `ec` set, if the ioctl failed.
inline bool EnsureInternalNonBlocking(Socket& socket, error_code& ec) {
  namespace ops = asio::detail::socket_ops;
  auto& impl = SocketImpl(socket);
  return (impl.state_ & ops::internal_non_blocking) != 0 ||
         ops::set_internal_non_blocking(impl.socket_, impl.state_, true, ec);
}

// Puts the socket in non-blocking mode with one ioctl, for Asio's operations and for the proxy's
// own recv and send calls alike. (Asio's non_blocking(true) sets a flag of its own, and its
// first operation then sets the mode again with a second ioctl.)
inline error_code SetNonBlocking(Socket& socket) {
  error_code ec;
  if (EnsureInternalNonBlocking(socket, ec)) {
    SocketImpl(socket).state_ |= asio::detail::socket_ops::user_set_non_blocking;
  }
  return ec;
}

// Sends what the socket takes now, on a non-blocking socket: returns the bytes sent (0 when its
// buffer is full), or sets `ec` on any other failure.
inline size_t SendNow(Socket& socket, std::string_view bytes, error_code& ec) {
  ec.clear();
  while (true) {
    ssize_t n = ::send(socket.native_handle(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = error_code(errno, asio::error::get_system_category());
    }
    return 0;
  }
}

// What one non-blocking look (recv with MSG_PEEK) finds on a socket, without taking anything.
enum class Peeked { kBytes, kClosed, kNothing, kFailed };
inline Peeked Peek(Socket& socket) {
  while (true) {
    char byte;
    ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return Peeked::kBytes;
    if (n == 0) return Peeked::kClosed;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? Peeked::kNothing : Peeked::kFailed;
  }
}

// False when the socket's last reactor read emptied it and no readiness event has come since:
// the reactor's own record, read without a system call. A pooled server connection for which it
// is false has not been closed by its server, unless the event loop has not yet seen the close.
bool MayHaveInput(Socket& socket);

// Tells Asio that no other descriptor refers to this socket (true of one the proxy accepted, or
// took over with release() and assign()). Asio assumes the opposite for adopted descriptors and
// removes them from epoll with an epoll_ctl before closing; closing the only descriptor removes
// it by itself.
inline void MarkSoleOwner(Socket& socket) {
  SocketImpl(socket).state_ &= ~asio::detail::socket_ops::possible_dup;
}

}  // namespace shardyard::proxy
