// Implements the client session: the startup handshake, authentication, restoring the client's
// session parameters on each borrowed server connection, and the two transfer loops.
#include "proxy/client_session.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cerrno>

#include "common/crypto.h"
#include "common/log.h"
#include "common/pg_error.h"
#include "common/scram_secret.h"
#include "common/strings.h"
#include "proxy/reactor_read.h"
#include "proxy/socket_access.h"
#include "proxy/spawn.h"
#include "router/route.h"
#include "sql/session_sql.h"
#include "wire/auth.h"
#include "wire/error_response.h"

namespace shardyard::proxy {

using namespace asio::experimental::awaitable_operators;
using wire::be::TxStatus;

namespace {

absl::Status Fatal(std::string_view state, std::string message, std::string detail = "") {
  return PgFatalStatus(absl::StatusCode::kFailedPrecondition, state, std::move(message),
                       std::move(detail));
}

// The same error with ERROR severity: a request failed but the client stays connected.
absl::Status AsError(const absl::Status& status, std::string_view context) {
  PgErrorFields f = PgErrorFor(status);
  f.severity = "ERROR";
  if (f.detail.empty() && !context.empty()) f.detail = std::string(context);
  return PgError(status.code(), std::move(f));
}

absl::Status AsFatal(const absl::Status& status) {
  PgErrorFields f = PgErrorFor(status);
  f.severity = "FATAL";
  return PgError(status.code(), std::move(f));
}

// How many names of closed prepared statements a session remembers, to tell the client why a
// later Bind of one fails (drivers use a handful of names; the list is searched linearly).
constexpr size_t kMaxClosedStatements = 64;

bool IsForwardable(char type) {
  switch (type) {
    case 'Q':
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'S':
    case 'H':
    case 'F':
    case 'd':
    case 'c':
    case 'f':
      return true;
    default:
      return false;
  }
}

// The NUL-terminated string at `at` in a message body (empty past its end).
std::string_view CStringAt(std::string_view body, size_t at) {
  std::string_view rest = body.substr(std::min(at, body.size()));
  return rest.substr(0, rest.find('\0'));
}

bool IsFalse(std::string_view v) {
  std::string s = ToLowerAscii(v);
  return s == "false" || s == "0" || s == "off" || s == "no";
}

// A deterministic fake salt for users that do not exist, so the SCRAM exchange looks the same.
std::string MockSalt(std::string_view user) {
  static const std::string kProcessSecret = [] {
    std::string s(16, '\0');
    crypto::RandomBytes({reinterpret_cast<uint8_t*>(s.data()), s.size()});
    return s;
  }();
  crypto::Sha256Digest d = crypto::Sha256(crypto::AsBytes(Cat(kProcessSecret, user)));
  return std::string(reinterpret_cast<const char*>(d.data()), 16);
}

}  // namespace

ClientSession::ClientSession(SessionHost& host, Socket socket, int worker, uint64_t id,
                             PeerAddress peer)
    : host_(host),
      socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      worker_(worker),
      id_(id),
      peer_(peer) {
  error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  SetNonBlocking(socket_);
  MarkSoleOwner(socket_);  // accepted here, so closing it needs no epoll_ctl
}

ClientSession::~ClientSession() {
  if (registered_) host_.UnregisterClient(process_id_);
  if (admitted_) host_.ClientGone();
  host_.SessionEnded(worker_);
}

std::string ClientSession::Peer() const { return peer_.ToString(); }

std::string ClientSession::Describe() const {
  if (user_.empty()) return Cat("C-", id_, " ", Peer());
  return Cat("C-", id_, " ", Peer(), " ", database_, "/", user_);
}

void ClientSession::Start() {
  Spawn(
      executor_, [self = shared_from_this()]() { return self->Run(); }, "client session");
}

void ClientSession::Cancel(absl::AnyInvocable<void() &&> done) {
  asio::post(executor_, [self = shared_from_this(), done = std::move(done)]() mutable {
    if (self->waiter_ != nullptr && self->pool_ != nullptr) {
      self->pool_->CancelWait(*self->waiter_,
                              PgErrorStatus(absl::StatusCode::kCancelled, sqlstate::kQueryCanceled,
                                            "canceling statement due to user request"));
    } else if (self->following_) {
      // The server still runs the lead's request: the cancel waits for this client's turn.
      if (self->deferred_cancel_ != nullptr) {  // a second one: the first is as good
        std::move(done)();
        return;
      }
      self->deferred_cancel_ = std::make_unique<absl::AnyInvocable<void() &&>>(std::move(done));
      return;
    } else if (self->attached_ != nullptr && (!self->tx_.Quiet())) {
      ServerConn* server = self->attached_;
      if (server->lead == self.get()) server->lead_cancelled = true;
      if (self->exposure_ != nullptr) self->own_cancel_ = true;  // its 57014 is its own
      return self->pool_->ForwardCancel(server, std::move(done));
    } else {
      SY_LOG_DEBUG("%s cancel request dropped: no request in progress", self->Describe());
    }
    std::move(done)();
  });
}

void ClientSession::Shutdown(bool immediate) {
  asio::post(executor_, [self = shared_from_this(), immediate] {
    self->shutdown_requested_ = true;
    if (immediate) self->shutdown_now_ = true;
    if (immediate || self->attached_ == nullptr || self->mode_ == config::PoolMode::kSession) {
      self->WakeMain();
      // (A follower's server still serves the lead: its pump is not this session's to stop.)
      if (immediate && self->attached_ != nullptr && !self->following_) {
        error_code ignored;
        self->attached_->socket().cancel(ignored);
      }
    }
  });
}

void ClientSession::RearmClientTimers() {
  if (!tx_.Quiet() || !logged_in_) return;
  if (ClientTimer().first.count() > 0) WakeMain();
}

void ClientSession::WakeMain() {
  error_code ignored;
  socket_.cancel(ignored);
}

Task<> ClientSession::Run() {
  config_ = host_.config();
  max_message_size_ = static_cast<uint32_t>(config_->max_message_size);
  absl::Status st = co_await StartupWithTimeout();
  if (!st.ok()) {
    CloseReason reason = CloseReason::kClientLoginRejected;
    switch (st.code()) {
      case absl::StatusCode::kUnauthenticated:
        reason = CloseReason::kClientAuthFailed;
        break;
      case absl::StatusCode::kResourceExhausted:
        reason = CloseReason::kTooManyClients;
        break;
      case absl::StatusCode::kAborted:
        reason = CloseReason::kCancelRequest;
        break;
      case absl::StatusCode::kInvalidArgument:
        reason = CloseReason::kClientProtocolError;
        break;
      default:
        break;
    }
    if (client_write_failed_) reason = CloseReason::kClientIoError;
    if (client_io_failed_) reason = startup_close_;  // an I/O failure unless it left cleanly
    if (login_timed_out_) reason = CloseReason::kClientLoginTimeout;
    // Nothing is said to a client that is gone or that said goodbye, as PostgreSQL does.
    const bool quiet = reason == CloseReason::kCancelRequest ||
                       reason == CloseReason::kClientIoError || reason == CloseReason::kClientEof ||
                       reason == CloseReason::kClientTerminateAtStartup;
    absl::Status error = quiet ? absl::OkStatus() : st;
    co_await Finish(reason, error);
    co_return;
  }
  logged_in_ = true;
  // Input the client sent right behind its login is handled at once; then it idles.
  co_await Activate(WaitResult::kInterrupted);
}

// ---------------------------------------------------------------------------------------------
// Startup

Task<absl::Status> ClientSession::StartupWithTimeout() {
  // When client_login_timeout fires, the pending client read (or wait for a server) is
  // interrupted and Startup returns.
  Timer login_timer(executor_);
  if (config_->client_login_timeout.count() > 0) {
    login_timer.expires_after(config_->client_login_timeout);
    login_timer.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->logged_in_) return;
      self->login_timed_out_ = true;
      self->WakeMain();
      if (self->waiter_ != nullptr) {
        self->pool_->CancelWait(*self->waiter_, absl::DeadlineExceededError("login timeout"));
      }
    });
  }
  absl::Status st = co_await Startup();
  login_timer.cancel();
  if (login_timed_out_) {
    st = Fatal(sqlstate::kProtocolViolation, "client_login_timeout expired during login");
  }
  co_return st;
}

Task<absl::StatusOr<wire::fe::StartupMessage>> ClientSession::ReadStartupMessage(
    bool* cancel_request) {
  bool negotiated_encryption = false;
  while (true) {
    // A Terminate where the startup packet belongs: node-postgres sends one when it is closed
    // while still connecting. PostgreSQL closes such a connection without a word (it only logs
    // that the packet's length is invalid), so Shardyard does too, and logs the real reason.
    static constexpr std::string_view kTerminate("X\0\0\0\4", 5);
    const std::string_view head = in_.data().substr(0, kTerminate.size());
    const bool terminate = !head.empty() && kTerminate.starts_with(head);
    if (terminate && head.size() == kTerminate.size()) {
      client_io_failed_ = true;
      startup_close_ = CloseReason::kClientTerminateAtStartup;
      co_return absl::UnavailableError("client sent Terminate in place of its startup packet");
    }
    wire::Frame f = terminate ? wire::Frame{} : wire::ParseStartupFrame(in_.data());
    if (f.kind == wire::Frame::Kind::kError) co_return f.error;
    if (f.kind == wire::Frame::Kind::kNeedMore) {
      WaitResult w = co_await ReadClientOrWait();
      if (w == WaitResult::kReadable) continue;
      client_io_failed_ = true;
      // Closed before sending a byte (a TCP health check, or a client that wanted TLS and got
      // 'N'): PostgreSQL does not even log that, so it is routine here, not a failure.
      if (w == WaitResult::kClosed && in_.empty()) startup_close_ = CloseReason::kClientEof;
      co_return absl::UnavailableError("client closed the connection during startup");
    }
    if (f.body.size() < 4) co_return Fatal(sqlstate::kProtocolViolation, "invalid startup packet");
    int32_t code = static_cast<int32_t>(wire::LoadBigEndian32(f.body.data()));
    std::string body(f.body);
    in_.Consume(f.size);
    if (code == wire::kSslRequestCode || code == wire::kGssEncRequestCode) {
      if (negotiated_encryption && code == wire::kSslRequestCode) {
        co_return Fatal(sqlstate::kProtocolViolation, "duplicate SSL request");
      }
      // Bytes sent before our answer would be read unencrypted after a TLS upgrade: refuse.
      if (!in_.empty()) {
        co_return Fatal(sqlstate::kProtocolViolation,
                        "received unencrypted data after SSL request");
      }
      negotiated_encryption = true;
      if (!co_await WriteClient("N")) co_return absl::UnavailableError("client write failed");
      continue;
    }
    if (code == wire::kCancelRequestCode) {
      auto cancel = wire::Decode<wire::fe::CancelRequest>(body);
      if (cancel.ok()) {
        if (auto target = host_.FindClient(cancel->process_id, cancel->secret_key)) {
          co_await CancelAndWait(*target);
        } else {
          SY_LOG_DEBUG("C-%d %s cancel request for unknown key dropped", id_, Peer());
        }
      }
      *cancel_request = true;
      co_return absl::AbortedError("cancel request");
    }
    int major = code >> 16;
    int minor = code & 0xffff;
    if (major != 3) {
      co_return Fatal(
          sqlstate::kFeatureNotSupported,
          Cat("unsupported frontend protocol ", major, ".", minor, ": server supports 3.0 to 3.0"));
    }
    auto startup = wire::Decode<wire::fe::StartupMessage>(body);
    if (!startup.ok())
      co_return Fatal(sqlstate::kProtocolViolation, "invalid startup packet layout");
    co_return *std::move(startup);
  }
}

