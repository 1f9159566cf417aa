// Converts accept(2)'s socket address to the compact PeerAddress and formats it for logs.
#include "common/peer_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "common/strings.h"

namespace shardyard {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

PeerAddress PeerAddress::From(const sockaddr* addr, socklen_t length) {
  PeerAddress peer;
  if (addr == nullptr) return peer;
  if (addr->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in;
    std::memcpy(&in, addr, sizeof in);
    std::memcpy(peer.address_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
    std::memcpy(peer.address_.data() + kV4MappedPrefix.size(), &in.sin_addr, 4);
    peer.port_ = ntohs(in.sin_port);
  } else if (addr->sa_family == AF_INET6 &&
             length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr, sizeof in6);
    std::memcpy(peer.address_.data(), &in6.sin6_addr, peer.address_.size());
    peer.port_ = ntohs(in6.sin6_port);
  }
  return peer;
}

std::string PeerAddress::ToString() const {
  if (!known()) return "?";
  char text[INET6_ADDRSTRLEN];
  if (std::memcmp(address_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0) {
    if (inet_ntop(AF_INET, address_.data() + kV4MappedPrefix.size(), text, sizeof text) ==
        nullptr) {
      return "?";
    }
    return Cat(text, ":", port_);
  }
  if (inet_ntop(AF_INET6, address_.data(), text, sizeof text) == nullptr) return "?";
  return Cat("[", text, "]:", port_);
}

}  // namespace shardyard
