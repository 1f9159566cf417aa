// What a client session needs of the daemon that runs it, as a narrow interface: sessions do not
// include the daemon (no include cycle), and a test can host sessions without one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/scram_secret.h"
#include "config/config.h"

namespace shardyard::proxy {

class ClientSession;
class Pool;

// Contract: called from any worker's thread (implementations synchronise); every call is made
// at login, at a cancel or at the session's end, never per transaction.
class SessionHost {
 public:
  virtual ~SessionHost() = default;

  // The configuration in force (a reload swaps it; a session keeps the one it logged in with).
  virtual std::shared_ptr<const config::Config> config() const = 0;
  virtual bool shutting_down() const = 0;

  // Counts connected clients; false when `max_clients` is already reached.
  virtual bool AdmitClient(int max_clients) = 0;
  // An admitted client is gone.
  virtual void ClientGone() = 0;
  // A client session on `worker` ended (admitted or not).
  virtual void SessionEnded(int worker) = 0;

  // The pool serving (database, user). Created on first use.
  virtual absl::StatusOr<std::shared_ptr<Pool>> PoolFor(const config::Config& config,
                                                        const config::Database& database,
                                                        const std::string& user) = 0;
  // The SCRAM secret to check a user's password against.
  virtual ScramSecret ScramSecretFor(const config::User& user) = 0;

  // The BackendKeyData of each client, for CancelRequests: Register gives a session its
  // process id and secret key, Find looks a session up by them (the secret must match).
  virtual std::pair<int32_t, int32_t> RegisterClient(
      const std::shared_ptr<ClientSession>& session) = 0;
  virtual void UnregisterClient(int32_t process_id) = 0;
  virtual std::shared_ptr<ClientSession> FindClient(int32_t process_id, int32_t secret_key) = 0;
};

}  // namespace shardyard::proxy