Task<> ClientSession::CancelAndWait(ClientSession& target) {
  // PostgreSQL closes a cancel connection only once it has signalled the backend (twice: the
  // process and its group), so a client whose PQcancel returned may send its next query
  // safely. This connection closes at the same point, or the next query could be the one
  // cancelled.
  struct Wait {
    explicit Wait(const Executor& executor) : timer(executor) {}
    Timer timer;
    bool done = false;
  };
  auto wait = std::make_shared<Wait>(executor_);
  wait->timer.expires_after(std::chrono::seconds(10));  // delivery gives up after 5 s
  target.Cancel([wait, executor = executor_]() {
    asio::post(executor, [wait] {
      wait->done = true;
      wait->timer.cancel();
    });
  });
  if (!wait->done) co_await wait->timer.async_wait(kAwait);
}

Task<absl::Status> ClientSession::Startup() {
  bool cancel_request = false;
  auto startup = co_await ReadStartupMessage(&cancel_request);
  if (!startup.ok()) co_return startup.status();

  admitted_ = host_.AdmitClient(config_->pool.max_client_connections);
  if (!admitted_) {
    co_return PgFatalStatus(
        absl::StatusCode::kResourceExhausted, sqlstate::kTooManyConnections,
        "sorry, too many clients already",
        Cat("max_client_connections is ", config_->pool.max_client_connections, "."));
  }
  if (host_.shutting_down()) {
    co_return PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kCannotConnectNow,
                            "the database system is shutting down");
  }

  // Separate protocol parameters from session settings. PostgreSQL applies the `options`
  // switches first and the other parameters after them, whatever their order in the packet,
  // so a plain parameter wins over the same setting in `options`.
  std::vector<std::pair<std::string, std::string>> settings;
  std::vector<std::pair<std::string, std::string>> plain_settings;
  std::vector<std::string> unrecognized_protocol_options;
  for (const auto& [name, value] : startup->parameters) {
    if (name == "user") {
      user_ = value;
    } else if (name == "database") {
      database_ = value;
    } else if (name == "replication") {
      if (!IsFalse(value)) {
        co_return Fatal(sqlstate::kFeatureNotSupported,
                        "replication connections are not supported by Shardyard");
      }
    } else if (name.starts_with("_pq_.")) {
      unrecognized_protocol_options.push_back(name);
    } else if (name == "options") {
      std::vector<std::pair<std::string, std::string>> parsed;
      if (!pool::ParseStartupOptions(value, &parsed)) {
        co_return Fatal(sqlstate::kFeatureNotSupported,
                        Cat("unsupported startup options \"", value, "\""),
                        "Only -c name=value and --name=value settings are supported.");
      }
      for (auto& p : parsed) settings.emplace_back(pool::CanonicalParamName(p.first), p.second);
    } else {
      plain_settings.emplace_back(pool::CanonicalParamName(name), value);
    }
  }
  settings.insert(settings.end(), plain_settings.begin(), plain_settings.end());
  if (user_.empty()) {
    co_return Fatal(sqlstate::kInvalidAuthorizationSpecification,
                    "no PostgreSQL user name specified in startup packet");
  }
  if (database_.empty()) database_ = user_;
  int minor = startup->protocol_version & 0xffff;
  if (minor > 0 || !unrecognized_protocol_options.empty()) {
    Out().clear();
    wire::Encode(wire::be::NegotiateProtocolVersion{0, unrecognized_protocol_options}, &Out());
    if (!co_await FlushOut()) co_return absl::UnavailableError("client write failed");
  }

  // Authenticate first, as PostgreSQL does, so database names cannot be probed anonymously.
  const config::User* user = config_->FindUser(user_);
  if (auto st = co_await Authenticate(user, user_); !st.ok()) co_return st;

  const config::Database* db = config_->FindDatabase(database_);
  if (db == nullptr) {
    co_return PgFatalStatus(absl::StatusCode::kNotFound, sqlstate::kInvalidCatalogName,
                            Cat("database \"", database_, "\" does not exist"));
  }
  auto pool = host_.PoolFor(*config_, *db, user_);
  if (!pool.ok()) co_return AsFatal(pool.status());
  pool_ = pool->get();
  mode_ = pool_->mode();

  std::tie(process_id_, secret_key_) = host_.RegisterClient(shared_from_this());
  registered_ = true;
  if (auto st = co_await Welcome(settings); !st.ok()) co_return st;
  SY_LOG_INFO("%s login ok (pool %s, %s mode)", Describe(), pool_->name(),
              config::PoolModeName(mode_));
  co_return absl::OkStatus();
}

Task<absl::Status> ClientSession::ReadPasswordPacket(std::string* body) {
  while (true) {
    wire::Frame f = wire::ParseFrame(in_.data(), wire::kMaxStartupPacketLength);
    if (f.kind == wire::Frame::Kind::kError) co_return f.error;
    if (f.kind == wire::Frame::Kind::kMessage) {
      if (f.type != 'p') {
        co_return Fatal(sqlstate::kProtocolViolation,
                        Cat("expected password response, got message type ",
                            static_cast<int>(static_cast<uint8_t>(f.type))));
      }
      *body = std::string(f.body);
      in_.Consume(f.size);
      co_return absl::OkStatus();
    }
    WaitResult w = co_await ReadClientOrWait();
    if (w != WaitResult::kReadable) {
      client_io_failed_ = true;
      co_return absl::UnavailableError("client closed the connection during authentication");
    }
  }
}

namespace {

absl::Status PasswordAuthFailed(std::string_view user_name) {
  return PgFatalStatus(absl::StatusCode::kUnauthenticated, sqlstate::kInvalidPassword,
                       Cat("password authentication failed for user \"", user_name, "\""));
}

}  // namespace

Task<absl::Status> ClientSession::Authenticate(const config::User* user,
                                               const std::string& user_name) {
  using wire::be::Authentication;
  config::AuthType method = user ? config_->AuthTypeFor(*user) : config_->auth_type;
  Out().clear();
  Out().reserve(512);  // room for the whole welcome (AuthenticationOk ... ReadyForQuery)
  switch (method) {
    case config::AuthType::kTrust:
      if (user == nullptr) {
        co_return PgFatalStatus(absl::StatusCode::kUnauthenticated,
                                sqlstate::kInvalidAuthorizationSpecification,
                                Cat("role \"", user_name, "\" does not exist"));
      }
      break;
    case config::AuthType::kMd5: {
      std::string salt(4, '\0');
      crypto::RandomBytes({reinterpret_cast<uint8_t*>(salt.data()), 4});
      wire::Encode(Authentication{Authentication::kMd5Password, salt, {}}, &Out());
      if (!co_await FlushOut()) co_return absl::UnavailableError("client write failed");
      std::string body;
      if (auto st = co_await ReadPasswordPacket(&body); !st.ok()) co_return st;
      auto pw = wire::Decode<wire::fe::PasswordMessage>(body);
      if (!pw.ok()) co_return Fatal(sqlstate::kProtocolViolation, "invalid password packet");
      // Unknown users go through the same exchange and fail the same way.
      // The user's md5 secret was derived when the config was loaded (a hand-built User may
      // lack it: then Md5Verify derives it from the password).
      std::string_view secret;
      if (user != nullptr) secret = user->md5_secret.empty() ? user->password : user->md5_secret;
      if (user == nullptr || !wire::Md5Verify(user_name, secret, salt, pw->password)) {
        co_return PasswordAuthFailed(user_name);
      }
      break;
    }
    case config::AuthType::kScramSha256: {
      absl::Status st = co_await AuthenticateScram(user, user_name);
      if (!st.ok()) co_return st;
      break;
    }
  }
  // AuthenticationOk goes out with the welcome messages, in one write.
  wire::Encode(Authentication{Authentication::kOk, "", {}}, &Out());
  co_return absl::OkStatus();
}

Task<absl::Status> ClientSession::AuthenticateScram(const config::User* user,
                                                    const std::string& user_name) {
  using wire::be::Authentication;
  ScramSecret secret;
  if (user != nullptr) {
    secret = host_.ScramSecretFor(*user);
  } else {
    secret.salt = MockSalt(user_name);
    crypto::RandomBytes(secret.stored_key);
    crypto::RandomBytes(secret.server_key);
  }
  wire::Encode(Authentication{Authentication::kSasl, "", {"SCRAM-SHA-256"}}, &Out());
  if (!co_await FlushOut()) co_return absl::UnavailableError("client write failed");
  std::string body;
  if (auto st = co_await ReadPasswordPacket(&body); !st.ok()) co_return st;
  auto initial = wire::Decode<wire::fe::SaslInitialResponse>(body);
  if (!initial.ok() || !initial->data) {
    co_return Fatal(sqlstate::kProtocolViolation, "malformed SASLInitialResponse");
  }
  if (initial->mechanism != "SCRAM-SHA-256") {
    co_return Fatal(sqlstate::kProtocolViolation,
                    "client selected an invalid SASL authentication mechanism");
  }
  wire::ScramServerExchange scram(secret);
  auto server_first = scram.HandleClientFirst(*initial->data);
  if (!server_first.ok()) co_return server_first.status();
  wire::Encode(Authentication{Authentication::kSaslContinue, *server_first, {}}, &Out());
  if (!co_await FlushOut()) co_return absl::UnavailableError("client write failed");
  if (auto st = co_await ReadPasswordPacket(&body); !st.ok()) co_return st;
  auto server_final = scram.HandleClientFinal(body);
  if (!server_final.ok()) {
    if (server_final.status().code() == absl::StatusCode::kUnauthenticated) {
      co_return PasswordAuthFailed(user_name);
    }
    co_return server_final.status();
  }
  if (user == nullptr) co_return PasswordAuthFailed(user_name);
  wire::Encode(Authentication{Authentication::kSaslFinal, *server_final, {}}, &Out());
  // Remember the proved ClientKey: it lets pools log in to servers storing this secret.
  if (user->password.starts_with("SCRAM-SHA-256$") && user->server_password.empty()) {
    auto keys = std::make_shared<ScramClientKeys>();
    keys->client_key = scram.client_key();
    keys->server_key = secret.server_key;
    const config::Database* db = config_->FindDatabase(database_);
    if (db != nullptr) {
      if (auto pool = host_.PoolFor(*config_, *db, user_name); pool.ok()) {
        (*pool)->SetScramKeys(std::move(keys));
      }
    }
  }
  co_return absl::OkStatus();
}

