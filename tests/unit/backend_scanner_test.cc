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
    absl::Status st =
        scanner.Scan(std::string_view(stream).substr(i, step),
                     [&](char t, std::string_view b, size_t) { seen.emplace_back(t, b); });
    EXPECT_TRUE(st.ok()) << st;
  }
  *at_boundary = scanner.AtBoundary();
  return seen;
}

TEST(BackendScannerTest, FindsInterestingMessagesAtAnyChunking) {
  std::string stream = SampleStream();
  std::vector<std::pair<char, std::string>> expected = {{'S', std::string("TimeZone\0UTC\0", 13)},
                                                        {'Z', "T"}};
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
  ASSERT_TRUE(scanner
                  .Scan(std::string_view(stream).substr(0, 3),
                        [&](char, std::string_view, size_t) { ++seen; })
                  .ok());
  EXPECT_FALSE(scanner.AtBoundary());
  size_t end = 0;
  ASSERT_TRUE(scanner
                  .Scan(std::string_view(stream).substr(3),
                        [&](char, std::string_view, size_t e) {
                          ++seen;
                          end = e;
                        })
                  .ok());
  EXPECT_EQ(end, 3u) << "the offset just past the message, in the chunk that completed it";
  EXPECT_TRUE(scanner.AtBoundary());
  EXPECT_EQ(seen, 1);
}

// The pump holds back a ReadyForQuery split across reads: it must know how many of the chunk's
// last bytes begin it, and of what type they are, wherever the split falls.
TEST(BackendScannerTest, TellsHowMuchOfASplitMessageWasScanned) {
  std::string stream = Encode(be::CommandComplete{"SELECT 1"});
  const size_t ready_at = stream.size();
  Encode(be::ReadyForQuery{be::TxStatus::kIdle}, &stream);
  for (size_t cut = ready_at + 1; cut < stream.size(); ++cut) {
    BackendScanner scanner("Z");
    int seen = 0;
    ASSERT_TRUE(scanner
                    .Scan(std::string_view(stream).substr(0, cut),
                          [&](char, std::string_view, size_t) { ++seen; })
                    .ok());
    ASSERT_FALSE(scanner.AtBoundary()) << cut;
    EXPECT_EQ(scanner.PartialBytes(), cut - ready_at) << cut;
    EXPECT_EQ(scanner.PartialType(), cut - ready_at < 5 ? 0 : 'Z') << cut;
    // Rewound to the message's start, the scan finds it whole in the bytes kept plus the rest.
    scanner.Reset();
    size_t end = 0;
    ASSERT_TRUE(scanner
                    .Scan(std::string_view(stream).substr(ready_at),
                          [&](char t, std::string_view, size_t e) {
                            seen += t == 'Z';
                            end = e;
                          })
                    .ok());
    EXPECT_EQ(seen, 1) << cut;
    EXPECT_EQ(end, 6u) << cut;
    EXPECT_TRUE(scanner.AtBoundary());
  }
  // Inside a long message, too.
  BackendScanner scanner("Z");
  std::string row = Encode(be::DataRow{{std::string(100, 'x')}});
  ASSERT_TRUE(
      scanner.Scan(std::string_view(row).substr(0, 40), [](char, std::string_view) {}).ok());
  EXPECT_EQ(scanner.PartialBytes(), 40u);
  EXPECT_EQ(scanner.PartialType(), 'D');
}

TEST(BackendScannerTest, EndOffsetsPointPastEachMessage) {
  std::string stream;
  Encode(be::CommandComplete{"BEGIN"}, &stream);
  size_t rfq_at = stream.size();
  Encode(be::ReadyForQuery{be::TxStatus::kInTransaction}, &stream);
  BackendScanner scanner("CZ");
  std::vector<size_t> ends;
  ASSERT_TRUE(
      scanner.Scan(stream, [&](char, std::string_view, size_t e) { ends.push_back(e); }).ok());
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
