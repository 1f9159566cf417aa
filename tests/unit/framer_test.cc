// Checks the framer on split and merged input and that lengths are bounded before use.
#include "wire/framer.h"

#include <gtest/gtest.h>

#include "wire/buffer.h"
#include "wire/messages.h"

namespace shardyard::wire {
namespace {

// Frames everything in `data`, feeding it `step` bytes at a time as a socket might.
std::vector<std::pair<char, std::string>> FrameAll(const std::string& data, size_t step) {
  std::vector<std::pair<char, std::string>> out;
  std::string buffer;
  for (size_t i = 0; i < data.size(); i += step) {
    buffer.append(data.substr(i, step));
    while (true) {
      Frame f = ParseFrame(buffer, 1 << 20);
      EXPECT_NE(f.kind, Frame::Kind::kError);
      if (f.kind != Frame::Kind::kMessage) break;
      out.emplace_back(f.type, std::string(f.body));
      buffer.erase(0, f.size);
    }
  }
  EXPECT_TRUE(buffer.empty());
  return out;
}

TEST(FramerTest, SplitAndMergedInputGiveTheSameMessages) {
  std::string stream;
  Encode(fe::Parse{"", "SELECT $1", {23}}, &stream);
  Encode(fe::Bind{"", "", {}, {std::string("7")}, {}}, &stream);
  Encode(fe::Execute{"", 0}, &stream);
  Encode(fe::Sync{}, &stream);
  Encode(fe::Query{std::string(5000, 'x')}, &stream);
  auto merged = FrameAll(stream, stream.size());
  ASSERT_EQ(merged.size(), 5u);
  for (size_t step : std::vector<size_t>{1, 2, 3, 4, 5, 7, 64, 4096}) {
    EXPECT_EQ(FrameAll(stream, step), merged) << "step " << step;
  }
  EXPECT_EQ(merged[0].first, 'P');
  EXPECT_EQ(merged[3].first, 'S');
  EXPECT_EQ(merged[4].second.size(), 5001u);
}

TEST(FramerTest, NeedsFiveBytesForAHeader) {
  EXPECT_EQ(ParseFrame(std::string_view("Q\0\0\0", 4), 100).kind, Frame::Kind::kNeedMore);
  EXPECT_EQ(FrameSizeHint(std::string_view("Q\0\0\0", 4)), 0u);
  EXPECT_EQ(FrameSizeHint(std::string_view("Q\0\0\0\x10", 5)), 17u);
}

TEST(FramerTest, LengthBelowFourIsAProtocolViolation) {
  Frame f = ParseFrame(std::string_view("Q\0\0\0\x03", 5), 100);
  ASSERT_EQ(f.kind, Frame::Kind::kError);
  EXPECT_NE(f.error.message().find("invalid message length"), std::string::npos);
}

TEST(FramerTest, LengthOverTheLimitIsRejectedBeforeAnyBodyArrives) {
  // Claims 1 GB; only the header is present.
  Frame f = ParseFrame(std::string_view("Q\x40\0\0\0", 5), 1 << 20);
  ASSERT_EQ(f.kind, Frame::Kind::kError);
  EXPECT_NE(f.error.message().find("max_message_size"), std::string::npos);
}

TEST(FramerTest, ExactlyTheLimitIsAccepted) {
  std::string m = Encode(CopyData{std::string(100, 'a')});
  EXPECT_EQ(ParseFrame(m, 100).kind, Frame::Kind::kMessage);
  EXPECT_EQ(ParseFrame(m, 99).kind, Frame::Kind::kError);
}

TEST(ByteBufferTest, ShrinkToFitKeepsTheBytesAndGrowsAgainOnDemand) {
  ByteBuffer b;
  b.Append("header");
  b.Consume(2);
  ASSERT_EQ(b.capacity(), ByteBuffer::kBlockSize);
  b.ShrinkToFit();
  EXPECT_EQ(b.data(), "ader");
  EXPECT_LE(b.capacity(), 64u);
  b.Append(std::string(1000, 'x'));
  EXPECT_EQ(b.size(), 1004u);
  EXPECT_EQ(b.data().substr(0, 5), "aderx");
  b.Consume(b.size());
  b.ShrinkToFit();
  EXPECT_EQ(b.capacity(), 0u) << "nothing held: no storage";
}

TEST(FramerTest, StartupPacketBounds) {
  EXPECT_EQ(ParseStartupFrame(std::string_view("\0\0\0\x04", 4)).kind, Frame::Kind::kError);
  EXPECT_EQ(ParseStartupFrame(std::string_view("\0\x01\0\0", 4)).kind, Frame::Kind::kError);
  std::string ssl = Encode(fe::SslRequest{});
  EXPECT_EQ(ParseStartupFrame(std::string_view(ssl).substr(0, 7)).kind, Frame::Kind::kNeedMore);
  Frame f = ParseStartupFrame(ssl);
  ASSERT_EQ(f.kind, Frame::Kind::kMessage);
  EXPECT_EQ(f.size, 8u);
}

}  // namespace
}  // namespace shardyard::wire
