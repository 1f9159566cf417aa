// One client connection: startup and authentication, then the transaction loop that borrows a
// server connection per transaction (or per session/statement) and forwards bytes both ways.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "common/close_reason.h"
#include "common/peer_address.h"
#include "config/config.h"
#include "pool/session_params.h"
#include "pool/tx_tracker.h"
#include "proxy/asio.h"
#include "proxy/pool.h"
#include "proxy/session_host.h"
#include "sql/session_sql.h"
#include "wire/backend_scanner.h"
#include "wire/buffer.h"
#include "wire/framer.h"
#include "wire/messages.h"

namespace shardyard::proxy {

// Contract: a session lives on one worker's event loop; all members are touched only on that
// worker's thread. The public entry points (Cancel, Shutdown) may be called from any thread and
// post to it.
//
// An idle client has no coroutine: only a callback wait on its socket. The usual transaction
// runs on reactor callbacks alone: readability reads the client's request, checks out a server
// (idle, or after a callback wait in the pool's queue) and forwards the request (FastForward),
// and the pump relays the replies back (server → client) until ReadyForQuery 'I' releases the
// server. With clients waiting (transaction mode), a server still busy with one client's plain
// statement is granted to the next waiter at once, whose plain statement is written behind it
// (pipelining: the backend finds it waiting instead of going to sleep); the first client's pump
// hands the server over at its ReadyForQuery. Anything else — restoring settings, a failed or
// cancelled wait, messages Shardyard answers itself, errors, the end — spawns an activation
// coroutine that handles it.
class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  // `socket` is bound to the event loop of worker `worker`; `peer` is what accept(2) said.
  ClientSession(SessionHost& host, Socket socket, int worker, uint64_t id, PeerAddress peer);
  ~ClientSession();

  void Start();

  // A CancelRequest carrying this session's key arrived. `done` runs (on any thread) once it
  // has been dealt with: delivered to the server, a wait for a server failed, or dropped.
  void Cancel(absl::AnyInvocable<void() &&> done);
  // Graceful: close once the current transaction is over. Immediate: close now.
  void Shutdown(bool immediate);

  uint64_t id() const { return id_; }

 private:
  // Waiting for client input ended because...
  enum class WaitResult {
    kReadable,
    kInputRead,  // readable, and the caller already read what arrived
    kClosed,
    kFailed,
    kIdleTimeout,
    kIdleTransactionTimeout,
    kInterrupted
  };

  Task<> Run();
  // Startup bounded by client_login_timeout (the timer lives only while logging in).
  Task<absl::Status> StartupWithTimeout();

  // Startup phase: through the first ReadyForQuery. A failure is sent to the client as FATAL.
  Task<absl::Status> Startup();
  Task<absl::StatusOr<wire::fe::StartupMessage>> ReadStartupMessage(bool* cancel_request);
  Task<absl::Status> Authenticate(const config::User* user, const std::string& user_name);
  // Its own coroutine so that its state (several kB) is not in every login's frame.
  Task<absl::Status> AuthenticateScram(const config::User* user, const std::string& user_name);
  Task<absl::Status> ReadPasswordPacket(std::string* body);
  Task<absl::Status> Welcome(const std::vector<std::pair<std::string, std::string>>& settings);
  // Works out the client's parameter set (first sight of these settings).
  Task<absl::Status> BuildWelcomeParams(
      const std::vector<std::pair<std::string, std::string>>& settings);

