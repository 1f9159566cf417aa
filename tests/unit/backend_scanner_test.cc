// Checks that the server-stream scanner finds the messages the proxy acts on wherever chunk
// boundaries fall, without buffering the rest.
#include "wire/backend_scanner.h"

#include <gtest/gtest.h>

#include "wire/messages.h"

namespace shardyard::wire {
namespace {

std::string SampleStream() {
  std::string s;
  Encode(be::RowDescription{{{"id", 0, 0, 23, 4, -1, 0}}}, &s);
  for (int i = 0; i < 50; ++i) Encode(be::DataRow{{std::to_string(i)}}, &s);
  Encode(be::DataRow{{std::string(70000, 'z')}}, &s);  // larger than any chunk
  Encode(be::ParameterStatus{"TimeZone", "UTC"}, &s);
  Encode(be::CommandComplete{"SELECT 51"}, &s);
  Encode(be::ReadyForQuery{be::TxStatus::kInTransaction}, &s);
  return s;
}

std::vector<std::pair<char, std::string>> ScanInChunks(const std::string& stream, size_t step,
                                                       bool* at_boundary) {
  BackendScanner scanner("ZS");
  std::vector<std::pair<char, std::string>> seen;
  for (size_t i = 0; i < stream.size(); i += step) {
    absl::Status st = scanner.Scan(std::string_view(stream).substr(i, step),
                                   [&](char t, std::string_view b, size_t) { seen.emplace_back(t, b); });
    EXPECT_TRUE(st.ok()) << st;
  }
  *at_boundary = scanner.AtBoundary();
  return seen;
}

TEST(BackendScannerTest, FindsInterestingMessagesAtAnyChunking) {
  std::string stream = SampleStream();
  std::vector<std::pair<char, std::string>> expected = {
      {'S', std::string("TimeZone\0UTC\0", 13)}, {'Z', "T"}};
  for (size_t step : std::vector<size_t>{1, 2, 3, 4, 5, 6, 13, 1000, 16384, stream.size()}) {
    bool boundary = false;
    EXPECT_EQ(ScanInChunks(stream, step, &boundary), expected) << "step " << step;
    EXPECT_TRUE(boundary);
  }
}

TEST(BackendScannerTest, ReportsMidMessagePositions) {
  std::string stream = Encode(be::ReadyForQuery{be::TxStatus::kIdle});
  BackendScanner scanner("Z");
  int seen = 0;
  ASSERT_TRUE(scanner.Scan(std::string_view(stream).substr(0, 3),
                           [&](char, std::string_view, size_t) { ++seen; })
                  .ok());
  EXPECT_FALSE(scanner.AtBoundary());
  size_t end = 0;
  ASSERT_TRUE(scanner.Scan(std::string_view(stream).substr(3),
                           [&](char, std::string_view, size_t e) {
                             ++seen;
                             end = e;
                           })
                  .ok());
  EXPECT_EQ(end, 3u) << "the offset just past the message, in the chunk that completed it";
  EXPECT_TRUE(scanner.AtBoundary());
  EXPECT_EQ(seen, 1);
}

TEST(BackendScannerTest, EndOffsetsPointPastEachMessage) {
  std::string stream;
  Encode(be::CommandComplete{"BEGIN"}, &stream);
  size_t rfq_at = stream.size();
  Encode(be::ReadyForQuery{be::TxStatus::kInTransaction}, &stream);
  BackendScanner scanner("CZ");
  std::vector<size_t> ends;
  ASSERT_TRUE(scanner.Scan(stream, [&](char, std::string_view, size_t e) { ends.push_back(e); }).ok());
  EXPECT_EQ(ends, (std::vector<size_t>{rfq_at, stream.size()}));
}

TEST(BackendScannerTest, InvalidLengthIsAnError) {
  BackendScanner scanner("Z");
  EXPECT_FALSE(
      scanner.Scan(std::string_view("D\0\0\0\x02", 5), [](char, std::string_view, size_t) {}).ok());
}

TEST(BackendScannerTest, OversizedInterestingMessageIsAnError) {
  BackendScanner scanner("E");
  // An ErrorResponse claiming 512 MB.
  EXPECT_FALSE(
      scanner.Scan(std::string_view("E\x20\0\0\0", 5), [](char, std::string_view, size_t) {}).ok());
}

}  // namespace
}  // namespace shardyard::wire
