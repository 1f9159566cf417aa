// Parses, derives and prints SCRAM-SHA-256 secrets.
#include "common/scram_secret.h"

#include <cstring>

#include "common/strings.h"

namespace shardyard {
namespace {
std::span<const uint8_t> DigestBytes(const crypto::Sha256Digest& d) { return {d.data(), d.size()}; }
}  // namespace

crypto::Sha256Digest ScramClientKey(const crypto::Sha256Digest& salted) {
  return crypto::HmacSha256(DigestBytes(salted), crypto::AsBytes("Client Key"));
}

crypto::Sha256Digest ScramServerKey(const crypto::Sha256Digest& salted) {
  return crypto::HmacSha256(DigestBytes(salted), crypto::AsBytes("Server Key"));
}

absl::StatusOr<ScramSecret> ScramSecret::Parse(std::string_view text) {
  std::vector<std::string_view> parts = Split(text, '$');
  if (parts.size() != 3 || parts[0] != "SCRAM-SHA-256") {
    return absl::InvalidArgumentError("not a SCRAM-SHA-256 secret");
  }
  std::vector<std::string_view> iter_salt = Split(parts[1], ':');
  std::vector<std::string_view> keys = Split(parts[2], ':');
  ScramSecret s;
  if (iter_salt.size() != 2 || keys.size() != 2 || !ParseInt(iter_salt[0], &s.iterations) ||
      s.iterations < 1) {
    return absl::InvalidArgumentError("malformed SCRAM secret");
  }
  auto salt = crypto::Base64Decode(iter_salt[1]);
  auto stored = crypto::Base64Decode(keys[0]);
  auto server = crypto::Base64Decode(keys[1]);
  if (!salt.ok() || salt->empty() || !stored.ok() || !server.ok() || stored->size() != 32 ||
      server->size() != 32) {
    return absl::InvalidArgumentError("malformed SCRAM secret");
  }
  s.salt = *std::move(salt);
  std::memcpy(s.stored_key.data(), stored->data(), 32);
  std::memcpy(s.server_key.data(), server->data(), 32);
  return s;
}

ScramSecret ScramSecret::FromPassword(std::string_view password, std::string salt, int iterations) {
  ScramSecret s;
  s.iterations = iterations;
  s.salt = std::move(salt);
  crypto::Sha256Digest salted =
      crypto::Pbkdf2HmacSha256(password, crypto::AsBytes(s.salt), iterations);
  s.stored_key = crypto::Sha256(DigestBytes(ScramClientKey(salted)));
  s.server_key = ScramServerKey(salted);
  return s;
}

std::string ScramSecret::ToString() const {
  return Cat("SCRAM-SHA-256$", iterations, ":", crypto::Base64Encode(crypto::AsBytes(salt)), "$",
             crypto::Base64Encode(DigestBytes(stored_key)), ":",
             crypto::Base64Encode(DigestBytes(server_key)));
}

}  // namespace shardyard