  // Serving phase.
  // Arms the wait for the client's next input: a plain callback (no coroutine frame) or, when an
  // idle timer applies, a coroutine racing the socket against the timer.
  void ArmClientWait();
  // Cancels `target`'s current request and returns once the server has been told.
  Task<> CancelAndWait(ClientSession& target);
  // True while the attached server waits for more from the client (COPY IN, extended-protocol
  // messages before their Sync) or a message has only partly arrived.
  bool WaitingOnClient() const;
  // One non-blocking look at the client's socket: kReadable (bytes wait), kClosed, kFailed, or
  // nothing yet.
  std::optional<WaitResult> PeekClient();
  // The idle wait's read (see reactor_read.h): bytes go to in_, into a scratch block first
  // when the client holds no buffer.
  std::pair<ssize_t, size_t> FillClient(int fd);
  // Starts that read; `handler(error_code, bytes, filled)` as for StartReactorRead.
  template <typename Handler>
  void StartClientRead(Handler handler);
  void OnClientRead(const error_code& ec, bool filled);
  // What a reactor read of the client came to: kInputRead when bytes arrived (all of them).
  WaitResult AfterClientRead(const error_code& ec, bool filled);
  // The usual case without a coroutine: the input is whole messages that all go to the server
  // (less than a block). Forwards them to the attached server, or to an idle one with this
  // client's settings, or queues for one (the grant arrives in OnGranted). False: the
  // activation coroutine must handle the input (a checked-out server may await it in
  // fast_wait_).
  bool FastForward();
  // Bytes at the front of the input that FastForward may forward, or 0.
  size_t FastRun() const;
  // Attaches `server` and forwards the first `run` bytes of input, unless the server needs this
  // client's settings restored or the checkout failed: then it is left for ProcessInput
  // (returns false).
  bool AttachFast(ServerConn* server, absl::Status status, size_t run);
  void ForwardFast(size_t run);
  void WaitForServer();
  void OnGranted(ServerConn* server, absl::Status status);
  // The fast forward's write finished: as an activation ends (re-arm the wait, start the pump).
  void OnForwarded(size_t bytes, const error_code& ec);
  // Handles one wake-up: reads, forwards, re-arms the wait, and starts the pump.
  Task<> Activate(WaitResult result);
  void SpawnActivation(WaitResult result);
  // Why the session must end now, if it must (server failure, shutdown, a failed write).
  std::optional<CloseReason> PendingEnd() const;
  // Starts the pump unless it already runs, or there is no server to pump.
  void EnsurePump();
  // Returns false when the session must end (close_reason_ / close_error_ say why).
  Task<bool> ProcessInput();
  bool EndSession(CloseReason reason, absl::Status error = absl::OkStatus());
  // Writes the first `bytes` of the input buffer to the attached server (awaited directly, no
  // coroutine frame); ForwardDone consumes them and records a failure.
  auto ForwardRun(size_t bytes) {
    return asio::async_write(attached_->socket(), asio::buffer(in_.data().data(), bytes), kAwait);
  }
  bool ForwardDone(size_t bytes, const error_code& ec);
  // Tracks what a message forwarded to the server makes it owe (ReadyForQuery, a Sync), and
  // whether it may change the session's settings.
  void CountForwarded(char type, std::string_view body);
  // CountForwarded for each message of the first `run` bytes of input (whole messages).
  void CountRun(size_t run);
  // Notes a forwarded Query, Parse or Bind that may change settings beyond its transaction
  // (transaction and statement modes; a session-mode client keeps its server).
  void WatchSettings(char type, std::string_view body);
  void WatchSql(std::string_view sql, const std::string_view* statement);
  // Whether `found` changes only settings the attached server reports.
  bool ReportedOnly(const sql::SessionChanges& found) const;
  // With read_back_due_, the work a transaction leaves before its server may go back: closes
  // the named prepared statements and cursors the client created (server_objects_), reads the
  // server's settings back and makes them this client's (settings_may_change_; they are then
  // restored on whichever server serves it next), releases the server and sends the held
  // ReadyForQuery. Returns false when the session must end (close_reason_ says why).
  Task<bool> SettleBeforeRelease();
  // A named Parse went to the attached server: the statement must be closed before the server
  // goes back (no other client may ever run or see it).
  void NotePrepared(std::string_view name);
  // Whether a Bind or a Describe names a prepared statement (the unnamed one included) that
  // this client has not parsed on the server connection lent to it now (`unnamed_parsed`: it
  // parsed the unnamed one). Whatever such a statement is on that server, it is not this
  // client's: another client made it, or it was closed when this client's transaction ended.
  // Never in session mode, where the server is the client's.
  // Inline: it runs for every message of every request, and settles the usual ones (a Bind of
  // the unnamed statement to the unnamed portal, a Describe of a portal) without a call.
  bool NamesForeignStatement(char type, std::string_view body, bool unnamed_parsed) const {
    if (type == 'B') {
      if (body.size() >= 2 && body[0] == '\0' && body[1] == '\0') {
        return !unnamed_parsed && mode_ != config::PoolMode::kSession;
      }
    } else if (type != 'D' || body.empty() || body[0] != 'S') {
      return false;  // not a statement's name
    }
    return NamesForeignNamedStatement(type, body, unnamed_parsed);
  }
  // The rest of NamesForeignStatement: a Bind or Describe that names a statement.
  bool NamesForeignNamedStatement(char type, std::string_view body, bool unnamed_parsed) const;
  // What PostgreSQL would answer for such a statement, and why (a statement this client had
  // prepared in an earlier transaction gets the reason and the driver settings to change).
  absl::Status ForeignStatementError(char type, std::string_view body) const;
  // The same message with the statement renamed to one that cannot exist, so that PostgreSQL
  // itself fails it where it stands in the client's pipeline and transaction.
  std::string RenameForeignStatement(char type, std::string_view body) const;
  // Makes a borrowed server this client's (it already has the client's settings).
  void AttachTo(ServerConn* server);
  // The rare path: the server needs the client's settings first; one retry on a fresh one.
  Task<absl::Status> AttachRestoringParams(ServerConn* server);
  Task<absl::Status> ApplyParams(ServerConn* server);
  void AdoptServerParams(ServerConn* server);
  void FailRequest(char type, const absl::Status& status);
  // Pipelining (see ServerConn::lead). Whether the first `run` bytes of input are all of it and
  // one plain statement (simple Query, or unnamed Parse/Bind/Execute/Sync) that leaves an idle
  // server idle.
  bool Pipelinable(size_t run) const;
  // After a pipelinable request went out on a fresh transaction: grants the server to the next
  // waiter on this worker, if any. True if it did (this client is then the lead: its own socket
  // is not read until its reply is complete, so nothing of its own can get behind the follower).
  bool LeadIfPossible();
  // The grant of a server still busy with another client's (the lead's) request: writes this
  // client's request behind it if that request is pipelinable, else waits for the hand-over.
  void Follow(ServerConn* server);
  void OnFollowSent(const error_code& ec);
  // The lead is done with `server` (finished, or left early with `server->skip_ready` replies
  // still to come): it is this client's now.
  void TakeOver(ServerConn* server);
  // The lead's side: `server` goes to the follower, or is left for the grant on its way. False
  // (and no longer led) when nobody follows: the caller gives it back as usual.
  bool HandOver(ServerConn* server);
  // Reads the client again after pipelining paused it (or starts the activation that ends it).
  void ResumeClient();
  // A cancel the lead forwarded may stop this follower's request instead: its replies are held
  // until the cancel has landed and they are complete; if they end in query_canceled (57014),
  // the request is sent again, which is safe because a plain statement that was cancelled left
  // nothing behind. `at_end`: the replies are complete (else the hold is full).
  Task<> ResolveExposure(bool at_end);

