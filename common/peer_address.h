// A connection's peer address and port in 18 bytes, kept from accept(2) for log lines.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>

namespace shardyard {

// Kept rather than asked of the socket when a line is logged: once the peer has reset the
// connection, getpeername(2) fails. An IPv4 address is kept as an IPv4-mapped IPv6 one, so one
// 16-byte layout serves both, and a dual-stack socket's IPv4 clients print as IPv4.
class PeerAddress {
 public:
  PeerAddress() = default;  // unknown: prints "?"
  // What accept(2) filled in; anything but AF_INET and AF_INET6 is unknown.
  static PeerAddress From(const sockaddr* addr, socklen_t length);

  bool known() const { return port_ != 0; }  // a TCP peer never has port 0
  std::string ToString() const;              // "127.0.0.1:5555", "[::1]:5555" or "?"

 private:
  std::array<uint8_t, 16> address_{};  // network byte order
  uint16_t port_ = 0;                  // host byte order
};

}  // namespace shardyard
