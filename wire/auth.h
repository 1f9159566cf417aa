// Sans-io password authentication: SCRAM-SHA-256 (both sides, RFC 5802/7677) and md5.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/crypto.h"
#include "common/scram_secret.h"

namespace shardyard::wire {

// The server side of a SCRAM exchange: Shardyard checking a client's password.
class ScramServerExchange {
 public:
  // `server_nonce` is random unless given (tests pass known vectors).
  explicit ScramServerExchange(ScramSecret secret, std::string server_nonce = "");

  // client-first-message (SASLInitialResponse data) → server-first-message.
  absl::StatusOr<std::string> HandleClientFirst(std::string_view message);
  // client-final-message (SASLResponse data) → server-final-message. Fails with
  // kUnauthenticated if the proof is wrong.
  absl::StatusOr<std::string> HandleClientFinal(std::string_view message);

  // The client's ClientKey, recovered from a correct proof.
  const crypto::Sha256Digest& client_key() const { return client_key_; }

 private:
  ScramSecret secret_;
  std::string server_nonce_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string combined_nonce_;
  crypto::Sha256Digest client_key_{};
  int step_ = 0;
};

// The client side of a SCRAM exchange: Shardyard logging in to a PostgreSQL server.
class ScramClientExchange {
 public:
  // Authenticates with the plain password; `client_nonce` is random unless given.
  explicit ScramClientExchange(std::string password, std::string client_nonce = "",
                               std::string user = "");
  // Authenticates with keys instead of the password (SCRAM passthrough): the ClientKey a client
  // proved, and the ServerKey of the stored secret. Works when the server stores that secret.
  static ScramClientExchange WithKeys(const crypto::Sha256Digest& client_key,
                                      const crypto::Sha256Digest& server_key);

  // client-first-message, for SASLInitialResponse.
  std::string ClientFirst() const;
  // server-first-message → client-final-message.
  absl::StatusOr<std::string> HandleServerFirst(std::string_view message);
  // server-final-message: verifies the server knew the password too.
  absl::Status HandleServerFinal(std::string_view message);

 private:
  std::string password_;
  std::string client_nonce_;
  std::string user_;
  std::string auth_message_;
  bool have_keys_ = false;
  crypto::Sha256Digest client_key_{};
  crypto::Sha256Digest server_key_{};
};

// The PasswordMessage body for an md5 challenge; `password_or_secret` may be a stored md5 secret.
std::string Md5Response(std::string_view user, std::string_view password_or_secret,
                        std::string_view salt);
// Checks a client's md5 response against a plain password or md5 secret.
bool Md5Verify(std::string_view user, std::string_view password_or_secret, std::string_view salt,
               std::string_view response);

}  // namespace shardyard::wire
