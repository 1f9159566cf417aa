// The one place a failure becomes what a client sees: an ErrorResponse with a real SQLSTATE.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/pg_error.h"
#include "wire/messages.h"

namespace shardyard::wire {

// The ErrorResponse for a failed status (its carried PostgreSQL fields, or a SQLSTATE derived
// from its code).
be::ErrorResponse ErrorResponseFor(const absl::Status& status);
be::ErrorResponse ErrorResponseFor(const PgErrorFields& fields);

// Appends the encoded ErrorResponse for `status` to `out`.
void AppendErrorResponse(const absl::Status& status, std::string* out);

// The fields of a server's ErrorResponse as a Status that re-creates it for a client; with
// `as_fatal` the severity becomes FATAL (a login failure we relay, for instance).
absl::Status StatusFromErrorResponse(const be::ErrorFields& error, absl::StatusCode code,
                                     bool as_fatal = false);

// True for FATAL and PANIC.
bool IsFatalSeverity(std::string_view severity);

}  // namespace shardyard::wire
