// Carries PostgreSQL error fields (severity, SQLSTATE, message, ...) inside an absl::Status.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace shardyard {

// The subset of ErrorResponse fields Shardyard produces or relays.
struct PgErrorFields {
  std::string severity = "ERROR";  // ERROR, FATAL, PANIC (or WARNING etc. for notices)
  std::string sqlstate = "XX000";
  std::string message;
  std::string detail;
  std::string hint;

  bool operator==(const PgErrorFields&) const = default;
};

// Well-known SQLSTATEs, named as in PostgreSQL's errcodes.txt.
namespace sqlstate {
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kSqlclientUnableToEstablishSqlconnection = "08001";
inline constexpr std::string_view kInvalidAuthorizationSpecification = "28000";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kInvalidCatalogName = "3D000";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kQueryCanceled = "57014";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kIdleSessionTimeout = "57P05";
inline constexpr std::string_view kIdleInTransactionSessionTimeout = "25P03";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInvalidSqlStatementName = "26000";
inline constexpr std::string_view kProgramLimitExceeded = "54000";
inline constexpr std::string_view kInternalError = "XX000";
inline constexpr std::string_view kConfigFileError = "F0000";
}  // namespace sqlstate

// Builds a Status that, when it reaches a client, becomes exactly this ErrorResponse.
absl::Status PgError(absl::StatusCode code, PgErrorFields fields);

// Shorthands for the common severities.
absl::Status PgErrorStatus(absl::StatusCode code, std::string_view sqlstate, std::string message,
                           std::string detail = "", std::string hint = "");
absl::Status PgFatalStatus(absl::StatusCode code, std::string_view sqlstate, std::string message,
                           std::string detail = "", std::string hint = "");

// The fields carried by `status`, if it was built by PgError.
std::optional<PgErrorFields> GetPgError(const absl::Status& status);

// The fields a client should see for `status`: the carried ones, or ones derived from the
// status code with a real SQLSTATE. `status` must not be OK.
PgErrorFields PgErrorFor(const absl::Status& status);

}  // namespace shardyard
