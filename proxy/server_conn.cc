// Implements a server connection's login (trust, cleartext, md5, SCRAM) and internal exchanges.
#include "proxy/server_conn.h"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "common/log.h"
#include "common/pg_error.h"
#include "common/strings.h"
#include "proxy/socket_access.h"
#include "wire/auth.h"
#include "wire/backend_scanner.h"
#include "wire/error_response.h"
#include "wire/framer.h"

namespace shardyard::proxy {

using namespace asio::experimental::awaitable_operators;
using wire::be::Authentication;

namespace {

// Server messages read whole on internal paths (login, set_config, ROLLBACK) are small.
constexpr uint32_t kMaxInternalMessage = 16 << 20;

absl::Status ServerIoError(const ServerTarget& t, std::string_view what, const error_code& ec) {
  return PgFatalStatus(absl::StatusCode::kUnavailable, sqlstate::kConnectionFailure,
                       Cat("server connection to ", t.endpoint.ToString(), " failed: ", what,
                           ec ? Cat(" (", ec.message(), ")") : std::string()));
}

absl::Status LoginError(const ServerTarget& t, std::string message) {
  return PgFatalStatus(
      absl::StatusCode::kUnavailable, sqlstate::kSqlclientUnableToEstablishSqlconnection,
      Cat("could not log in to server ", t.endpoint.ToString(), " as \"", t.user, "\": ", message));
}

}  // namespace

ServerConn::ServerConn(const Executor& executor, int home, uint64_t id,
                       std::shared_ptr<const ServerTarget> target)
    : id_(id), home_(home), socket_(executor), target_(std::move(target)) {}

void ServerConn::MoveTo(const Executor& executor, int home) {
  if (home == home_ || !socket_.is_open()) return;
  // release() leaves the old event loop (epoll_ctl DEL); assign() joins the new one.
  error_code ec;
  auto native = socket_.release(ec);
  if (ec) {
    usable_ = false;
    return;
  }
  socket_ = Socket(executor);
  socket_.assign(protocol_, native, ec);
  if (ec) usable_ = false;
  MarkSoleOwner(socket_);  // the old socket let go of it: closing it needs no epoll_ctl
  home_ = home;
}

Task<absl::Status> ServerConn::Connect(const std::shared_ptr<const ScramClientKeys>& scram_keys) {
  Timer timer(socket_.get_executor());
  timer.expires_after(target_->connect_timeout);
  auto result = co_await (ConnectAndLogin(scram_keys.get()) || timer.async_wait(kAwaitable));
  if (result.index() == 1) {
    Close();
    co_return PgFatalStatus(
        absl::StatusCode::kDeadlineExceeded, sqlstate::kSqlclientUnableToEstablishSqlconnection,
        Cat("could not connect to server ", target_->endpoint.ToString(),
            ": server_connect_timeout (", FormatDuration(target_->connect_timeout), ") expired"));
  }
  absl::Status st = std::get<0>(std::move(result));
  if (!st.ok()) Close();
  created_at = pool::Clock::now();
  co_return st;
}

Task<absl::Status> ServerConn::ConnectAndLogin(const ScramClientKeys* scram_keys) {
  Resolver resolver(socket_.get_executor());
  std::string port = std::to_string(target_->endpoint.port);
  auto [rec, endpoints] = co_await resolver.async_resolve(target_->endpoint.host, port, kAwait);
  if (rec) {
    co_return PgFatalStatus(
        absl::StatusCode::kUnavailable, sqlstate::kSqlclientUnableToEstablishSqlconnection,
        Cat("could not resolve server host \"", target_->endpoint.host, "\": ", rec.message()));
  }
  auto [cec, ep] = co_await asio::async_connect(socket_, endpoints, kAwait);
  protocol_ = ep.protocol();
  if (cec) {
    co_return PgFatalStatus(
        absl::StatusCode::kUnavailable, sqlstate::kSqlclientUnableToEstablishSqlconnection,
        Cat("could not connect to server ", target_->endpoint.ToString(), ": ", cec.message()));
  }
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);