Pool::Waiter ClientSession::MakeWaiter() {
  // Behind a long queue a client keeps only its pending bytes, not a 16 kB block (1,000 clients
  // waiting for 20 servers would otherwise hold 16 MB). Near the front it keeps the block: it
  // will need it again within a transaction or two, and moving the bytes costs a malloc.
  constexpr int kShrinkWhenAhead = 64;
  return Pool::Waiter{
      .handler = {}, .executor = executor_, .home = worker_, .on_queued = [this](int ahead) {
        if (ahead >= kShrinkWhenAhead) in_.ShrinkToFit();
      }};
}

absl::Status ClientSession::NoServerError(const absl::Status& status) const {
  return AsError(status, Cat("Shardyard found no server connection for pool ", pool_->name(), "."));
}

Task<std::pair<ServerConn*, absl::Status>> ClientSession::AcquireServer() {
  Pool::Waiter waiter = MakeWaiter();
  waiter_ = &waiter;
  auto result = co_await pool_->Acquire(waiter);
  waiter_ = nullptr;
  co_return result;
}

Task<absl::Status> ClientSession::Welcome(
    const std::vector<std::pair<std::string, std::string>>& settings) {
  std::string key;
  for (const auto& [name, raw] : settings)
    Append(&key, name, std::string_view("\0", 1), raw, std::string_view("\0", 1));
  Pool::Welcome known = pool_->WelcomeFor(key);
  if (known.params != nullptr) {
    params_ = std::move(known.params);  // a client with these exact settings logged in before
  } else {
    if (auto st = co_await BuildWelcomeParams(settings); !st.ok()) co_return st;
    auto parameter_status = std::make_shared<std::string>();
    pool::SharedParams reported = pool_->welcome_params();  // set once a server logged in
    for (const auto& [name, value] : params_->entries()) {
      if (reported != nullptr && reported->Get(name) != nullptr) {
        wire::Encode(wire::be::ParameterStatus{name, value}, parameter_status.get());
      }
    }
    known.parameter_status = std::move(parameter_status);
    known.params = params_;
    pool_->RememberWelcome(key, known);
  }
  // Out() already holds AuthenticationOk.
  Out().append(*known.parameter_status);
  wire::Encode(wire::be::BackendKeyData{process_id_, secret_key_}, &Out());
  wire::Encode(wire::be::ReadyForQuery{TxStatus::kIdle}, &Out());
  if (!co_await FlushOut()) co_return absl::UnavailableError("client write failed");
  co_return absl::OkStatus();
}

Task<absl::Status> ClientSession::BuildWelcomeParams(
    const std::vector<std::pair<std::string, std::string>>& settings) {
  pool::SharedParams base = pool_->welcome_params();
  if (base == nullptr) {
    // No server has logged in yet: one must, to learn what the server reports.
    auto [server, st] = co_await AcquireServer();
    if (!st.ok()) co_return AsFatal(st);
    base = pool_->welcome_params();
    if (base == nullptr) base = server->params;
    pool_->Release(server);
  }
  auto desired = std::make_shared<pool::ParamSet>(*base);
  bool probe = false;
  for (const auto& [name, raw] : settings) {
    if (auto normalized = pool_->NormalizedParam(name, raw)) {
      desired->Set(name, *normalized);
    } else {
      desired->Set(name, raw);
      probe = true;
    }
  }
  params_ = pool_->Intern(desired);
  if (probe) {
    // First sight of one of these settings: check it on a server (PostgreSQL would refuse the
    // login for a bad value) and learn the normalised value it reports.
    auto [server, st] = co_await AcquireServer();
    if (!st.ok()) co_return AsFatal(st);
    st = co_await ApplyParams(server);
    if (!st.ok()) {
      if (server->usable() && server->tx_status == TxStatus::kIdle) {
        pool_->Release(server);
      } else {
        pool_->Discard(server, CloseReason::kServerParamsFailed);
      }
      co_return AsFatal(st);
    }
    for (const auto& [name, raw] : settings) {
      const std::string* v = params_->Get(name);
      pool_->RememberNormalizedParam(name, raw, v ? *v : raw);
    }
    params_ = pool_->Intern(params_);
    server->params = params_;
    pool_->Release(server);
  }
  co_return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Session parameters on borrowed servers

Task<absl::Status> ClientSession::ApplyParams(ServerConn* server) {
  if (server->params == params_) co_return absl::OkStatus();
  pool::ParamPlan plan = pool::PlanParams(*params_, *server->params);
  if (!plan.empty()) {
    std::string messages;
    if (!plan.client_encoding_sql.empty()) {
      wire::Encode(wire::fe::Query{plan.client_encoding_sql}, &messages);
    }
    if (!plan.sql.empty()) wire::Encode(wire::fe::Query{plan.sql}, &messages);
    absl::Status st = co_await server->RunInternal(messages, plan.queries());
    if (!st.ok()) co_return st;
  }
  AdoptServerParams(server);
  co_return absl::OkStatus();
}

void ClientSession::AdoptServerParams(ServerConn* server) {
  // The server now has the client's settings; where it reported a normalised spelling, the
  // client takes that spelling so the next comparison is exact.
  std::shared_ptr<pool::ParamSet> merged;
  for (const auto& [name, value] : server->params->entries()) {
    if (server->reported == nullptr || server->reported->Get(name) == nullptr) continue;
    const std::string* mine = params_->Get(name);
    if (mine != nullptr && *mine == value) continue;
    if (merged == nullptr) merged = std::make_shared<pool::ParamSet>(*params_);
    merged->Set(name, value);
  }
  if (merged != nullptr) params_ = pool_->Intern(std::move(merged));
  server->params = params_;
}

Task<bool> ClientSession::SettleBeforeRelease() {
  read_back_due_ = false;
  ServerConn* server = attached_;
  // Only what the SQL SET by name, when that is all it did; else every session-level setting.
  static const std::vector<std::string> kNoNames;
  static const pool::ParamSet kNoParams;
  const bool read_settings = settings_may_change_;
  const bool named = watch_ != nullptr && !watch_->full && !watch_->named.empty();
  // One round trip for both: DEALLOCATE ALL and CLOSE ALL run in the read-back's implicit
  // transaction, and only the read-back returns rows.
  std::string sql = server_objects_ ? "DEALLOCATE ALL; CLOSE ALL" : "";
  if (read_settings) {
    if (!sql.empty()) sql += "; ";
    sql += named ? pool::ReadBackNamedSql(watch_->named)
                 : pool::ReadBackSql(*server->params,
                                     watch_ != nullptr ? watch_->custom_names : kNoNames);
  }
  std::string messages = wire::Encode(wire::fe::Query{sql});
  // A cancel the client sent for its request may land only now: it must not cancel this query.
  co_await pool_->CancelsLanded(server);
  std::vector<wire::be::DataRow> rows;
  absl::Status st = co_await server->RunInternal(messages, 1, &rows);
  if (st.ok() && server->tx_status != TxStatus::kIdle) {
    st = absl::InternalError("the server is not idle after the transaction's clean-up");
  }
  if (!st.ok()) {
    // The server keeps settings or statements Shardyard does not know: it is reset (DISCARD
    // ALL) before anyone else uses it, and this client cannot go on as if its settings were
    // kept.
    server_failed_ =
        PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                      read_settings ? "could not read back the session's settings"
                                    : "could not close the session's prepared statements",
                      std::string(st.message()));
    co_return EndSession(CloseReason::kClientServerFailed);
  }
  if (server_objects_) {
    server_objects_ = false;
    if (watch_ != nullptr) {
      // DEALLOCATE ALL took every statement, watched ones included.
      watch_->statements.clear();
      for (std::string& name : watch_->prepared) watch_->closed.push_back(std::move(name));
      watch_->prepared.clear();
      if (watch_->closed.size() > kMaxClosedStatements) {
        watch_->closed.erase(watch_->closed.begin(),
                             watch_->closed.end() - static_cast<ptrdiff_t>(kMaxClosedStatements));
      }
    }
  }
  if (read_settings) {
    settings_may_change_ = false;
    if (watch_ != nullptr) {
      watch_->named.clear();
      watch_->full = false;
    }
    std::vector<pool::ReadBackRow> read;
    for (auto& row : rows) {
      if (row.values.size() == 2 && row.values[0].has_value()) {
        read.emplace_back(std::move(*row.values[0]), std::move(row.values[1]));
      }
    }
    const pool::ParamSet& reported = server->reported != nullptr ? *server->reported : kNoParams;
    params_ = pool_->Intern(std::make_shared<pool::ParamSet>(
        named ? pool::ParamsAfterNamedReadBack(*server->params, reported, read)
              : pool::ParamsAfterReadBack(*server->params, reported, read)));
    server->params = params_;
  }
  // The server is free before the client, told it is idle, can send its next request.
  ReleaseServer();
  wire::Encode(wire::be::ReadyForQuery{TxStatus::kIdle}, &Out());
  if (!co_await FlushOut()) co_return EndSession(CloseReason::kClientIoError);
  co_return true;
}

void ClientSession::NotePrepared(std::string_view name) {
  server_objects_ = true;
  if (watch_ == nullptr) watch_ = std::make_unique<SettingsWatch>();
  std::erase(watch_->closed, name);  // prepared again: it exists (until this transaction ends)
  if (std::find(watch_->prepared.begin(), watch_->prepared.end(), name) == watch_->prepared.end()) {
    watch_->prepared.emplace_back(name);
  }
}

namespace {

// The statement a Bind or a Describe('S') names (Bind: after the portal's name), and where in
// the body its name starts; nullopt for any other message.
std::optional<std::pair<std::string_view, size_t>> StatementNamed(char type,
                                                                  std::string_view body) {
  size_t at;
  if (type == 'B') {
    at = CStringAt(body, 0).size() + 1;
  } else if (type == 'D' && !body.empty() && body[0] == 'S') {
    at = 1;
  } else {
    return std::nullopt;
  }
  return std::make_pair(CStringAt(body, at), at);
}

}  // namespace

