// The hashing and randomness primitives authentication needs (the only user of OpenSSL's libcrypto).
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

// Cryptographically secure random bytes.
void RandomBytes(std::span<uint8_t> out);
uint32_t RandomUint32();

std::string Base64Encode(std::span<const uint8_t> data);
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// Compares without leaking the position of the first difference through timing.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace shardyard::crypto
