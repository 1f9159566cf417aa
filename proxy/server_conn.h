// One connection from Shardyard to a PostgreSQL server: login, the state the proxy tracks from its
// messages, and the internal queries the pool runs on it (parameter restore, rollback, reset).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/close_reason.h"
#include "common/crypto.h"
#include "config/config.h"
#include "pool/pool_core.h"
#include "pool/session_params.h"
#include "proxy/asio.h"
#include "wire/backend_scanner.h"
#include "wire/buffer.h"
#include "wire/messages.h"

namespace shardyard::proxy {

// Where and as whom a pool's server connections log in. Immutable; replaced on reload.
struct ServerTarget {
  config::Endpoint endpoint;
  std::string database;  // the name on the server
  std::string user;
  std::string password;  // plain, md5 secret or SCRAM secret; empty for trust
  Duration connect_timeout = std::chrono::seconds(5);
  uint64_t generation = 0;  // bumped when the endpoint, database or password changes
};

// SCRAM keys learned from a client that logged in with the same secret; they let Shardyard log
// in to a server that stores that secret without knowing the plain password.
struct ScramClientKeys {
  crypto::Sha256Digest client_key{};
  crypto::Sha256Digest server_key{};
};

class ClientSession;

class ServerConn {
 public:
  ServerConn(const Executor& executor, int home, uint64_t id,
             std::shared_ptr<const ServerTarget> target);

  // Moves the socket to another worker's event loop (which then watches it). Only while no
  // operation is pending on it: between clients.
  void MoveTo(const Executor& executor, int home);
  int home() const { return home_; }

  // Connects and logs in (within target.connect_timeout). A login the server refuses comes back
  // as its ErrorResponse (FATAL), ready to relay to a client.
  Task<absl::Status> Connect(const std::shared_ptr<const ScramClientKeys>& scram_keys);

  // Sends `messages` (whole protocol messages) and reads replies until `ready_count`
  // ReadyForQuery messages, tracking ParameterStatus and collecting DataRows into `rows` if
  // given. Returns the first ErrorResponse as a status, or an I/O failure (after which the
  // connection is unusable).
  Task<absl::Status> RunInternal(const std::string& messages, int ready_count,
                                 std::vector<wire::be::DataRow>* rows = nullptr);

  // Reads and discards replies until `ready_count` ReadyForQuery messages (a client left with
  // requests outstanding), continuing from `scanner`'s position in the stream (the pump may have
  // stopped in the middle of a message). Answers a CopyInResponse with CopyFail.
  Task<absl::Status> Drain(int ready_count, wire::BackendScanner& scanner);

  // True if the server closed the connection or sent something while idle (checked without
  // blocking just before the connection is handed to a client).
  bool IsStale();
  // False when nothing can have arrived since the last read emptied the socket (no system call).
  bool MayHaveInput();

  void Close();

  // Bytes read past the last internal reply (rare: an asynchronous notice); the pump forwards
  // them before reading the socket.
  std::string TakeBuffered();

  uint64_t id() const { return id_; }
  Socket& socket() { return socket_; }
  const ServerTarget& target() const { return *target_; }
  bool usable() const { return usable_; }
  void set_unusable() { usable_ = false; }

  // State the proxy tracks from the server's messages.
  pool::SharedParams params;
  // The parameters this server reports with ParameterStatus (the set it sent at login): which
  // those are depends on the server's version (search_path only from PostgreSQL 18).
  pool::SharedParams reported;
  wire::be::TxStatus tx_status = wire::be::TxStatus::kIdle;
  wire::be::BackendKeyData key;
  pool::TimePoint created_at;

  // Relaying this connection's replies to the client it serves: the bytes read and not yet
  // forwarded, and where the scan of the message stream stands. They belong to the server
  // connection, not to each client session, so that idle clients carry neither.
  wire::ByteBuffer relay_buf;
  // The relay stops on the message types the client session acts on: ReadyForQuery,
  // ParameterStatus, ErrorResponse and the CopyIn/CopyBoth responses.
  wire::BackendScanner relay_scanner{"ZSEGW"};

  // Pipelining (transaction mode; touched only on this connection's worker). While `lead`, a
  // client session, still waits for the reply to its last request, the connection is already
  // granted to the next client: follow_grant while that grant is on its way, then `follower`,
  // whose request may already be written behind the lead's.
  ClientSession* lead = nullptr;
  std::shared_ptr<ClientSession> follower;
  bool follow_grant = false;
  // The lead forwarded a cancel: it may land on the request behind the lead's instead.
  bool lead_cancelled = false;
  // ReadyForQuery messages still owed to a lead that left early: the next owner skips them.
  int skip_ready = 0;

  // Cancel requests sent for this connection and not yet finished; guarded by the pool's mutex.
  int cancels_in_flight = 0;
  bool release_pending = false;  // released while a cancel was in flight
  // Discarded while a cancel was in flight: closed, with this reason, once the cancel has landed
  // (the delivery still refers to this object).
  std::optional<CloseReason> close_pending;

  // Updates `params` for a ParameterStatus message body (copy-on-write).
  void OnParameterStatus(std::string_view body);
  // After DISCARD ALL: the settings PostgreSQL does not report are back to the server's
  // defaults, so `params` keeps only the reported ones (which it learned from the
  // ParameterStatus messages the reset sent).
  void ForgetUnreportedParams();

 private:
  Task<absl::Status> ConnectAndLogin(const ScramClientKeys* scram_keys);
  // GCC 12 miscompiles class-type temporaries inside co_await expressions (an SSO string was
  // relocated bitwise into the frame). Coroutines here therefore take references to named
  // objects, and callers build messages into named locals before awaiting.
  Task<absl::Status> Authenticate(const wire::be::Authentication& request,
                                  const ScramClientKeys* scram_keys);
  Task<absl::Status> WriteAll(const std::string& bytes);
  // Reads one whole message into `type`/`body` (valid until the next call).
  Task<absl::Status> ReadMessage(char* type, std::string_view* body);

  uint64_t id_;
  int home_;                  // the worker whose event loop watches socket_
  tcp protocol_ = tcp::v4();  // of the connected endpoint, for MoveTo
  Socket socket_;
  std::shared_ptr<const ServerTarget> target_;
  std::string read_buf_;
  size_t read_pos_ = 0;
  bool usable_ = true;
};

}  // namespace shardyard::proxy
