// Implements SCRAM-SHA-256 and md5 authentication as pure state machines (no I/O).
#include "wire/auth.h"

#include <array>
#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "common/pg_error.h"
#include "common/strings.h"

namespace shardyard::wire {
namespace {

using crypto::AsBytes;
using crypto::Sha256Digest;

std::span<const uint8_t> DigestBytes(const Sha256Digest& d) { return {d.data(), d.size()}; }

std::string RandomNonce() {
  uint8_t raw[18];
  crypto::RandomBytes(raw);
  return crypto::Base64Encode(raw);
}

absl::Status Malformed(std::string_view what) {
  return PgFatalStatus(absl::StatusCode::kInvalidArgument, sqlstate::kProtocolViolation,
                       Cat("malformed SCRAM message (", what, ")"));
}

// Finds "<key>=" attribute value in a comma-separated SCRAM message.
bool Attribute(std::string_view message, char key, std::string_view* value) {
  for (std::string_view part : Split(message, ',')) {
    if (part.size() >= 2 && part[0] == key && part[1] == '=') {
      *value = part.substr(2);
      return true;
    }
  }
  return false;
}

struct DerivedKeys {
  Sha256Digest client_key;
  Sha256Digest server_key;
};

// PBKDF2 with PostgreSQL's 4096 iterations costs milliseconds of CPU; a server connection pool
// logs in with the same password and salt over and over, so the derived keys are cached
// (keyed by a hash of password, salt and iteration count, never the password itself).
DerivedKeys DeriveKeys(const std::string& password, const std::string& salt, int iterations) {
  static std::mutex mu;
  static absl::flat_hash_map<std::string, DerivedKeys> cache;
  Sha256Digest id = crypto::Sha256(AsBytes(Cat(iterations, ":", salt.size(), ":", salt, password)));
  std::string key(reinterpret_cast<const char*>(id.data()), id.size());
  {
    std::lock_guard lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  Sha256Digest salted = crypto::Pbkdf2HmacSha256(password, AsBytes(salt), iterations);
  DerivedKeys keys{ScramClientKey(salted), ScramServerKey(salted)};
  std::lock_guard lock(mu);
  if (cache.size() >= 1024) cache.clear();  // bounded: one entry per (password, server salt)
  cache.emplace(std::move(key), keys);
  return keys;
}

}  // namespace

ScramServerExchange::ScramServerExchange(ScramSecret secret, std::string server_nonce)
    : secret_(std::move(secret)),
      server_nonce_(server_nonce.empty() ? RandomNonce() : std::move(server_nonce)) {}

absl::StatusOr<std::string> ScramServerExchange::HandleClientFirst(std::string_view message) {
  if (step_ != 0) return Malformed("unexpected client-first-message");
  // gs2-header: "n,," or "y,," (no channel binding; we never offer SCRAM-SHA-256-PLUS).
  if (message.size() < 3 || (message[0] != 'n' && message[0] != 'y') || message[1] != ',') {
    if (!message.empty() && message[0] == 'p') {
      return PgFatalStatus(absl::StatusCode::kInvalidArgument, sqlstate::kProtocolViolation,
                           "channel binding is not supported");
    }
    return Malformed("gs2 header");
  }
  size_t second_comma = message.find(',', 2);
  if (second_comma == std::string_view::npos) return Malformed("gs2 header");
  gs2_header_ = std::string(message.substr(0, second_comma + 1));
  client_first_bare_ = std::string(message.substr(second_comma + 1));
  std::string_view client_nonce;
  if (!client_first_bare_.starts_with("n=") || !Attribute(client_first_bare_, 'r', &client_nonce) ||
      client_nonce.empty()) {
    return Malformed("client-first-message");
  }
  combined_nonce_ = Cat(client_nonce, server_nonce_);
  server_first_ = Cat("r=", combined_nonce_, ",s=", crypto::Base64Encode(AsBytes(secret_.salt)),
                      ",i=", secret_.iterations);
  step_ = 1;
  return server_first_;
}

absl::StatusOr<std::string> ScramServerExchange::HandleClientFinal(std::string_view message) {
  if (step_ != 1) return Malformed("unexpected client-final-message");
  step_ = 2;
  size_t proof_at = message.rfind(",p=");
  if (proof_at == std::string_view::npos) return Malformed("no proof");
  std::string_view without_proof = message.substr(0, proof_at);
  std::string_view channel, nonce;
  if (!Attribute(without_proof, 'c', &channel) || !Attribute(without_proof, 'r', &nonce)) {
    return Malformed("client-final-message");
  }
  if (channel != crypto::Base64Encode(AsBytes(gs2_header_))) return Malformed("channel binding");
  if (nonce != combined_nonce_) return Malformed("nonce mismatch");
  auto proof = crypto::Base64Decode(message.substr(proof_at + 3));
  if (!proof.ok() || proof->size() != 32) return Malformed("proof");

  std::string auth_message = Cat(client_first_bare_, ",", server_first_, ",", without_proof);
  Sha256Digest client_signature =
      crypto::HmacSha256(DigestBytes(secret_.stored_key), AsBytes(auth_message));
  for (size_t i = 0; i < 32; ++i) {
    client_key_[i] = static_cast<uint8_t>((*proof)[i]) ^ client_signature[i];
  }
  Sha256Digest check = crypto::Sha256(DigestBytes(client_key_));
  if (!crypto::ConstantTimeEqual(DigestBytes(check), DigestBytes(secret_.stored_key))) {
    return absl::UnauthenticatedError("SCRAM proof does not match");
  }
  Sha256Digest server_signature =
      crypto::HmacSha256(DigestBytes(secret_.server_key), AsBytes(auth_message));
  return Cat("v=", crypto::Base64Encode(DigestBytes(server_signature)));
}

ScramClientExchange::ScramClientExchange(std::string password, std::string client_nonce,
                                         std::string user)
    : password_(std::move(password)),
      client_nonce_(client_nonce.empty() ? RandomNonce() : std::move(client_nonce)),
      user_(std::move(user)) {}

ScramClientExchange ScramClientExchange::WithKeys(const Sha256Digest& client_key,
                                                  const Sha256Digest& server_key) {
  ScramClientExchange e("");
  e.have_keys_ = true;
  e.client_key_ = client_key;
  e.server_key_ = server_key;
  return e;
}

std::string ScramClientExchange::ClientFirst() const {
  // PostgreSQL ignores the SCRAM user name (the startup packet's counts); libpq sends it empty.
  return Cat("n,,n=", user_, ",r=", client_nonce_);
}

absl::StatusOr<std::string> ScramClientExchange::HandleServerFirst(std::string_view message) {
  std::string_view nonce, salt_b64, iter_text;
  int iterations = 0;
  if (!Attribute(message, 'r', &nonce) || !Attribute(message, 's', &salt_b64) ||
      !Attribute(message, 'i', &iter_text) || !ParseInt(iter_text, &iterations) || iterations < 1) {
    return Malformed("server-first-message");
  }
  if (!nonce.starts_with(client_nonce_) || nonce.size() == client_nonce_.size()) {
    return Malformed("server nonce");
  }
  auto salt = crypto::Base64Decode(salt_b64);
  if (!salt.ok()) return Malformed("salt");
  if (!have_keys_) {
    DerivedKeys keys = DeriveKeys(password_, *salt, iterations);
    client_key_ = keys.client_key;
    server_key_ = keys.server_key;
  }
  std::string without_proof = Cat("c=biws,r=", nonce);
  auth_message_ = Cat("n=", user_, ",r=", client_nonce_, ",", message, ",", without_proof);
  const Sha256Digest& client_key = client_key_;
  Sha256Digest stored_key = crypto::Sha256(DigestBytes(client_key));
  Sha256Digest client_signature =
      crypto::HmacSha256(DigestBytes(stored_key), AsBytes(auth_message_));
  Sha256Digest proof;
  for (size_t i = 0; i < 32; ++i) proof[i] = client_key[i] ^ client_signature[i];
  return Cat(without_proof, ",p=", crypto::Base64Encode(DigestBytes(proof)));
}

absl::Status ScramClientExchange::HandleServerFinal(std::string_view message) {
  std::string_view verifier;
  if (Attribute(message, 'e', &verifier)) {
    return absl::UnauthenticatedError(Cat("server rejected SCRAM: ", verifier));
  }
  if (!Attribute(message, 'v', &verifier)) return Malformed("server-final-message");
  Sha256Digest expected = crypto::HmacSha256(DigestBytes(server_key_), AsBytes(auth_message_));
  if (verifier != crypto::Base64Encode(DigestBytes(expected))) {
    return absl::UnauthenticatedError("server's SCRAM signature is wrong");
  }
  return absl::OkStatus();
}

namespace {

using Md5Text = std::array<char, 35>;  // "md5" and 32 hex digits

void Md5ResponseInto(std::string_view user, std::string_view password_or_secret,
                     std::string_view salt, Md5Text& out) {
  Md5Text secret;
  std::string_view secret_hex;
  if (crypto::IsMd5Secret(password_or_secret)) {
    secret_hex = password_or_secret.substr(3);
  } else {
    crypto::Md5Prefixed(password_or_secret, user, secret);  // a login computes two of these
    secret_hex = std::string_view(secret.data() + 3, 32);
  }
  crypto::Md5Prefixed(secret_hex, salt, out);
}

}  // namespace

std::string Md5Response(std::string_view user, std::string_view password_or_secret,
                        std::string_view salt) {
  Md5Text response;
  Md5ResponseInto(user, password_or_secret, salt, response);
  return std::string(response.data(), response.size());
}

bool Md5Verify(std::string_view user, std::string_view password_or_secret, std::string_view salt,
               std::string_view response) {
  Md5Text expected;
  Md5ResponseInto(user, password_or_secret, salt, expected);
  return crypto::ConstantTimeEqual(AsBytes({expected.data(), expected.size()}), AsBytes(response));
}

}  // namespace shardyard::wire
