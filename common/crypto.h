// The hashing and randomness primitives authentication needs (the only user of OpenSSL's
// libcrypto).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace shardyard::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::span<const uint8_t> data);
Sha256Digest HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
Sha256Digest Pbkdf2HmacSha256(std::string_view password, std::span<const uint8_t> salt,
                              int iterations);
// Lowercase hex of MD5(data), as PostgreSQL's md5 authentication uses it.
std::string Md5Hex(std::string_view data);
// The same for the concatenation of `first` and `second`, written to `out` (no allocation).
void Md5Hex(std::string_view first, std::string_view second, std::span<char, 32> out);
// "md5" + hex MD5(first || second), written to `out` (no allocation): the shape of PostgreSQL's
// md5 secrets and of the md5 login response.
void Md5Prefixed(std::string_view first, std::string_view second, std::span<char, 35> out);
// "md5" + md5(password + user): what PostgreSQL stores for md5 passwords.
std::string Md5Secret(std::string_view user, std::string_view password);

// Cryptographically secure random bytes.
void RandomBytes(std::span<uint8_t> out);
uint32_t RandomUint32();

std::string Base64Encode(std::span<const uint8_t> data);
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// Compares without leaking the position of the first difference through timing.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

// PostgreSQL's md5 password secret: "md5" followed by 32 hex digits.
inline bool IsMd5Secret(std::string_view s) {
  if (s.size() != 35 || !s.starts_with("md5")) return false;
  for (char c : s.substr(3)) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace shardyard::crypto
