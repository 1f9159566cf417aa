// Checks how a peer's address, kept from accept(2), reads in log lines.
#include "common/peer_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

namespace shardyard {
namespace {

PeerAddress V4(const char* text, uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, text, &in.sin_addr), 1);
  return PeerAddress::From(reinterpret_cast<const sockaddr*>(&in), sizeof in);
}

PeerAddress V6(const char* text, uint16_t port) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
  return PeerAddress::From(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
}

TEST(PeerAddressTest, IPv4AndIPv6ReadAsAddressAndPort) {
  EXPECT_EQ(V4("127.0.0.1", 5555).ToString(), "127.0.0.1:5555");
  EXPECT_EQ(V4("10.20.30.40", 65535).ToString(), "10.20.30.40:65535");
  EXPECT_EQ(V6("::1", 5555).ToString(), "[::1]:5555");
  EXPECT_EQ(V6("2001:db8::42", 6432).ToString(), "[2001:db8::42]:6432");
  // An IPv4 client of a dual-stack socket is the IPv4 address it is.
  EXPECT_EQ(V6("::ffff:192.0.2.7", 40000).ToString(), "192.0.2.7:40000");
}

TEST(PeerAddressTest, WhatIsNotATcpPeerIsUnknown) {
  EXPECT_FALSE(PeerAddress().known());
  EXPECT_EQ(PeerAddress().ToString(), "?");
  EXPECT_EQ(PeerAddress::From(nullptr, 0).ToString(), "?");
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_EQ(PeerAddress::From(reinterpret_cast<const sockaddr*>(&un), sizeof un).ToString(), "?");
  sockaddr_in truncated{};
  truncated.sin_family = AF_INET;
  truncated.sin_port = htons(1);
  EXPECT_EQ(PeerAddress::From(reinterpret_cast<const sockaddr*>(&truncated), 4).ToString(), "?");
}

TEST(PeerAddressTest, StaysSmallEnoughToKeepInEverySession) {
  // ClientSession places it in what was padding (see its layout comment).
  EXPECT_EQ(sizeof(PeerAddress), 18u);
  EXPECT_EQ(alignof(PeerAddress), 2u);
}

}  // namespace
}  // namespace shardyard