  // The pump, server → client, as a chain of reactor callbacks (no coroutine frame): read from
  // the attached server, note the messages the session acts on, write to the client; it releases
  // the server once it is idle with nothing outstanding, or stops when the session stops.
  // `look_first`: read once before waiting for readiness (see OnPumpWritten).
  void PumpNext(bool look_first = false);
  void OnPumpRead(const error_code& ec, size_t n, bool filled);
  void PumpRelay();
  void OnPumpWritten(const error_code& ec);
  void PumpStopped();
  void OnServerMessage(char type, std::string_view body, size_t end);
  bool ReadyToRelease() const;
  void ReleaseServer();
  Task<> Finish(CloseReason reason, const absl::Status& error);
  // Finish's last step, synchronous: gives back the server, closes the socket, counts and logs.
  void Close(CloseReason reason, const absl::Status& fatal);
  // Gives back a server the fast path checked out and handed over, if nobody attached it.
  void ReleaseUnusedGrant();
  // Whether the session can end at once with Close (end of file, or a lone Terminate, with no
  // server attached and nothing to tell the client).
  bool EndsQuietly(WaitResult result) const;

  // Client I/O. Waiting costs no coroutine frame unless an idle timer applies.
  Task<WaitResult> WaitClientWithTimeout(Duration timeout, WaitResult on_timeout);
  // The timer that applies to the client's current state (zero: none).
  std::pair<Duration, WaitResult> ClientTimer() const;
  WaitResult ReadClient();
  std::span<char> ClientReadSpace();
  // Reads what is already there, or waits for the socket and then reads (startup phase).
  Task<WaitResult> ReadClientOrWait();
  Task<bool> WriteClient(std::string_view bytes);
  Task<bool> FlushOut();
  void WakeMain();
  // The client just became idle (or idle in a transaction): if a timer applies to that state,
  // wake the main loop so its wait picks the timer up.
  void RearmClientTimers();

