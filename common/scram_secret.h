// PostgreSQL's stored SCRAM-SHA-256 password form, shared by config validation and authentication.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/crypto.h"

namespace shardyard {

struct ScramSecret {
  int iterations = 4096;
  std::string salt;  // raw bytes
  crypto::Sha256Digest stored_key{};
  crypto::Sha256Digest server_key{};

  // Parses "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
  static absl::StatusOr<ScramSecret> Parse(std::string_view text);
  // Derives the secret from a password (PBKDF2-HMAC-SHA-256), as CREATE ROLE ... PASSWORD does.
  static ScramSecret FromPassword(std::string_view password, std::string salt, int iterations);
  std::string ToString() const;
};

// SCRAM's key derivations (RFC 5802).
crypto::Sha256Digest ScramClientKey(const crypto::Sha256Digest& salted_password);
crypto::Sha256Digest ScramServerKey(const crypto::Sha256Digest& salted_password);

}  // namespace shardyard