bool ClientSession::NamesForeignNamedStatement(char type, std::string_view body,
                                               bool unnamed_parsed) const {
  if (mode_ == config::PoolMode::kSession) return false;
  auto named = StatementNamed(type, body);
  if (!named) return false;
  const std::string_view name = named->first;
  if (name.empty()) return !unnamed_parsed;
  return watch_ == nullptr || std::find(watch_->prepared.begin(), watch_->prepared.end(), name) ==
                                  watch_->prepared.end();
}

absl::Status ClientSession::ForeignStatementError(char type, std::string_view body) const {
  const std::string_view name = StatementNamed(type, body).value_or(std::pair{"", 0}).first;
  constexpr std::string_view kHint =
      "Turn off the driver's automatic preparing: psycopg prepare_threshold=None, pgjdbc "
      "prepareThreshold=0, node-postgres queries without a name, pgbench -M extended; or use "
      "pool mode session.";
  // 26000, as PostgreSQL answers for a statement that does not exist: drivers that heal such
  // an error by preparing again (pgjdbc in autocommit) then do so.
  if (name.empty()) {
    return PgErrorStatus(absl::StatusCode::kNotFound, sqlstate::kInvalidSqlStatementName,
                         "unnamed prepared statement does not exist",
                         "In transaction pooling mode, the unnamed statement lasts only until "
                         "the end of the transaction that parsed it.");
  }
  std::string message = Cat("prepared statement \"", name, "\" does not exist");
  const bool closed = watch_ != nullptr && std::find(watch_->closed.begin(), watch_->closed.end(),
                                                     name) != watch_->closed.end();
  if (!closed) {
    return PgErrorStatus(absl::StatusCode::kNotFound, sqlstate::kInvalidSqlStatementName,
                         std::move(message));
  }
  return PgErrorStatus(
      absl::StatusCode::kNotFound, sqlstate::kInvalidSqlStatementName, std::move(message),
      "In transaction pooling mode, Shardyard closes a named prepared statement when the "
      "transaction that prepared it ends, so that no other client can ever run it.",
      std::string(kHint));
}

std::string ClientSession::RenameForeignStatement(char type, std::string_view body) const {
  auto [name, at] = *StatementNamed(type, body);
  // No statement has this name (a driver's names are short words); PostgreSQL names it in its
  // "does not exist" error, so the client learns why.
  std::string renamed =
      name.empty() ? std::string("(Shardyard: no unnamed statement was parsed in this transaction)")
                   : Cat(name, " (Shardyard: not prepared in this transaction)");
  std::string out;
  out.reserve(body.size() + renamed.size() + 5);
  out.push_back(type);
  const uint32_t length = static_cast<uint32_t>(4 + body.size() - name.size() + renamed.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(length >> shift));
  out.append(body.substr(0, at));
  out.append(renamed);
  out.append(body.substr(at + name.size()));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Serving

std::optional<CloseReason> ClientSession::PendingEnd() const {
  if (!server_failed_.ok()) return CloseReason::kClientServerFailed;
  if (client_write_failed_) return CloseReason::kClientIoError;
  if (shutdown_now_) return CloseReason::kClientShutdown;
  if (shutdown_requested_ && attached_ == nullptr) return CloseReason::kClientShutdown;
  if (shutdown_requested_ && mode_ == config::PoolMode::kSession && tx_.Releasable()) {
    return CloseReason::kClientShutdown;
  }
  return std::nullopt;
}

void ClientSession::ArmClientWait() {
  // The pump held a ReadyForQuery back when no wait was armed to wake: read back now.
  if (read_back_due_ && !pump_running_) return SpawnActivation(WaitResult::kInterrupted);
  in_.ReleaseIfEmpty();  // idle clients hold no buffer
  if (WaitingOnClient()) {
    // Bytes and the close that followed them can arrive as one readiness event: the read that
    // took the bytes left the socket marked drained, and no event is coming for the close.
    // Where nothing Shardyard writes to this client would reveal its close either, look now.
    if (std::optional<WaitResult> now = PeekClient()) return SpawnActivation(*now);
  }
  auto [timeout, on_timeout] = ClientTimer();
  if (timeout.count() == 0) {
    StartClientRead([self = shared_from_this()](const error_code& ec, size_t, bool filled) {
      self->OnClientRead(ec, filled);
    });
    return;
  }
  Spawn(
      executor_,
      [self = shared_from_this(), timeout, on_timeout]() -> Task<> {
        WaitResult w = co_await self->WaitClientWithTimeout(timeout, on_timeout);
        if (!self->finished_) co_await self->Activate(w);
      },
      "client wait");
}

bool ClientSession::WaitingOnClient() const {
  return !in_.empty() || (attached_ != nullptr && (tx_.copy_in() || tx_.unsynced()));
}

std::optional<ClientSession::WaitResult> ClientSession::PeekClient() {
  switch (Peek(socket_)) {
    case Peeked::kBytes:
      return WaitResult::kReadable;
    case Peeked::kClosed:
      return WaitResult::kClosed;
    case Peeked::kFailed:
      return WaitResult::kFailed;
    case Peeked::kNothing:
      break;
  }
  return std::nullopt;
}

template <typename Handler>
void ClientSession::StartClientRead(Handler handler) {
  StartReactorRead(
      socket_, [this](int fd) { return FillClient(fd); }, std::move(handler));
}

std::pair<ssize_t, size_t> ClientSession::FillClient(int fd) {
  if (in_.capacity() == 0) {
    // An idle client holds no buffer: read into the worker's scratch block, keep what came.
    thread_local std::array<char, wire::ByteBuffer::kBlockSize> scratch;
    ssize_t n = ::recv(fd, scratch.data(), scratch.size(), 0);
    if (n > 0) in_.Append({scratch.data(), static_cast<size_t>(n)});
    return {n, scratch.size()};
  }
  std::span<char> space = ClientReadSpace();
  ssize_t n = ::recv(fd, space.data(), space.size(), 0);
  if (n > 0) in_.CommitWrite(static_cast<size_t>(n));
  return {n, space.size()};
}

ClientSession::WaitResult ClientSession::AfterClientRead(const error_code& ec, bool filled) {
  if (ec == asio::error::operation_aborted) return WaitResult::kInterrupted;
  if (ec == asio::error::eof) return WaitResult::kClosed;
  if (ec) return WaitResult::kFailed;
  if (filled) {
    // The read took all the room it had: take the rest now.
    if (WaitResult more = ReadClient(); more != WaitResult::kReadable) return more;
  }
  return WaitResult::kInputRead;
}

void ClientSession::OnClientRead(const error_code& ec, bool filled) {
  if (finished_) return;
  WaitResult result = AfterClientRead(ec, filled);
  if (result == WaitResult::kInputRead && FastForward()) return;
  if (EndsQuietly(result)) {
    // Nothing to stop, release or tell the client: end here, without the activation.
    Close(result == WaitResult::kClosed ? CloseReason::kClientEof : CloseReason::kClientTerminate,
          absl::OkStatus());
    return;
  }
  SpawnActivation(result);
}

void ClientSession::SpawnActivation(WaitResult result) {
  Spawn(
      executor_, [self = shared_from_this(), result]() { return self->Activate(result); },
      "client activation");
}

Task<> ClientSession::Activate(WaitResult result) {
  if (result == WaitResult::kReadable) result = ReadClient();
  std::optional<CloseReason> end;
  switch (result) {
    case WaitResult::kReadable:
    case WaitResult::kInputRead:
    case WaitResult::kInterrupted:
      break;
    case WaitResult::kClosed:
      end = CloseReason::kClientEof;
      break;
    case WaitResult::kFailed:
      end = CloseReason::kClientIoError;
      break;
    case WaitResult::kIdleTimeout:
      end = CloseReason::kClientIdleTimeout;
      break;
    case WaitResult::kIdleTransactionTimeout:
      end = CloseReason::kIdleTransactionTimeout;
      break;
  }
  if (!end) end = PendingEnd();
  if (!end && read_back_due_ && !co_await SettleBeforeRelease()) end = close_reason_;
  if (!end && !co_await ProcessInput()) end = close_reason_;
  if (!end) end = PendingEnd();
  if (end) {
    co_await Finish(*end, close_error_);
    co_return;
  }
  ArmClientWait();
  EnsurePump();  // the server connection this activation lent has no pump yet
}

bool ClientSession::FastForward() {
  if (PendingEnd() || read_back_due_) return false;
  const size_t run = FastRun();
  if (run == 0) return false;
  if (attached_ != nullptr) {
    ForwardFast(run);
    return true;
  }
  ServerConn* server = pool_->TryAcquire(executor_, worker_);
  if (server == nullptr) {
    WaitForServer();
    return true;
  }
  return AttachFast(server, absl::OkStatus(), run);
}

bool ClientSession::AttachFast(ServerConn* server, absl::Status status, size_t run) {
  // run == 0: the input is not for the fast path (a reserved follower's, say, checked only
  // now). Forwarding nothing would leave it unread in in_ while the client waits for a reply:
  // the activation takes the server and handles the input.
  if (run > 0 && status.ok() && server != nullptr && server->params == params_ && !PendingEnd()) {
    AttachTo(server);
    ForwardFast(run);
    return true;
  }
  if (fast_wait_ == nullptr) fast_wait_ = std::make_unique<FastWait>(MakeWaiter());
  fast_wait_->handed_off = true;
  fast_wait_->granted = server;
  fast_wait_->status = std::move(status);
  return false;
}

void ClientSession::CountRun(size_t run) {
  std::string_view data = in_.data();
  for (size_t at = 0; at < run;) {
    wire::Frame f = wire::ParseFrame(data.substr(at), max_message_size_);
    CountForwarded(f.type, f.body);
    at += f.size;
  }
}

void ClientSession::ForwardFast(size_t run) {
  may_lead_ = tx_.Releasable() && attached_->lead == nullptr && Pipelinable(run);
  CountRun(run);
  std::string_view data = in_.data();
  asio::async_write(attached_->socket(), asio::buffer(data.data(), run),
                    [self = shared_from_this(), run](const error_code& ec, size_t) {
                      self->OnForwarded(run, ec);
                    });
}

void ClientSession::WaitForServer() {
  if (fast_wait_ == nullptr) {
    fast_wait_ = std::make_unique<FastWait>(MakeWaiter());
  } else {
    fast_wait_->waiter = MakeWaiter();
  }
  Pool::Waiter& waiter = fast_wait_->waiter;
  waiter.handler = [self = shared_from_this()](ServerConn* server, absl::Status status) {
    self->OnGranted(server, std::move(status));
  };
  waiter.follows = true;  // OnGranted handles a follow grant
  waiter_ = &waiter;
  pool_->Enqueue(waiter);
}

void ClientSession::OnGranted(ServerConn* server, absl::Status status) {
  waiter_ = nullptr;
  if (server != nullptr && server->follow_grant) {
    server->follow_grant = false;
    return Follow(server);
  }
  if (finished_) {  // not expected: nothing ends a session while it waits for a server
    if (server != nullptr) pool_->Release(server);
    return;
  }
  if (server != nullptr && !pool_->Accept(server, fast_wait_->waiter)) {
    // The grant was closed (stale, or its settings replaced by a reload): try again.
    server = pool_->TryAcquire(executor_, worker_);
    if (server == nullptr) return WaitForServer();
  }
  if (!AttachFast(server, std::move(status), FastRun())) SpawnActivation(WaitResult::kInputRead);
}

// ---------------------------------------------------------------------------------------------
// Pipelining

namespace {

// Replies a follower exposed to the lead's cancel holds back, at most; past this it waits for
// the cancel to land and then relays them (see ResolveExposure).
constexpr size_t kMaxHeldReplies = size_t{1} << 20;

// Runs a held cancel's completion, if there is one.
void Done(std::unique_ptr<absl::AnyInvocable<void() &&>> done) {
  if (done != nullptr) (std::move(*done))();
}

}  // namespace

bool ClientSession::Pipelinable(size_t run) const {
  if (mode_ != config::PoolMode::kTransaction || run == 0 || run != in_.size()) return false;
  std::string_view data = in_.data();
  wire::Frame f = wire::ParseFrame(data, max_message_size_);
  if (f.type == 'Q') return f.size == run && sql::IsPlainDataStatement(CStringAt(f.body, 0));
  // Parse of the unnamed statement, Bind of it to the unnamed portal, perhaps Describe,
  // Execute of all rows, Sync: what drivers send for a statement with parameters.
  if (f.type != 'P' || f.body.empty() || f.body[0] != '\0' ||
      !sql::IsPlainDataStatement(CStringAt(f.body, 1))) {
    return false;
  }
  size_t at = f.size;
  auto next = [&]() {
    f = wire::ParseFrame(data.substr(at, run - at), max_message_size_);
    if (f.kind != wire::Frame::Kind::kMessage) return false;
    at += f.size;
    return true;
  };
  if (!next() || f.type != 'B' || f.body.size() < 2 || f.body[0] != '\0' || f.body[1] != '\0') {
    return false;
  }
  if (!next()) return false;
  if (f.type == 'D' && !next()) return false;
  if (f.type != 'E' || f.body.size() != 5 || f.body != std::string_view("\0\0\0\0\0", 5)) {
    return false;
  }
  return next() && f.type == 'S' && at == run;
}

bool ClientSession::LeadIfPossible() {
  if (!std::exchange(may_lead_, false)) return false;
  ServerConn* server = attached_;
  if (server == nullptr || !in_.empty() || settings_may_change_ || server_objects_ ||
      tx_.pending_ready() != 1 || tx_.unsynced() || skip_ready_ > 0 || exposure_ != nullptr ||
      server->lead != nullptr || server->follow_grant || server->follower != nullptr ||
      !server->usable()) {
    return false;
  }
  server->lead = this;
  if (!pool_->PipelineTo(server, worker_)) {
    server->lead = nullptr;
    return false;
  }
  client_paused_ = true;
  return true;
}

void ClientSession::Follow(ServerConn* server) {
  if (server->lead == nullptr) return TakeOver(server);  // the lead is done already
  if (finished_) return;  // declined: the lead releases the server as usual
  following_ = true;
  client_paused_ = true;  // already: a waiting client's socket is not read
  server->follower = shared_from_this();
  const size_t run = FastRun();
  if (server->lead_cancelled || PendingEnd() || params_ != server->params || !Pipelinable(run)) {
    return;  // the request goes out once the server is this client's (TakeOver)
  }
  SY_LOG_DEBUG("%s request pipelined behind C-%d on S-%d", Describe(), server->lead->id(),
               server->id());
  may_lead_ = true;  // for when it takes over
  attached_ = server;
  unnamed_parsed_ = false;
  tx_.Restart();
  CountRun(run);
  std::string_view data = in_.data();
  follow_sent_ = true;
  follow_writing_ = true;
  follow_run_ = static_cast<uint32_t>(run);
  asio::async_write(
      server->socket(), asio::buffer(data.data(), run),
      [self = shared_from_this()](const error_code& ec, size_t) { self->OnFollowSent(ec); });
}

void ClientSession::OnFollowSent(const error_code& ec) {
  follow_writing_ = false;
  if (ec) {
    attached_->set_unusable();  // the lead's pump fails on it too, and hands it over
    if (server_failed_.ok()) {
      server_failed_ = PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                                     "server connection lost", ec.message());
    }
  }
  if (std::exchange(takeover_due_, false)) TakeOver(attached_);
}

