// Round-trips every protocol message through encode, framing and decode, and checks that
// malformed bodies are rejected rather than misread.
#include "wire/messages.h"

#include <gtest/gtest.h>

#include "wire/framer.h"

namespace shardyard::wire {
namespace {

template <typename M>
void ExpectRoundTrip(const M& message) {
  std::string bytes = Encode(message);
  Frame f = M::kType == 0 ? ParseStartupFrame(bytes) : ParseFrame(bytes, 1 << 20);
  ASSERT_EQ(f.kind, Frame::Kind::kMessage);
  EXPECT_EQ(f.size, bytes.size());
  EXPECT_EQ(f.type, M::kType);
  absl::StatusOr<M> decoded = Decode<M>(f.body);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == message) << "type '" << M::kType << "'";
}

TEST(MessagesTest, FrontendMessagesRoundTrip) {
  ExpectRoundTrip(fe::StartupMessage{kProtocolVersion30,
                                     {{"user", "app"}, {"database", "db"}, {"options", "-c a=b"}}});
  ExpectRoundTrip(fe::SslRequest{});
  ExpectRoundTrip(fe::GssEncRequest{});
  ExpectRoundTrip(fe::CancelRequest{1234, -55});
  ExpectRoundTrip(fe::PasswordMessage{"md5abcdef"});
  ExpectRoundTrip(fe::SaslInitialResponse{"SCRAM-SHA-256", std::string("n,,n=,r=abc")});
  ExpectRoundTrip(fe::SaslInitialResponse{"SCRAM-SHA-256", std::nullopt});
  ExpectRoundTrip(fe::SaslResponse{"c=biws,r=abc,p=xyz"});
  ExpectRoundTrip(fe::Query{"SELECT 1; SELECT 2"});
  ExpectRoundTrip(fe::Parse{"stmt1", "SELECT $1::int", {23, 0}});
  ExpectRoundTrip(fe::Bind{"portal",
                           "stmt1",
                           {0, 1},
                           {std::string("42"), std::nullopt, std::string("\x00\x01", 2)},
                           {1}});
  ExpectRoundTrip(fe::Describe{'S', "stmt1"});
  ExpectRoundTrip(fe::Describe{'P', ""});
  ExpectRoundTrip(fe::Execute{"portal", 100});
  ExpectRoundTrip(fe::Close{'P', "portal"});
  ExpectRoundTrip(fe::Sync{});
  ExpectRoundTrip(fe::Flush{});
  ExpectRoundTrip(fe::Terminate{});
  ExpectRoundTrip(fe::CopyFail{"client gave up"});
  ExpectRoundTrip(fe::FunctionCall{1598, {0}, {std::string("abc"), std::nullopt}, 1});
  ExpectRoundTrip(CopyData{std::string("1\tone\n\0x", 9)});
  ExpectRoundTrip(CopyDone{});
}

TEST(MessagesTest, BackendMessagesRoundTrip) {
  using be::Authentication;
  ExpectRoundTrip(Authentication{Authentication::kOk, "", {}});
  ExpectRoundTrip(Authentication{Authentication::kCleartextPassword, "", {}});
  ExpectRoundTrip(
      Authentication{Authentication::kMd5Password, std::string("\x01\x02\x03\xff", 4), {}});
  ExpectRoundTrip(
      Authentication{Authentication::kSasl, "", {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}});
  ExpectRoundTrip(Authentication{Authentication::kSaslContinue, "r=abc,s=xyz,i=4096", {}});
  ExpectRoundTrip(Authentication{Authentication::kSaslFinal, "v=abc", {}});
  ExpectRoundTrip(be::BackendKeyData{42, -7});
  ExpectRoundTrip(be::ParameterStatus{"TimeZone", "Europe/Paris"});
  ExpectRoundTrip(be::ReadyForQuery{be::TxStatus::kIdle});
  ExpectRoundTrip(be::ReadyForQuery{be::TxStatus::kInTransaction});
  ExpectRoundTrip(be::ReadyForQuery{be::TxStatus::kFailed});
  be::ErrorResponse error;
  error.fields = {{'S', "ERROR"}, {'V', "ERROR"}, {'C', "42P01"}, {'M', "relation does not exist"}};
  ExpectRoundTrip(error);
  be::NoticeResponse notice;
  notice.fields = {{'S', "NOTICE"}, {'M', "hello"}};
  ExpectRoundTrip(notice);
  ExpectRoundTrip(be::CommandComplete{"SELECT 1"});
  ExpectRoundTrip(be::EmptyQueryResponse{});
  ExpectRoundTrip(
      be::RowDescription{{{"id", 16384, 1, 23, 4, -1, 0}, {"name", 0, 0, 25, -1, -1, 1}}});
  ExpectRoundTrip(be::DataRow{{std::string("1"), std::nullopt, std::string("")}});
  ExpectRoundTrip(be::ParseComplete{});
  ExpectRoundTrip(be::BindComplete{});
  ExpectRoundTrip(be::CloseComplete{});
  ExpectRoundTrip(be::NoData{});
  ExpectRoundTrip(be::PortalSuspended{});
  ExpectRoundTrip(be::ParameterDescription{{23, 25}});
  ExpectRoundTrip(be::CopyInResponse{0, {0, 0}});
  ExpectRoundTrip(be::CopyOutResponse{1, {1}});
  ExpectRoundTrip(be::CopyBothResponse{0, {}});
  ExpectRoundTrip(be::NotificationResponse{99, "channel", "payload"});
  ExpectRoundTrip(be::FunctionCallResponse{std::string("result")});
  ExpectRoundTrip(be::FunctionCallResponse{std::nullopt});
  ExpectRoundTrip(be::NegotiateProtocolVersion{0, {"_pq_.foo"}});
}

TEST(MessagesTest, KnownEncodingOfQuery) {
  // 'Q', length 13 (4 + "SELECT 1" + NUL), text, NUL.
  EXPECT_EQ(Encode(fe::Query{"SELECT 1"}), std::string("Q\0\0\0\x0dSELECT 1\0", 14));
}

TEST(MessagesTest, TruncatedBodiesAreRejected) {
  std::string bind = Encode(fe::Bind{"", "s", {}, {std::string("hello")}, {}});
  // Drop the last bytes of the body: the parameter length now overruns it.
  std::string_view body = std::string_view(bind).substr(5, bind.size() - 5 - 3);
  EXPECT_FALSE(Decode<fe::Bind>(body).ok());
  EXPECT_FALSE(Decode<be::BackendKeyData>(std::string_view("\0\0\0\1", 4)).ok());
  EXPECT_FALSE(Decode<fe::Query>(std::string_view("no terminator")).ok());
}

TEST(MessagesTest, TrailingBytesAreRejected) {
  EXPECT_FALSE(Decode<be::ReadyForQuery>(std::string_view("IX")).ok());
  EXPECT_FALSE(Decode<fe::Sync>(std::string_view("x")).ok());
}

TEST(MessagesTest, ImpossibleCountsAreRejected) {
  // DataRow claiming 1000 columns in a 6-byte body.
  EXPECT_FALSE(Decode<be::DataRow>(std::string_view("\x03\xe8\0\0\0\0", 6)).ok());
  // Negative parameter length other than -1.
  EXPECT_FALSE(Decode<be::DataRow>(std::string_view("\0\x01\xff\xff\xff\xfe", 6)).ok());
}

TEST(MessagesTest, InvalidEnumeratedValuesAreRejected) {
  EXPECT_FALSE(Decode<be::ReadyForQuery>(std::string_view("X")).ok());
  EXPECT_FALSE(Decode<fe::Describe>(std::string_view("Xname\0", 6)).ok());
  EXPECT_FALSE(Decode<fe::SslRequest>(std::string_view("\x04\xd2\x16\x2e", 4)).ok());
}

TEST(MessagesTest, StartupMessageFindsParameters) {
  fe::StartupMessage m{kProtocolVersion30, {{"user", "u"}, {"application_name", "x"}}};
  ASSERT_NE(m.Find("application_name"), nullptr);
  EXPECT_EQ(*m.Find("application_name"), "x");
  EXPECT_EQ(m.Find("database"), nullptr);
}

}  // namespace
}  // namespace shardyard::wire
