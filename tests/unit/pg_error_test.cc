// Checks that every failure reaches clients as an ErrorResponse with a real SQLSTATE.
#include "common/pg_error.h"

#include <gtest/gtest.h>

#include "wire/error_response.h"

namespace shardyard {
namespace {

TEST(PgErrorTest, CarriedFieldsSurviveTheStatus) {
  absl::Status st = PgFatalStatus(absl::StatusCode::kNotFound, sqlstate::kInvalidCatalogName,
                                  "database \"x\" does not exist", "detail", "hint");
  auto fields = GetPgError(st);
  ASSERT_TRUE(fields);
  EXPECT_EQ(fields->severity, "FATAL");
  EXPECT_EQ(fields->sqlstate, "3D000");
  EXPECT_EQ(fields->detail, "detail");
  EXPECT_EQ(fields->hint, "hint");
}

TEST(PgErrorTest, PlainStatusesGetARealSqlstate) {
  EXPECT_EQ(PgErrorFor(absl::DeadlineExceededError("slow")).sqlstate, "57014");
  EXPECT_EQ(PgErrorFor(absl::ResourceExhaustedError("full")).sqlstate, "53300");
  EXPECT_EQ(PgErrorFor(absl::InvalidArgumentError("bad")).sqlstate, "08P01");
  EXPECT_EQ(PgErrorFor(absl::UnimplementedError("no")).sqlstate, "0A000");
  EXPECT_EQ(PgErrorFor(absl::InternalError("bug")).sqlstate, "XX000");
  EXPECT_EQ(PgErrorFor(absl::InternalError("bug")).severity, "ERROR");
}

TEST(PgErrorTest, ErrorResponseCarriesSeveritySqlstateAndMessage) {
  absl::Status st = PgErrorStatus(absl::StatusCode::kDeadlineExceeded, sqlstate::kQueryCanceled,
                                  "canceling statement due to query_wait_timeout");
  wire::be::ErrorResponse e = wire::ErrorResponseFor(st);
  EXPECT_EQ(e.severity(), "ERROR");
  EXPECT_EQ(e.sqlstate(), "57014");
  EXPECT_EQ(e.message(), "canceling statement due to query_wait_timeout");
  EXPECT_EQ(e.Get('S'), "ERROR");
}

TEST(PgErrorTest, ServerErrorsRoundTripThroughStatus) {
  wire::be::ErrorResponse server;
  server.fields = {{'S', "FATAL"},
                   {'V', "FATAL"},
                   {'C', "28P01"},
                   {'M', "password authentication failed for user \"app\""}};
  absl::Status st = wire::StatusFromErrorResponse(server, absl::StatusCode::kUnavailable);
  wire::be::ErrorResponse again = wire::ErrorResponseFor(st);
  EXPECT_EQ(again.severity(), "FATAL");
  EXPECT_EQ(again.sqlstate(), "28P01");
  EXPECT_EQ(again.message(), server.message());
}

}  // namespace
}  // namespace shardyard