bool ClientSession::HandOver(ServerConn* server) {
  server->lead = nullptr;
  if (server->follower == nullptr && !server->follow_grant) return false;  // nobody follows
  server->skip_ready = tx_.pending_ready();  // 0 unless this client left before its reply ended
  if (server->follower != nullptr) {
    std::shared_ptr<ClientSession> next = std::move(server->follower);
    asio::post(next->executor_, [next, server] { next->TakeOver(server); });
  }
  // Else the grant is on its way: Follow finds no lead and takes over.
  return true;
}

void ClientSession::TakeOver(ServerConn* server) {
  if (follow_writing_) {
    takeover_due_ = true;  // OnFollowSent takes over
    return;
  }
  following_ = false;
  own_cancel_ = false;
  const int skip = std::exchange(server->skip_ready, 0);
  const bool lead_cancelled = std::exchange(server->lead_cancelled, false);
  const bool exposed = lead_cancelled && follow_sent_;
  std::unique_ptr<absl::AnyInvocable<void()&&>> cancel = std::move(deferred_cancel_);
  if (!follow_sent_) {
    // Nothing of this client's on the server yet.
    if (skip > 0 || !server->usable() || !server->relay_buf.empty() || finished_) {
      // The lead left mid-reply: the server goes back through a reset, and this client waits
      // for one like any other.
      if (!server->relay_buf.empty()) server->set_unusable();
      if (!server->usable()) {
        pool_->Discard(server, CloseReason::kServerIoError);
      } else {
        pool_->ResetAndRelease(server,
                               ResetState{skip, false, false, false, server->relay_scanner});
      }
      Done(std::move(cancel));
      if (finished_) return;
      client_paused_ = false;
      if (!FastForward()) SpawnActivation(WaitResult::kInputRead);
      return;
    }
    client_paused_ = false;
    if (lead_cancelled) {
      // The lead's cancel may still be on its way: like a released server, this one takes
      // nothing new until it has landed.
      Spawn(
          executor_,
          [self = shared_from_this(), server, cancel = std::move(cancel)]() mutable -> Task<> {
            co_await self->pool_->CancelsLanded(server);
            Done(std::move(cancel));  // nothing of its own ran yet: dropped
            if (!self->AttachFast(server, absl::OkStatus(), self->FastRun())) {
              co_await self->Activate(WaitResult::kInputRead);
            }
          },
          "pipelining: after the lead's cancel");
      return;
    }
    if (!AttachFast(server, absl::OkStatus(), FastRun())) SpawnActivation(WaitResult::kInputRead);
    if (cancel != nullptr) {
      if (attached_ != nullptr && tx_.pending_ready() > 0 && !following_) {
        pool_->ForwardCancel(attached_, std::move(*cancel));
      } else {
        Done(std::move(cancel));
      }
    }
    return;
  }
  follow_sent_ = false;
  skip_ready_ = skip;
  if (skip > 0) {
    SY_LOG_DEBUG("%s takes over S-%d: the client before it left, %d of its replies still to come",
                 Describe(), server->id(), skip);
  }
  if (skip == 0) server->relay_scanner.Reset();  // else it goes on from where the lead stopped
  if (cancel != nullptr) {
    own_cancel_ = true;
    pool_->ForwardCancel(server, std::move(*cancel));
  }
  if (!server->usable() && server_failed_.ok()) {
    server_failed_ = PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                                   "server connection lost");
  }
  if (finished_) {           // not expected: a follower reads no client input, so nothing ends it
    server->set_unusable();  // its reply is on the way and nobody will read it
    attached_ = nullptr;
    pool_->Discard(server, CloseReason::kServerIoError);
    return;
  }
  if (!server_failed_.ok()) {
    in_.Consume(follow_run_);
    return ResumeClient();  // ends the session (PendingEnd)
  }
  if (exposed) {
    // The request stays in in_ until its replies are known not to be the cancel's.
    SY_LOG_DEBUG("%s holds its replies back: a cancel for the request before it may stop it",
                 Describe());
    exposure_ = std::make_unique<Exposure>();
    may_lead_ = false;
  } else {
    in_.Consume(follow_run_);
    if (!LeadIfPossible()) ResumeClient();
  }
  EnsurePump();
}

void ClientSession::ResumeClient() {
  client_paused_ = false;
  if (finished_) return;
  if (PendingEnd()) return SpawnActivation(WaitResult::kInterrupted);
  ArmClientWait();
}

Task<> ClientSession::ResolveExposure(bool at_end) {
  ServerConn* server = attached_;
  co_await pool_->CancelsLanded(server);
  Exposure& x = *exposure_;
  if (at_end && x.cancel_error && !own_cancel_ && server->usable() && !finished_) {
    // A cancel meant for the previous client's request stopped this one: run it again.
    SY_LOG_INFO("%s request stopped by the cancel of the request before it on S-%d: sent again",
                Describe(), server->id());
    exposure_.reset();
    server->relay_buf.Clear();
    server->relay_scanner.Reset();
    tx_.Restart();
    pump_running_ = false;
    client_paused_ = false;
    ForwardFast(follow_run_);  // consumes the request when written; the pump starts again
    co_return;
  }
  own_cancel_ = false;
  std::string held = std::move(x.held);
  exposure_.reset();
  in_.Consume(follow_run_);
  if (!co_await WriteClient(held)) {
    PumpStopped();  // and the session ends (client_write_failed_)
    co_return;
  }
  if (at_end && ReadyToRelease()) {
    pump_running_ = false;
    ReleaseServer();
    ResumeClient();
    co_return;
  }
  ResumeClient();
  PumpNext();
}

