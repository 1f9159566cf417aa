// Encodes PostgreSQL error fields as an absl::Status payload and maps plain statuses to SQLSTATEs.
#include "common/pg_error.h"

#include <utility>

#include "absl/strings/cord.h"
#include "common/strings.h"

namespace shardyard {
namespace {

constexpr std::string_view kPayloadUrl = "shardyard/pg-error";

// Fields are stored as the wire format stores them: a code byte, the value, a NUL.
std::string EncodeFields(const PgErrorFields& f) {
  std::string out;
  auto put = [&out](char code, const std::string& value) {
    if (value.empty()) return;
    out.push_back(code);
    out.append(value);
    out.push_back('\0');
  };
  put('S', f.severity);
  put('C', f.sqlstate);
  put('M', f.message);
  put('D', f.detail);
  put('H', f.hint);
  return out;
}

PgErrorFields DecodeFields(std::string_view data) {
  PgErrorFields f;
  f.severity.clear();
  f.sqlstate.clear();
  for (std::string_view part : Split(data, '\0', /*skip_empty=*/true)) {
    std::string value(part.substr(1));
    switch (part[0]) {
      case 'S':
        f.severity = std::move(value);
        break;
      case 'C':
        f.sqlstate = std::move(value);
        break;
      case 'M':
        f.message = std::move(value);
        break;
      case 'D':
        f.detail = std::move(value);
        break;
      case 'H':
        f.hint = std::move(value);
        break;
      default:
        break;
    }
  }
  return f;
}

std::string_view SqlstateForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kDataLoss:
      return sqlstate::kProtocolViolation;
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
      return sqlstate::kQueryCanceled;
    case absl::StatusCode::kResourceExhausted:
      return sqlstate::kTooManyConnections;
    case absl::StatusCode::kUnauthenticated:
      return sqlstate::kInvalidPassword;
    case absl::StatusCode::kPermissionDenied:
      return sqlstate::kInvalidAuthorizationSpecification;
    case absl::StatusCode::kNotFound:
      return sqlstate::kInvalidCatalogName;
    case absl::StatusCode::kUnimplemented:
      return sqlstate::kFeatureNotSupported;
    case absl::StatusCode::kUnavailable:
      return sqlstate::kConnectionFailure;
    default:
      return sqlstate::kInternalError;
  }
}

}  // namespace

absl::Status PgError(absl::StatusCode code, PgErrorFields fields) {
  absl::Status status(code, fields.message);
  status.SetPayload(AV(kPayloadUrl), absl::Cord(EncodeFields(fields)));
  return status;
}

absl::Status PgErrorStatus(absl::StatusCode code, std::string_view state, std::string message,
                           std::string detail, std::string hint) {
  return PgError(
      code, {"ERROR", std::string(state), std::move(message), std::move(detail), std::move(hint)});
}

absl::Status PgFatalStatus(absl::StatusCode code, std::string_view state, std::string message,
                           std::string detail, std::string hint) {
  return PgError(
      code, {"FATAL", std::string(state), std::move(message), std::move(detail), std::move(hint)});
}

std::optional<PgErrorFields> GetPgError(const absl::Status& status) {
  auto payload = status.GetPayload(AV(kPayloadUrl));
  if (!payload) return std::nullopt;
  return DecodeFields(std::string(*payload));
}

PgErrorFields PgErrorFor(const absl::Status& status) {
  if (auto fields = GetPgError(status)) return *std::move(fields);
  PgErrorFields f;
  f.severity = "ERROR";
  f.sqlstate = std::string(SqlstateForCode(status.code()));
  f.message = std::string(status.message());
  if (f.message.empty()) f.message = absl::StatusCodeToString(status.code());
  return f;
}

}  // namespace shardyard