  Task<std::pair<ServerConn*, absl::Status>> AcquireServer();
  absl::Status NoServerError(const absl::Status& status) const;
  Pool::Waiter MakeWaiter();

  std::string Describe() const;  // "C-12 127.0.0.1:5555 app/app"
  std::string Peer() const;      // "127.0.0.1:5555" (kept from accept: see peer_)

  SessionHost& host_;
  Socket socket_;
  Executor executor_;  // the worker's event loop: every coroutine of this session runs here
  int worker_;
  const uint64_t id_;
  int32_t process_id_ = 0;  // our BackendKeyData for this client
  int32_t secret_key_ = 0;
  bool registered_ = false;
  bool logged_in_ = false;
  // The client's address, kept from accept: the socket can no longer tell once the client has
  // reset the connection, and a close is logged after that. With the flag above and mode_
  // below it fills what was padding (the object stays 8-byte aligned at the same size).
  PeerAddress peer_;
  config::PoolMode mode_ = config::PoolMode::kTransaction;

  std::shared_ptr<const config::Config> config_;
  std::string user_;
  std::string database_;
  Pool* pool_ = nullptr;  // pools live as long as the daemon
  pool::SharedParams params_;

  wire::ByteBuffer in_;
  // Messages Shardyard itself sends, batched; allocated only while in use (idle clients
  // carry no buffers at all).
  std::unique_ptr<std::string> out_;
  std::string& Out() {
    if (out_ == nullptr) out_ = std::make_unique<std::string>();
    return *out_;
  }
  uint32_t max_message_size_ = 0;

  // The server connection in use, and what it still owes.
  ServerConn* attached_ = nullptr;
  pool::TxTracker tx_;  // what it owes, where its transaction stands: when it may go back
  bool skip_until_sync_ = false;

