// Builds client-facing ErrorResponses from Status values and vice versa.
#include "wire/error_response.h"

namespace shardyard::wire {

be::ErrorResponse ErrorResponseFor(const PgErrorFields& f) {
  be::ErrorResponse e;
  e.fields.emplace_back('S', f.severity);
  e.fields.emplace_back('V', f.severity);
  e.fields.emplace_back('C', f.sqlstate);
  e.fields.emplace_back('M', f.message);
  if (!f.detail.empty()) e.fields.emplace_back('D', f.detail);
  if (!f.hint.empty()) e.fields.emplace_back('H', f.hint);
  return e;
}

be::ErrorResponse ErrorResponseFor(const absl::Status& status) {
  return ErrorResponseFor(PgErrorFor(status));
}

void AppendErrorResponse(const absl::Status& status, std::string* out) {
  Encode(ErrorResponseFor(status), out);
}

absl::Status StatusFromErrorResponse(const be::ErrorFields& error, absl::StatusCode code,
                                     bool as_fatal) {
  PgErrorFields f;
  f.severity = as_fatal ? "FATAL" : std::string(error.severity());
  if (f.severity.empty()) f.severity = "ERROR";
  f.sqlstate = std::string(error.sqlstate());
  if (f.sqlstate.empty()) f.sqlstate = std::string(sqlstate::kInternalError);
  f.message = std::string(error.message());
  f.detail = std::string(error.Get('D'));
  f.hint = std::string(error.Get('H'));
  return PgError(code, std::move(f));
}

bool IsFatalSeverity(std::string_view severity) {
  return severity == "FATAL" || severity == "PANIC";
}

}  // namespace shardyard::wire