  wire::fe::StartupMessage startup;
  startup.parameters = {{"user", target_->user}, {"database", target_->database}};
  std::string startup_bytes = wire::Encode(startup);
  if (auto st = co_await WriteAll(startup_bytes); !st.ok()) co_return st;

  auto params = std::make_shared<pool::ParamSet>();
  bool authenticated = false;
  while (true) {
    char type = 0;
    std::string_view body;
    if (auto st = co_await ReadMessage(&type, &body); !st.ok()) co_return st;
    switch (type) {
      case Authentication::kType: {
        auto auth = wire::Decode<Authentication>(body);
        if (!auth.ok()) co_return LoginError(*target_, "malformed authentication request");
        if (auth->code == Authentication::kOk) {
          authenticated = true;
          break;
        }
        if (auto st = co_await Authenticate(*auth, scram_keys); !st.ok()) {
          co_return st;
        }
        break;
      }
      case wire::be::ErrorResponse::kType: {
        auto err = wire::Decode<wire::be::ErrorResponse>(body);
        if (!err.ok()) co_return LoginError(*target_, "malformed ErrorResponse");
        co_return wire::StatusFromErrorResponse(*err, absl::StatusCode::kUnavailable,
                                                /*as_fatal=*/true);
      }
      case wire::be::ParameterStatus::kType: {
        auto ps = wire::Decode<wire::be::ParameterStatus>(body);
        if (ps.ok()) params->Set(pool::CanonicalParamName(ps->name), ps->value);
        break;
      }
      case wire::be::BackendKeyData::kType: {
        auto k = wire::Decode<wire::be::BackendKeyData>(body);
        if (k.ok()) key = *k;
        break;
      }
      case wire::be::NoticeResponse::kType:
      case wire::be::NegotiateProtocolVersion::kType:
        break;
      case wire::be::ReadyForQuery::kType: {
        if (!authenticated) co_return LoginError(*target_, "ReadyForQuery before authentication");
        auto rfq = wire::Decode<wire::be::ReadyForQuery>(body);
        tx_status = rfq.ok() ? rfq->status : wire::be::TxStatus::kIdle;
        reported = params;
        this->params = std::move(params);
        co_return absl::OkStatus();
      }
      default:
        co_return LoginError(*target_, Cat("unexpected message type '", type, "' during login"));
    }
  }
}

