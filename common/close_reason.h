// Every reason Shardyard closes a client or server connection, declared once, each with a counter.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardyard {

// X(enumerator, side, metric_name, log text). The log text completes "closing because: ...".
#define SY_CLOSE_REASONS(X)                                                                   \
  X(kClientTerminate, client, "client_terminate", "client sent Terminate")                    \
  X(kClientEof, client, "client_eof", "client closed the connection")                         \
  X(kClientTerminateAtStartup, client, "client_terminate_at_startup",                         \
    "client sent Terminate in place of its startup packet")                                   \
  X(kClientIoError, client, "client_io_error", "client connection failed")                    \
  X(kClientProtocolError, client, "client_protocol_error", "client protocol violation")       \
  X(kClientLoginTimeout, client, "client_login_timeout", "client_login_timeout expired")      \
  X(kClientAuthFailed, client, "client_auth_failed", "authentication failed")                 \
  X(kClientLoginRejected, client, "client_login_rejected", "login rejected")                  \
  X(kTooManyClients, client, "too_many_clients", "max_client_connections reached")            \
  X(kClientIdleTimeout, client, "client_idle_timeout", "client_idle_timeout expired")         \
  X(kIdleTransactionTimeout, client, "idle_transaction_timeout",                              \
    "idle_transaction_timeout expired")                                                       \
  X(kClientServerFailed, client, "server_failed", "its server connection failed")             \
  X(kClientServerLoginFailed, client, "server_login_failed", "server login has been failing") \
  X(kCancelRequest, client, "cancel_request", "cancel request handled")                       \
  X(kClientShutdown, client, "shutdown", "Shardyard is shutting down")                        \
  X(kServerIdleTimeout, server, "server_idle_timeout", "server_idle_timeout expired")         \
  X(kServerLifetime, server, "server_lifetime", "server_lifetime expired")                    \
  X(kServerEof, server, "server_eof", "server closed the connection")                         \
  X(kServerIoError, server, "server_io_error", "server connection failed")                    \
  X(kServerProtocolError, server, "server_protocol_error", "server protocol violation")       \
  X(kServerConnectFailed, server, "server_connect_failed", "server connect failed")           \
  X(kServerLoginFailed, server, "server_login_failed", "server login failed")                 \
  X(kServerResetFailed, server, "server_reset_failed",                                        \
    "could not return the server to a clean state")                                           \
  X(kServerParamsFailed, server, "server_params_failed",                                      \
    "could not apply the client's session parameters")                                        \
  X(kServerStaleOnCheckout, server, "server_stale", "server was closed while idle")           \
  X(kServerPoolShrunk, server, "pool_shrunk", "pool configuration changed")                   \
  X(kServerEvicted, server, "server_evicted",                                                 \
    "another pool of the database needed the slot (max_db_connections)")                      \
  X(kServerShutdown, server, "shutdown", "Shardyard is shutting down")

enum class CloseReason : uint8_t {
#define SY_ENUM(name, side, metric, text) name,
  SY_CLOSE_REASONS(SY_ENUM)
#undef SY_ENUM
};

inline constexpr int kCloseReasonCount = 0
#define SY_COUNT(name, side, metric, text) +1
    SY_CLOSE_REASONS(SY_COUNT)
#undef SY_COUNT
    ;

// The human sentence logged after "closing because: ".
std::string_view CloseReasonText(CloseReason reason);
// A stable snake_case name for metric labels (bounded: one per enumerator).
std::string_view CloseReasonMetricName(CloseReason reason);
// "client" or "server".
std::string_view CloseReasonSide(CloseReason reason);

// Counts one close; thread-safe.
void CountClose(CloseReason reason);
uint64_t CloseCount(CloseReason reason);

}  // namespace shardyard