size_t ClientSession::FastRun() const {
  if (skip_until_sync_) return 0;
  std::string_view data = in_.data();
  size_t run = 0;
  bool unnamed_parsed = attached_ != nullptr && unnamed_parsed_;
  while (true) {
    wire::Frame f = wire::ParseFrame(data.substr(run), max_message_size_);
    if (f.kind == wire::Frame::Kind::kNeedMore) return run;
    if (f.kind == wire::Frame::Kind::kError || !IsForwardable(f.type)) return 0;
    // A statement that is not this client's is never named to the server (ProcessInput).
    if (f.type == 'P') {
      unnamed_parsed |= !f.body.empty() && f.body[0] == '\0';
    } else if (NamesForeignStatement(f.type, f.body, unnamed_parsed)) {
      return 0;
    }
    // COPY data and Flush with no server attached are not forwarded (ProcessInput drops them).
    if (run == 0 && attached_ == nullptr &&
        (f.type == 'd' || f.type == 'c' || f.type == 'f' || f.type == 'H')) {
      return 0;
    }
    run += f.size;
    if (run >= wire::ByteBuffer::kBlockSize) return 0;  // long input: ProcessInput bounds it
  }
}

void ClientSession::OnForwarded(size_t bytes, const error_code& ec) {
  ForwardDone(bytes, ec);
  if (finished_) return;
  if (PendingEnd()) {
    // A failed write, or a shutdown that arrived meanwhile: the activation path ends it.
    SpawnActivation(WaitResult::kInputRead);
    return;
  }
  if (!LeadIfPossible()) ArmClientWait();
  EnsurePump();
}

void ClientSession::EnsurePump() {
  if (pump_running_ || attached_ == nullptr || read_back_due_ || following_) return;
  pump_running_ = true;
  std::string leftover = attached_->TakeBuffered();
  if (!leftover.empty()) attached_->relay_buf.Append(leftover);
  PumpNext();
}

bool ClientSession::EndSession(CloseReason reason, absl::Status error) {
  close_reason_ = reason;
  close_error_ = std::move(error);
  return false;
}

// Handles each complete message in the input buffer: forwards runs of messages to the
// attached server (borrowing one first when needed), answers what Shardyard answers itself.
// Returns false when the client sent Terminate or broke the protocol.
Task<bool> ClientSession::ProcessInput() {
  size_t run = 0;  // bytes at the front of in_ already accounted for and due to the server
  while (true) {
    std::string_view data = in_.data().substr(run);
    wire::Frame f = wire::ParseFrame(data, max_message_size_);
    if (f.kind == wire::Frame::Kind::kNeedMore) break;
    if (f.kind == wire::Frame::Kind::kError) {
      SY_LOG_WARNING("%s protocol violation: %s", Describe(), f.error.message());
      co_return EndSession(CloseReason::kClientProtocolError, f.error);
    }
    const char type = f.type;
    bool forward = IsForwardable(type) && !skip_until_sync_;
    if (forward && attached_ == nullptr &&
        (type == 'd' || type == 'c' || type == 'f' || type == 'H')) {
      // Nothing to flush, and COPY messages outside COPY are ignored, as PostgreSQL does.
      forward = false;
    }
    if (forward) {
      if (read_back_due_ && !co_await SettleBeforeRelease()) co_return false;
      // A statement that is not this client's never reaches the server under its name. Before
      // a server is lent, Shardyard answers as PostgreSQL would, saying why.
      if (attached_ == nullptr && (fast_wait_ == nullptr || !fast_wait_->handed_off) &&
          NamesForeignStatement(type, f.body, /*unnamed_parsed=*/false)) {
        FailRequest(type, ForeignStatementError(type, f.body));
        in_.Consume(f.size);
        if (!co_await FlushOut()) co_return EndSession(CloseReason::kClientIoError);
        continue;
      }
      if (attached_ == nullptr) {
        // AcquireServer's steps, inline: an idle server costs no coroutine frame at all, and
        // the wait for one happens in this frame.
        ServerConn* server = nullptr;
        absl::Status st;
        if (fast_wait_ != nullptr && fast_wait_->handed_off) {
          fast_wait_->handed_off = false;  // the fast path checked this one out already
          server = std::exchange(fast_wait_->granted, nullptr);
          st = std::move(fast_wait_->status);
        } else {
          server = pool_->TryAcquire(executor_, worker_);
        }
        if (server == nullptr && st.ok()) {
          Pool::Waiter waiter = MakeWaiter();
          waiter_ = &waiter;
          auto [granted, status] = co_await pool_->Acquire(waiter);
          waiter_ = nullptr;
          server = granted;
          st = std::move(status);
        }
        if (!st.ok()) {
          st = NoServerError(st);
        } else if (server->params == params_) {
          AttachTo(server);  // the server already has this client's settings (the usual case)
        } else {
          st = co_await AttachRestoringParams(server);
        }
        if (!server_failed_.ok() || shutdown_now_) co_return true;
        if (!st.ok()) {
          FailRequest(type, st);
          in_.Consume(f.size);
          if (!co_await FlushOut()) co_return EndSession(CloseReason::kClientIoError);
          continue;
        }
      }
      if (NamesForeignStatement(type, f.body, unnamed_parsed_)) {
        // Later in a transaction, PostgreSQL must fail it where it stands (the transaction
        // fails, and it skips to the Sync): it gets a name no statement has.
        if (run > 0) {
          EnsurePump();
          auto [ec, n] = co_await ForwardRun(run);
          if (!ForwardDone(run, ec)) co_return true;
          run = 0;
        }
        const std::string renamed = RenameForeignStatement(type, f.body);
        CountForwarded(type, std::string_view(renamed).substr(5));
        EnsurePump();
        auto [ec, n] =
            co_await asio::async_write(attached_->socket(), asio::buffer(renamed), kAwait);
        if (!ForwardDone(f.size, ec)) co_return true;
        continue;
      }
      CountForwarded(type, f.body);
      run += f.size;
      // Bound what is held before writing (a long COPY stream arrives as many messages). More
      // input may follow this write, so the pump must already be reading the server's replies:
      // a server blocked on its own output would otherwise stop reading ours.
      if (run >= wire::ByteBuffer::kBlockSize) {
        EnsurePump();
        auto [ec, n] = co_await ForwardRun(run);
        if (!ForwardDone(run, ec)) co_return true;
        run = 0;
      }
      continue;
    }
    // A message Shardyard handles itself ends the current run.
    if (run > 0) {
      EnsurePump();
      auto [ec, n] = co_await ForwardRun(run);
      if (!ForwardDone(run, ec)) co_return true;
      run = 0;
    }
    in_.Consume(f.size);
    if (type == 'X') co_return EndSession(CloseReason::kClientTerminate);
    if (skip_until_sync_) {
      if (type == 'S') {
        skip_until_sync_ = false;
        Out().clear();
        wire::Encode(wire::be::ReadyForQuery{TxStatus::kIdle}, &Out());
        if (!co_await FlushOut()) co_return EndSession(CloseReason::kClientIoError);
      }
      continue;
    }
    if (!IsForwardable(type)) {
      absl::Status st = Fatal(
          sqlstate::kProtocolViolation,
          Cat("invalid frontend message type ", static_cast<int>(static_cast<uint8_t>(type))));
      SY_LOG_WARNING("%s protocol violation: %s", Describe(), st.message());
      co_return EndSession(CloseReason::kClientProtocolError, st);
    }
  }
  if (run > 0) {
    auto [ec, n] = co_await ForwardRun(run);
    ForwardDone(run, ec);
  }
  co_return true;
}

void ClientSession::CountForwarded(char type, std::string_view body) {
  tx_.OnForwarded(type);
  switch (type) {
    case 'Q':
    case 'B':
      WatchSettings(type, body);
      break;
    case 'P':
      if (!body.empty() && body[0] == '\0') unnamed_parsed_ = true;
      // A session-mode client keeps its server, statements included, until it leaves.
      if (!body.empty() && body[0] != '\0' && mode_ != config::PoolMode::kSession) {
        NotePrepared(CStringAt(body, 0));
      }
      WatchSettings(type, body);
      break;
    default:
      break;
  }
}

void ClientSession::WatchSettings(char type, std::string_view body) {
  if (mode_ == config::PoolMode::kSession) return;
  // Query: the SQL; Parse: the statement name, then its SQL; Bind: the portal, then the
  // statement.
  std::string_view first = CStringAt(body, 0);
  if (type == 'Q') {
    WatchSql(first, nullptr);
  } else if (type == 'P') {
    WatchSql(CStringAt(body, first.size() + 1), &first);
  } else if (type == 'B' && watch_ != nullptr && !watch_->statements.empty()) {
    std::string_view statement = CStringAt(body, first.size() + 1);
    const auto& watched = watch_->statements;
    if (std::find(watched.begin(), watched.end(), statement) != watched.end()) {
      settings_may_change_ = true;
      watch_->full = true;
    }
  }
}

void ClientSession::WatchSql(std::string_view sql, const std::string_view* statement) {
  bool changes = false;
  // Cheap passes; the scan itself is rarely needed.
  if (sql::MayChangeSettings(sql) || sql::MayPrepare(sql)) {
    const std::string* standard = params_->Get("standard_conforming_strings");
    sql::SessionChanges found =
        sql::ScanSessionChanges(sql, standard == nullptr || *standard == "on");
    changes = found.settings && !ReportedOnly(found);
    if (found.objects) server_objects_ = true;  // PREPARE, DECLARE ... WITH HOLD, DO
    if (changes) {
      settings_may_change_ = true;
      if (watch_ == nullptr) watch_ = std::make_unique<SettingsWatch>();
      for (auto& name : found.custom_names) AppendIfAbsent(&watch_->custom_names, std::move(name));
      if (found.unnamed || found.reset) {
        watch_->full = true;
      } else {
        for (auto& name : found.set_names) AppendIfAbsent(&watch_->named, std::move(name));
      }
    }
  }
  if (statement == nullptr || watch_ == nullptr) return;
  // A prepared statement that changes settings does so each time a later Bind runs it.
  auto& watched = watch_->statements;
  auto it = std::find(watched.begin(), watched.end(), *statement);
  if (changes && it == watched.end()) {
    watched.emplace_back(*statement);
  } else if (!changes && it != watched.end()) {
    watched.erase(it);  // the unnamed statement, replaced by one that does not
  }
}

bool ClientSession::ReportedOnly(const sql::SessionChanges& found) const {
  // Settings the server reports come back in ParameterStatus messages, which the pump already
  // puts into the client's parameters; reading them back would cost a round trip for nothing
  // (an app that sets application_name per request would pay it on every transaction).
  if (found.unnamed || attached_ == nullptr || attached_->reported == nullptr) return false;
  for (const std::string& name : found.set_names) {
    const std::string canonical = pool::CanonicalParamName(name);
    if (attached_->reported->Get(canonical) == nullptr || pool::IsReadOnlyParam(canonical)) {
      return false;
    }
  }
  return true;
}