  // Settings changed beyond a transaction (SET search_path, SET ROLE, set_config(), ...) are not
  // reported by PostgreSQL, so they are read back before the transaction's ReadyForQuery 'I'
  // reaches the client: the server must not go to another client with them, and this client
  // must find them on the next server it is lent.
  bool settings_may_change_ = false;  // forwarded SQL may have changed settings
  // The attached server may hold named prepared statements or cursors (WITH HOLD) that this
  // client created: they are closed before the server goes back to the pool.
  bool server_objects_ = false;
  // The client parsed the unnamed statement on the attached server (the unnamed statement is
  // the client's only then: PostgreSQL keeps it across transactions, for whoever comes next).
  bool unnamed_parsed_ = false;
  // Bytes at the end of the relay buffer that begin a message which may be the ReadyForQuery
  // this session holds back: not relayed until it is whole (see PumpRelay).
  uint8_t held_tail_ = 0;
  bool read_back_due_ = false;  // the pump held ReadyForQuery 'I' back for SettleBeforeRelease
  // Pipelining state (see Follow and LeadIfPossible), laid out to fill the padding here. The
  // rare part, a follower's exposure to the lead's cancel, is allocated when it happens.
  bool client_paused_ = false;  // the client's socket is not read (lead or follower)
  bool following_ = false;      // granted a server that is still the lead's
  bool follow_sent_ = false;    // ... and this client's request is written behind the lead's
  bool follow_writing_ = false;
  bool takeover_due_ = false;      // the hand-over came while that write was still going
  bool may_lead_ = false;          // the request ForwardFast is sending is pipelinable
  uint32_t follow_run_ = 0;        // bytes of in_ written behind the lead (kept until taken over)
  int skip_ready_ = 0;             // ReadyForQuery messages of a departed lead still to skip
  uint32_t handover_at_ = kNoCut;  // the lead's replies end here in the relay buffer
  bool own_cancel_ = false;        // this client asked for a cancel of the request it follows with
  struct Exposure {
    std::string held;           // replies held back
    bool cancel_error = false;  // they include an ErrorResponse with SQLSTATE 57014
  };
  std::unique_ptr<Exposure> exposure_;
  // A cancel for a request still waiting behind the lead's: forwarded once it runs.
  std::unique_ptr<absl::AnyInvocable<void() &&>> deferred_cancel_;

  // Custom setting names the client set, prepared statements whose SQL may change settings, and
  // the names of the client's named prepared statements; allocated for the clients that need
  // them.
  struct SettingsWatch {
    std::vector<std::string> custom_names;
    std::vector<std::string> statements;
    // Named statements prepared on the attached server in the current transaction, and those
    // closed at the end of earlier ones (the most recent kMaxClosedStatements): a later Bind
    // of one gets an error that says why, not just PostgreSQL's "does not exist".
    std::vector<std::string> prepared;
    std::vector<std::string> closed;
    // For the next read-back: the settings SET by name, enough to read back unless `full`
    // (RESET, DISCARD, set_config(), a Bind of a watched statement, ...) asks for them all.
    std::vector<std::string> named;
    bool full = false;
  };
  std::unique_ptr<SettingsWatch> watch_;

  bool pump_running_ = false;
  bool pump_read_short_ = false;  // the pump's last read emptied the server's socket
  bool finished_ = false;         // Finish has begun: wake-ups no longer activate the session
  bool stopping_ = false;
  uint32_t cut_at_ = kNoCut;  // forward the current chunk only up to here
  static constexpr uint32_t kNoCut = ~uint32_t{0};

  // Set while waiting for a server (the waiter lives in that coroutine frame, or in fast_wait_).
  Pool::Waiter* waiter_ = nullptr;
  // The fast path's wait for a server (allocated the first time a client has to wait), and a
  // checkout it hands to ProcessInput.
  struct FastWait {
    explicit FastWait(Pool::Waiter w) : waiter(std::move(w)) {}
    Pool::Waiter waiter;
    bool handed_off = false;
    ServerConn* granted = nullptr;
    absl::Status status;
  };
  std::unique_ptr<FastWait> fast_wait_;

  absl::Status server_failed_;      // set by the pump
  bool server_sent_fatal_ = false;  // the server already told the client why
  bool shutdown_requested_ = false;
  bool login_timed_out_ = false;
  bool admitted_ = false;
  // Why the serving loop ended, and the FATAL error to send, when ProcessInput decides.
  CloseReason close_reason_ = CloseReason::kClientTerminate;
  absl::Status close_error_;
  bool shutdown_now_ = false;
  bool client_write_failed_ = false;
  bool client_io_failed_ = false;  // the client vanished during startup: nothing to tell it
  // Why, when client_io_failed_: it may also have left the usual way (an end of file before any
  // byte, or a Terminate in place of its startup packet).
  CloseReason startup_close_ = CloseReason::kClientIoError;
};

}  // namespace shardyard::proxy