Task<absl::Status> ServerConn::Authenticate(const Authentication& request,
                                            const ScramClientKeys* scram_keys) {
  const std::string& password = target_->password;
  const bool md5_secret = crypto::IsMd5Secret(password);
  const bool scram_secret = password.starts_with("SCRAM-SHA-256$");
  switch (request.code) {
    case Authentication::kCleartextPassword: {
      if (md5_secret || scram_secret) {
        co_return LoginError(*target_,
                             "the server asks for the cleartext password but the configured one "
                             "is a hash; set server_password for this user");
      }
      std::string reply = wire::Encode(wire::fe::PasswordMessage{password});
      co_return co_await WriteAll(reply);
    }
    case Authentication::kMd5Password: {
      if (scram_secret) {
        co_return LoginError(*target_,
                             "the server asks for md5 but the configured password is a SCRAM "
                             "secret; set server_password for this user");
      }
      std::string reply = wire::Encode(
          wire::fe::PasswordMessage{wire::Md5Response(target_->user, password, request.data)});
      co_return co_await WriteAll(reply);
    }
    case Authentication::kSasl: {
      bool offered = false;
      for (const auto& m : request.mechanisms) offered |= (m == "SCRAM-SHA-256");
      if (!offered) co_return LoginError(*target_, "the server offers no SASL mechanism we know");
      std::optional<wire::ScramClientExchange> scram;
      if (scram_secret) {
        if (scram_keys == nullptr) {
          co_return LoginError(*target_,
                               "the configured password is a SCRAM secret and no client has yet "
                               "logged in with it; set server_password for this user");
        }
        scram.emplace(
            wire::ScramClientExchange::WithKeys(scram_keys->client_key, scram_keys->server_key));
      } else if (md5_secret) {
        co_return LoginError(*target_,
                             "the server asks for SCRAM but the configured password is an md5 "
                             "hash; set server_password for this user");
      } else {
        scram.emplace(password);
      }
      std::string initial =
          wire::Encode(wire::fe::SaslInitialResponse{"SCRAM-SHA-256", scram->ClientFirst()});
      if (auto st = co_await WriteAll(initial); !st.ok()) co_return st;
      // SASLContinue → our final message; SASLFinal → verify the server.
      for (int step = 0; step < 2; ++step) {
        char type = 0;
        std::string_view body;
        if (auto st = co_await ReadMessage(&type, &body); !st.ok()) co_return st;
        if (type == wire::be::ErrorResponse::kType) {
          auto err = wire::Decode<wire::be::ErrorResponse>(body);
          if (!err.ok()) co_return LoginError(*target_, "malformed ErrorResponse");
          co_return wire::StatusFromErrorResponse(*err, absl::StatusCode::kUnavailable, true);
        }
        auto auth = type == Authentication::kType ? wire::Decode<Authentication>(body)
                                                  : absl::InvalidArgumentError("not 'R'");
        if (!auth.ok()) co_return LoginError(*target_, "malformed SASL exchange");
        if (step == 0 && auth->code == Authentication::kSaslContinue) {
          auto final_msg = scram->HandleServerFirst(auth->data);
          if (!final_msg.ok())
            co_return LoginError(*target_, std::string(final_msg.status().message()));
          std::string response = wire::Encode(wire::fe::SaslResponse{*final_msg});
          if (auto st = co_await WriteAll(response); !st.ok()) co_return st;
        } else if (step == 1 && auth->code == Authentication::kSaslFinal) {
          if (auto st = scram->HandleServerFinal(auth->data); !st.ok()) {
            co_return LoginError(*target_, std::string(st.message()));
          }
        } else {
          co_return LoginError(*target_, "unexpected message in the SASL exchange");
        }
      }
      co_return absl::OkStatus();
    }
    default:
      co_return LoginError(*target_, Cat("unsupported authentication method ", request.code,
                                         " (Shardyard supports trust, password, md5 and "
                                         "scram-sha-256 towards servers)"));
  }
}

Task<absl::Status> ServerConn::WriteAll(const std::string& bytes) {
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(bytes), kAwait);
  if (ec) {
    usable_ = false;
    co_return ServerIoError(*target_, "write", ec);
  }
  co_return absl::OkStatus();
}

Task<absl::Status> ServerConn::ReadMessage(char* type, std::string_view* body) {
  while (true) {
    std::string_view avail = std::string_view(read_buf_).substr(read_pos_);
    wire::Frame f = wire::ParseFrame(avail, kMaxInternalMessage);
    if (f.kind == wire::Frame::Kind::kMessage) {
      *type = f.type;
      *body = f.body;
      read_pos_ += f.size;
      co_return absl::OkStatus();
    }
    if (f.kind == wire::Frame::Kind::kError) {
      usable_ = false;
      co_return f.error;
    }
    if (read_pos_ > 0) {
      read_buf_.erase(0, read_pos_);
      read_pos_ = 0;
    }
    size_t old = read_buf_.size();
    read_buf_.resize(old + 8192);
    auto [ec, n] =
        co_await socket_.async_read_some(asio::buffer(read_buf_.data() + old, 8192), kAwait);
    read_buf_.resize(old + n);
    if (ec) {
      usable_ = false;
      co_return ServerIoError(*target_, ec == asio::error::eof ? "closed by the server" : "read",
                              ec == asio::error::eof ? error_code() : ec);
    }
  }
}

void ServerConn::OnParameterStatus(std::string_view body) {
  auto ps = wire::Decode<wire::be::ParameterStatus>(body);
  if (!ps.ok()) return;
  std::string name = pool::CanonicalParamName(ps->name);
  if (params) {
    const std::string* cur = params->Get(name);
    if (cur != nullptr && *cur == ps->value) return;
  }
  auto copy =
      params ? std::make_shared<pool::ParamSet>(*params) : std::make_shared<pool::ParamSet>();
  copy->Set(name, ps->value);
  params = std::move(copy);
}