bool ClientSession::ForwardDone(size_t bytes, const error_code& ec) {
  in_.Consume(bytes);
  if (!ec) return true;
  attached_->set_unusable();
  if (server_failed_.ok()) {
    server_failed_ = PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                                   "server connection lost", ec.message());
  }
  return false;
}

void ClientSession::AttachTo(ServerConn* server) {
  attached_ = server;
  unnamed_parsed_ = false;
  tx_.Restart(server->tx_status);
  server->relay_scanner.Reset();
}

Task<absl::Status> ClientSession::AttachRestoringParams(ServerConn* server) {
  for (int attempt = 0;; ++attempt) {
    absl::Status st = co_await ApplyParams(server);
    if (st.ok()) {
      AttachTo(server);
      co_return absl::OkStatus();
    }
    // The server refused the client's settings: a fresh connection gets one more try.
    SY_LOG_WARNING("%s could not apply session parameters on S-%d: %s", Describe(), server->id(),
                   st.message());
    if (server->usable() && server->tx_status == TxStatus::kIdle && attempt == 0) {
      server->set_unusable();
    }
    pool_->Discard(server, CloseReason::kServerParamsFailed);
    if (attempt > 0) co_return AsError(st, "while restoring the session's parameters");
    auto [next, acquired] = co_await AcquireServer();
    if (!acquired.ok()) co_return NoServerError(acquired);
    server = next;
  }
}

void ClientSession::FailRequest(char type, const absl::Status& status) {
  Out().clear();
  wire::AppendErrorResponse(status, &Out());
  if (type == 'Q' || type == 'F' || type == 'S') {
    wire::Encode(wire::be::ReadyForQuery{TxStatus::kIdle}, &Out());
  } else {
    // Extended protocol: like PostgreSQL, ignore everything up to the next Sync.
    skip_until_sync_ = true;
  }
  SY_LOG_INFO("%s request failed: %s", Describe(), status.message());
}

// ---------------------------------------------------------------------------------------------
// The server → client pump

void ClientSession::PumpNext(bool look_first) {
  if (stopping_) return PumpStopped();
  wire::ByteBuffer& buf = attached_->relay_buf;
  if (buf.size() > held_tail_) return PumpRelay();
  std::span<char> space = buf.PrepareWrite(wire::ByteBuffer::kBlockSize);
  if (look_first) {
    ssize_t n =
        ::recv(attached_->socket().native_handle(), space.data(), space.size(), MSG_DONTWAIT);
    if (n > 0)
      return OnPumpRead({}, static_cast<size_t>(n), static_cast<size_t>(n) == space.size());
    if (n == 0) return OnPumpRead(asio::error::eof, 0, false);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return OnPumpRead(error_code(errno, asio::error::get_system_category()), 0, false);
    }
  }
  StartReactorRead(attached_->socket(), RecvInto(space),
                   [self = shared_from_this()](const error_code& ec, size_t n, bool filled) {
                     self->OnPumpRead(ec, n, filled);
                   });
}

void ClientSession::OnPumpRead(const error_code& ec, size_t n, bool filled) {
  if (ec) {
    if (!stopping_) {
      attached_->set_unusable();
      server_failed_ = PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                                     "server closed the connection unexpectedly",
                                     ec == asio::error::eof ? "" : std::string(ec.message()));
      WakeMain();
    }
    return PumpStopped();
  }
  pump_read_short_ = !filled;
  attached_->relay_buf.CommitWrite(n);
  PumpRelay();
}

void ClientSession::PumpRelay() {
  cut_at_ = kNoCut;
  handover_at_ = kNoCut;
  held_tail_ = 0;
  if (skip_ready_ > 0) {
    // The replies a departed lead still had coming: read and dropped.
    ServerConn* server = attached_;
    absl::Status st = server->relay_scanner.Scan(
        server->relay_buf.data(), [this, server](char type, std::string_view body, size_t) {
          if (type == 'Z' && --skip_ready_ == 0) server->relay_scanner.Stop();
          if (type == 'S') {
            server->OnParameterStatus(body);
            server->params = pool_->Intern(server->params);
          }
        });
    if (!st.ok()) {
      server->set_unusable();
      server_failed_ = st;
      WakeMain();
      return PumpStopped();
    }
    server->relay_buf.Consume(server->relay_scanner.scanned());
    if (server->relay_buf.empty()) return PumpNext();
  }
  absl::Status st = attached_->relay_scanner.Scan(
      attached_->relay_buf.data(),
      [this](char type, std::string_view body, size_t end) { OnServerMessage(type, body, end); });
  if (!st.ok()) {
    attached_->set_unusable();
    server_failed_ = st;
    WakeMain();
    return PumpStopped();
  }
  std::string_view chunk = attached_->relay_buf.data();
  if (handover_at_ != kNoCut) chunk = chunk.substr(0, handover_at_);  // the rest: the follower's
  wire::BackendScanner& scanner = attached_->relay_scanner;
  if ((settings_may_change_ || server_objects_ || mode_ == config::PoolMode::kStatement) &&
      !scanner.AtBoundary() && handover_at_ == kNoCut && exposure_ == nullptr &&
      (scanner.PartialType() == 0 || scanner.PartialType() == 'Z') && scanner.PartialBytes() < 6 &&
      scanner.PartialBytes() <= chunk.size()) {
    // The chunk ends inside what may be the ReadyForQuery this session must hold back (for the
    // transaction's clean-up, or the statement-mode error): its first bytes must not reach the
    // client either. They stay in the buffer, and are scanned again once the rest arrives.
    held_tail_ = static_cast<uint8_t>(scanner.PartialBytes());
    scanner.Reset();
    chunk.remove_suffix(held_tail_);
    if (chunk.empty()) return PumpNext();
  }
  if (exposure_ != nullptr) {  // (a plain statement: no read-back or statement-mode cut)
    exposure_->held.append(chunk);
    attached_->relay_buf.Clear();
    const bool at_end = ReadyToRelease();
    if (at_end || exposure_->held.size() >= kMaxHeldReplies) {
      Spawn(
          executor_,
          [self = shared_from_this(), at_end]() { return self->ResolveExposure(at_end); },
          "pipelining exposure");
      return;
    }
    return PumpNext();
  }
  if (cut_at_ != kNoCut) {
    // What follows (the ReadyForQuery) is held back for the settings' read-back, or replaced
    // with the error that ends the session.
    chunk = chunk.substr(0, cut_at_);
    if (!read_back_due_) {
      Out().assign(chunk);
      wire::AppendErrorResponse(server_failed_, &Out());
      server_sent_fatal_ = true;
      chunk = Out();
    }
  }
  asio::async_write(
      socket_, asio::buffer(chunk.data(), chunk.size()),
      [self = shared_from_this()](const error_code& ec, size_t) { self->OnPumpWritten(ec); });
}

void ClientSession::OnPumpWritten(const error_code& ec) {
  wire::ByteBuffer& buf = attached_->relay_buf;
  if (handover_at_ != kNoCut) {
    buf.Consume(std::exchange(handover_at_, kNoCut));  // what is left is the follower's
  } else if (held_tail_ > 0) {
    buf.Consume(buf.size() - held_tail_);
  } else {
    buf.Clear();
  }
  // A standard block stays with the server for its next transaction (no allocation per
  // transaction); storage grown larger for a long leftover goes back at once.
  if (buf.capacity() > wire::ByteBuffer::kBlockSize) buf.ReleaseIfEmpty();
  if (cut_at_ != kNoCut && !read_back_due_) out_.reset();
  if (ec) {
    if (!stopping_) {
      client_write_failed_ = true;
      WakeMain();
    }
    return PumpStopped();
  }
  if (read_back_due_) {
    WakeMain();  // the activation reads the settings back
    return PumpStopped();
  }
  if (ReadyToRelease()) {
    // The buffer is the server's: touch neither once the server may go to another client
    // (possibly on another worker).
    pump_running_ = false;
    ReleaseServer();
    if (client_paused_) ResumeClient();  // it led: its next request may go out now
    RearmClientTimers();
    return;
  }
  if (!server_failed_.ok()) {  // e.g. a transaction block in statement mode
    WakeMain();
    return PumpStopped();
  }
  if (shutdown_requested_ && tx_.Releasable()) {
    WakeMain();  // session mode: the transaction is over, the client may go
  }
  RearmClientTimers();
  // Mid-response, after a read that emptied the socket: the server's close may have come with
  // those bytes (a WARNING before an immediate shutdown, say) and left no event to wait for.
  // One read now finds it; in the usual case (whole responses) this path is not taken.
  PumpNext(/*look_first=*/pump_read_short_ && tx_.pending_ready() > 0);
}

void ClientSession::PumpStopped() {
  // The server is still attached here: the session releases it once the pump has stopped.
  ServerConn* server = attached_;
  wire::ByteBuffer& buf = server->relay_buf;
  if (!buf.empty()) {
    if (server->lead == this && (server->follower != nullptr || server->follow_grant)) {
      // This client's replies (scanned, not relayed) are dropped; the follower's, after its
      // last ReadyForQuery, stay. The scan stops only there, so while replies are still owed,
      // every byte here is this client's.
      if (handover_at_ != kNoCut) {
        buf.Consume(handover_at_);
      } else if (tx_.pending_ready() > 0) {
        buf.Clear();
      }
    } else {
      // Read but never relayed (the session stopped first): where the stream stands is
      // unknown, and no later client may see these bytes.
      server->set_unusable();
      buf.Clear();
    }
  }
  handover_at_ = kNoCut;
  held_tail_ = 0;  // the buffer's bytes were dropped above, or are the follower's
  pump_running_ = false;
  if (client_paused_ && !following_ && !stopping_) ResumeClient();  // the session ends
}