void ServerConn::ForgetUnreportedParams() {
  if (!params || !reported) return;
  auto kept = std::make_shared<pool::ParamSet>();
  for (const auto& [name, value] : params->entries()) {
    if (reported->Get(name) != nullptr) kept->Set(name, value);
  }
  if (kept->entries().size() != params->entries().size()) params = std::move(kept);
}

Task<absl::Status> ServerConn::RunInternal(const std::string& messages, int ready_count,
                                           std::vector<wire::be::DataRow>* rows) {
  if (auto st = co_await WriteAll(messages); !st.ok()) co_return st;
  absl::Status first_error;
  while (ready_count > 0) {
    char type = 0;
    std::string_view body;
    if (auto st = co_await ReadMessage(&type, &body); !st.ok()) co_return st;
    switch (type) {
      case wire::be::ReadyForQuery::kType: {
        auto rfq = wire::Decode<wire::be::ReadyForQuery>(body);
        if (rfq.ok()) tx_status = rfq->status;
        --ready_count;
        break;
      }
      case wire::be::ParameterStatus::kType:
        OnParameterStatus(body);
        break;
      case wire::be::DataRow::kType:
        if (rows != nullptr) {
          auto row = wire::Decode<wire::be::DataRow>(body);
          if (!row.ok()) {
            usable_ = false;
            co_return row.status();
          }
          rows->push_back(*std::move(row));
        }
        break;
      case wire::be::ErrorResponse::kType:
        if (first_error.ok()) {
          auto err = wire::Decode<wire::be::ErrorResponse>(body);
          first_error = err.ok() ? wire::StatusFromErrorResponse(*err, absl::StatusCode::kInternal)
                                 : absl::InternalError("malformed ErrorResponse");
          if (err.ok() && wire::IsFatalSeverity(err->severity())) usable_ = false;
        }
        break;
      default:
        break;  // RowDescription, DataRow, CommandComplete, NoticeResponse, ...
    }
  }
  // Internal replies are small; keep no buffer while the connection idles in the pool.
  if (read_pos_ == read_buf_.size()) {
    std::string().swap(read_buf_);
    read_pos_ = 0;
  }
  co_return first_error;
}

Task<absl::Status> ServerConn::Drain(int ready_count, wire::BackendScanner& scanner) {
  // Bytes already buffered by internal reads come first.
  std::string pending = TakeBuffered();
  std::string chunk(16384, '\0');
  bool copy_in = false;
  while (ready_count > 0) {
    std::string_view data;
    if (!pending.empty()) {
      data = pending;
    } else {
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk), kAwait);
      if (ec) {
        usable_ = false;
        co_return ServerIoError(*target_, "read while draining", ec);
      }
      data = std::string_view(chunk.data(), n);
    }
    absl::Status st = scanner.Scan(data, [&](char type, std::string_view body, size_t) {
      if (type == 'Z') {
        --ready_count;
        if (body.size() == 1) tx_status = static_cast<wire::be::TxStatus>(body[0]);
      } else if (type == 'G') {
        copy_in = true;
      } else if (type == 'S') {
        OnParameterStatus(body);
      }
    });
    pending.clear();
    if (!st.ok()) {
      usable_ = false;
      co_return st;
    }
    if (copy_in) {
      copy_in = false;
      std::string copy_fail = wire::Encode(wire::fe::CopyFail{"client disconnected"});
      if (auto w = co_await WriteAll(copy_fail); !w.ok()) co_return w;
    }
  }
  if (!scanner.AtBoundary()) {
    usable_ = false;
    co_return absl::DataLossError("server stream ended mid-message");
  }
  co_return absl::OkStatus();
}

std::string ServerConn::TakeBuffered() {
  std::string out = read_buf_.substr(read_pos_);
  std::string().swap(read_buf_);
  read_pos_ = 0;
  return out;
}

bool ServerConn::MayHaveInput() { return proxy::MayHaveInput(socket_); }

bool ServerConn::IsStale() {
  if (!usable_ || !socket_.is_open()) return true;
  // Closed by the server, or an unsolicited message (typically a FATAL before it closes).
  return Peek(socket_) != Peeked::kNothing;
}

void ServerConn::Close() {
  usable_ = false;
  error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace shardyard::proxy