void ClientSession::OnServerMessage(char type, std::string_view body, size_t end) {
  switch (type) {
    case 'Z':
      tx_.OnReadyForQuery(body.size() == 1 ? static_cast<TxStatus>(body[0]) : tx_.status());
      attached_->tx_status = tx_.status();
      if ((settings_may_change_ || server_objects_) && tx_.Releasable() && server_failed_.ok() &&
          end >= 6) {
        read_back_due_ = true;
        cut_at_ = static_cast<uint32_t>(end - 6);
      }
      if (attached_->lead == this && tx_.Quiet() &&
          (attached_->follower != nullptr || attached_->follow_grant)) {
        if (tx_.status() == TxStatus::kIdle) {
          // The follower's replies come next: the relay stops here and hands the server over.
          handover_at_ = static_cast<uint32_t>(end);
          attached_->relay_scanner.Stop();
        } else {
          // Cannot happen after a plain statement; were it to, the request behind must not run
          // in this transaction: closing the connection rolls both back.
          attached_->set_unusable();
          server_failed_ = PgFatalStatus(absl::StatusCode::kInternal, sqlstate::kInternalError,
                                         "pipelined statement left a transaction open");
          if (end >= 6) cut_at_ = static_cast<uint32_t>(end - 6);
        }
      }
      if (mode_ == config::PoolMode::kStatement && tx_.IdleInTransaction() && server_failed_.ok()) {
        server_failed_ =
            PgFatalStatus(absl::StatusCode::kFailedPrecondition, sqlstate::kFeatureNotSupported,
                          "transaction blocks not allowed in statement pooling mode");
        // The client must not see ReadyForQuery 'T' (a transaction it cannot keep).
        if (end >= 6) cut_at_ = static_cast<uint32_t>(end - 6);
      }
      break;
    case 'S':
      attached_->OnParameterStatus(body);
      attached_->params = pool_->Intern(attached_->params);
      params_ = attached_->params;
      break;
    case 'E': {
      auto err = wire::Decode<wire::be::ErrorResponse>(body);
      if (err.ok() && wire::IsFatalSeverity(err->severity())) {
        server_sent_fatal_ = true;
        attached_->set_unusable();
      }
      if (exposure_ != nullptr && err.ok() && err->sqlstate() == sqlstate::kQueryCanceled) {
        exposure_->cancel_error = true;
      }
      break;
    }
    case 'G':
      tx_.OnCopyInResponse();
      break;
    case 'W':
      server_failed_ = Fatal(sqlstate::kFeatureNotSupported,
                             "COPY BOTH (replication) is not supported through Shardyard");
      attached_->set_unusable();
      break;
    default:
      break;
  }
}

bool ClientSession::ReadyToRelease() const {
  return mode_ != config::PoolMode::kSession && tx_.Releasable() &&
         attached_->relay_scanner.AtBoundary() && server_failed_.ok();
}

void ClientSession::ReleaseServer() {
  ServerConn* server = attached_;
  attached_ = nullptr;
  if (server->lead != this || !HandOver(server)) pool_->Release(server);
  // Idle clients hold no wait state (it is allocated again if the next transaction waits).
  if (fast_wait_ != nullptr && waiter_ == nullptr && !fast_wait_->handed_off) fast_wait_.reset();
  if (shutdown_requested_) WakeMain();
}

// ---------------------------------------------------------------------------------------------
// Client I/O

std::pair<Duration, ClientSession::WaitResult> ClientSession::ClientTimer() const {
  if (!logged_in_) return {Duration(0), WaitResult::kIdleTimeout};
  bool in_transaction = attached_ != nullptr && tx_.IdleInTransaction();
  bool idle = attached_ == nullptr || tx_.Releasable();
  if (in_transaction && config_->pool.idle_transaction_timeout.count() > 0) {
    return {config_->pool.idle_transaction_timeout, WaitResult::kIdleTransactionTimeout};
  }
  if (idle && config_->pool.client_idle_timeout.count() > 0) {
    return {config_->pool.client_idle_timeout, WaitResult::kIdleTimeout};
  }
  return {Duration(0), WaitResult::kIdleTimeout};
}

Task<ClientSession::WaitResult> ClientSession::WaitClientWithTimeout(Duration timeout,
                                                                     WaitResult on_timeout) {
  in_.ReleaseIfEmpty();
  Timer timer(executor_);
  timer.expires_after(timeout);
  auto r =
      co_await (socket_.async_wait(Socket::wait_read, kAwaitable) || timer.async_wait(kAwaitable));
  if (r.index() == 1) co_return on_timeout;
  auto [ec] = std::get<0>(r);
  if (ec == asio::error::operation_aborted) co_return WaitResult::kInterrupted;
  if (ec) co_return WaitResult::kFailed;
  co_return WaitResult::kReadable;
}

Task<ClientSession::WaitResult> ClientSession::ReadClientOrWait() {
  // A reactor read: what is there already is read at once; otherwise it waits (no epoll_ctl).
  auto [ec, n, filled] =
      co_await asio::async_initiate<decltype(kAwait), void(error_code, size_t, bool)>(
          [this](auto handler) { StartClientRead(std::move(handler)); }, kAwait);
  WaitResult w = AfterClientRead(ec, filled);
  co_return w == WaitResult::kInputRead ? WaitResult::kReadable : w;
}

std::span<char> ClientSession::ClientReadSpace() {
  // Room for the whole message whose header is already here, or a standard block.
  size_t want = wire::ByteBuffer::kBlockSize;
  size_t hint = wire::FrameSizeHint(in_.data());
  if (hint > in_.size() && hint <= max_message_size_ + size_t{5}) {
    want = std::max(want, hint - in_.size());
  }
  return in_.PrepareWrite(want);
}

ClientSession::WaitResult ClientSession::ReadClient() {
  while (true) {
    auto [n, asked] = FillClient(socket_.native_handle());
    if (n > 0) {
      if (static_cast<size_t>(n) < asked) return WaitResult::kReadable;
      continue;  // the buffer filled up: more is probably waiting, take it now
    }
    if (n == 0) return WaitResult::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return WaitResult::kReadable;  // spurious wake-up: nothing to read after all
    }
    return WaitResult::kFailed;
  }
}

Task<bool> ClientSession::WriteClient(std::string_view bytes) {
  // What Shardyard writes itself (login replies, errors) is small and nearly always fits the
  // socket's buffer: sent at once, without a trip through the event loop; the rest is waited for.
  error_code send_error;
  size_t sent = SendNow(socket_, bytes, send_error);
  if (!send_error && sent == bytes.size()) co_return true;
  if (send_error) {
    client_write_failed_ = true;
    co_return false;
  }
  bytes.remove_prefix(sent);
  auto [ec, n] =
      co_await asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()), kAwait);
  if (ec) {
    client_write_failed_ = true;
    co_return false;
  }
  co_return true;
}

Task<bool> ClientSession::FlushOut() {
  if (out_ == nullptr || out_->empty()) co_return true;
  bool ok = co_await WriteClient(*out_);
  // Messages Shardyard writes itself are rare after login: keep no buffer around.
  out_.reset();
  co_return ok;
}

// ---------------------------------------------------------------------------------------------
// The end

Task<> ClientSession::Finish(CloseReason reason, const absl::Status& error) {
  finished_ = true;
  absl::Status fatal = error;
  // Stop the pump before anything else writes to the client or touches the server.
  if (pump_running_) {
    stopping_ = true;
    error_code ignored;
    if (attached_ != nullptr) attached_->socket().cancel(ignored);
    socket_.cancel(ignored);
    // Both coroutines share the event loop: yield until the pump has seen its cancellation.
    while (pump_running_) co_await asio::post(executor_, kUseAwaitable);
  }
  ReleaseUnusedGrant();
  if (fatal.ok()) {
    switch (reason) {
      case CloseReason::kClientShutdown:
        fatal = PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kAdminShutdown,
                              "terminating connection due to administrator command");
        break;
      case CloseReason::kClientIdleTimeout:
        fatal = PgFatalStatus(
            absl::StatusCode::kDeadlineExceeded, sqlstate::kIdleSessionTimeout,
            "terminating connection due to idle-session timeout",
            Cat("client_idle_timeout is ", FormatDuration(config_->pool.client_idle_timeout), "."));
        break;
      case CloseReason::kIdleTransactionTimeout:
        fatal = PgFatalStatus(absl::StatusCode::kDeadlineExceeded,
                              sqlstate::kIdleInTransactionSessionTimeout,
                              "terminating connection due to idle-in-transaction timeout",
                              Cat("idle_transaction_timeout is ",
                                  FormatDuration(config_->pool.idle_transaction_timeout), "."));
        break;
      case CloseReason::kClientServerFailed:
        if (!server_sent_fatal_) fatal = AsFatal(server_failed_);
        break;
      default:
        break;
    }
  }
  if (!fatal.ok() && !client_write_failed_) {
    // Anything still pending (AuthenticationOk before a 3D000, say) goes out first.
    wire::AppendErrorResponse(fatal, &Out());
    co_await FlushOut();
  }
  Close(reason, fatal);
}

bool ClientSession::EndsQuietly(WaitResult result) const {
  if (attached_ != nullptr || pump_running_ || !logged_in_ || PendingEnd()) return false;
  if (result == WaitResult::kClosed) return true;
  // A lone Terminate, the usual goodbye.
  static constexpr std::string_view kTerminate("X\0\0\0\4", 5);
  return result == WaitResult::kInputRead && in_.data() == kTerminate;
}

void ClientSession::ReleaseUnusedGrant() {
  if (fast_wait_ != nullptr && fast_wait_->handed_off && fast_wait_->granted != nullptr) {
    pool_->Release(std::exchange(fast_wait_->granted, nullptr));  // never attached
  }
}

void ClientSession::Close(CloseReason reason, const absl::Status& fatal) {
  finished_ = true;
  ReleaseUnusedGrant();
  if (attached_ != nullptr && attached_->lead == this && HandOver(attached_)) {
    attached_ = nullptr;  // the follower skips what is left of this client's replies
  }
  if (attached_ != nullptr) {
    ServerConn* server = attached_;
    attached_ = nullptr;
    if (!server->usable()) {
      pool_->Discard(server, server_failed_.ok() ? CloseReason::kServerResetFailed
                                                 : CloseReason::kServerIoError);
    } else if (tx_.Releasable() && !tx_.copy_in() && mode_ != config::PoolMode::kSession &&
               !settings_may_change_ && !server_objects_ && !read_back_due_) {
      pool_->Release(server);
    } else {
      // Settings the client may have changed were never read back, and its prepared statements
      // and cursors never closed: they go with DISCARD ALL.
      pool_->ResetAndRelease(server,
                             ResetState{tx_.pending_ready(), tx_.unsynced(), tx_.copy_in(),
                                        settings_may_change_ || server_objects_ || read_back_due_,
                                        server->relay_scanner});
    }
  }
  const bool routine = reason == CloseReason::kClientEof ||
                       reason == CloseReason::kClientTerminate ||
                       reason == CloseReason::kCancelRequest;
  const LogLevel level = routine ? LogLevel::kDebug : LogLevel::kInfo;
  // Described while the socket can still say who the peer was, and only if it will be logged.
  std::string who = LogEnabled(level) ? Describe() : std::string();
  error_code ignored;
  socket_.close(ignored);
  CountClose(reason);
  std::string why(CloseReasonText(reason));
  if (!fatal.ok()) Append(&why, ": ", fatal.message());
  SY_LOG_AT(level, "%s closing because: %s", who, why);
}

}  // namespace shardyard::proxy
