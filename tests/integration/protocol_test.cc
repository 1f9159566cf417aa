// The wire protocol through Shardyard against a real PostgreSQL: simple and extended queries,
// pipelining, COPY both ways, notices, FunctionCall, errors, and malformed input from a client.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "common/crypto.h"
#include "common/strings.h"
#include "tests/harness/proxy_test.h"
#include "wire/framer.h"
#include "wire/messages.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;

class ProtocolTest : public ProxyTest {
 protected:
  void SetUp() override { StartWith("  size: 5\n"); }
};

TEST_F(ProtocolTest, SimpleQueryReturnsEveryResultOfAMultiStatementString) {
  PgConn c = Client();
  ASSERT_TRUE(PQsendQuery(c.get(), "SELECT 1 AS a; SELECT 'two' AS b; SELECT count(*) FROM items"));
  std::vector<std::string> values;
  while (PGresult* r = PQgetResult(c.get())) {
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
    values.push_back(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  EXPECT_THAT(values, ::testing::ElementsAre("1", "two", "10"));
}

TEST_F(ProtocolTest, EmptyQueryGivesEmptyQueryResponse) {
  PgConn c = Client();
  PgResult r(PQexec(c.get(), ""));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_EMPTY_QUERY);
  PgResult r2(PQexec(c.get(), ";"));
  EXPECT_EQ(PQresultStatus(r2.get()), PGRES_EMPTY_QUERY);
}

TEST_F(ProtocolTest, ErrorsOutsideAndInsideTransactions) {
  PgConn c = Client();
  PgResult bad(PQexec(c.get(), "SELECT * FROM no_such_table"));
  EXPECT_EQ(PQresultStatus(bad.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(bad.get(), PG_DIAG_SQLSTATE), "42P01");
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 42"), "42") << "the connection is still usable";

  ASSERT_TRUE(Exec(c.get(), "BEGIN").ok());
  PgResult bad2(PQexec(c.get(), "SELECT 1/0"));
  EXPECT_STREQ(PQresultErrorField(bad2.get(), PG_DIAG_SQLSTATE), "22012");
  EXPECT_EQ(PQtransactionStatus(c.get()), PQTRANS_INERROR);
  PgResult aborted(PQexec(c.get(), "SELECT 1"));
  EXPECT_STREQ(PQresultErrorField(aborted.get(), PG_DIAG_SQLSTATE), "25P02");
  ASSERT_TRUE(Exec(c.get(), "ROLLBACK").ok());
  EXPECT_EQ(PQtransactionStatus(c.get()), PQTRANS_IDLE);
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 7"), "7");
}

TEST_F(ProtocolTest, ExtendedProtocolWithTextAndBinaryParametersAndResults) {
  PgConn c = Client();
  const char* text_values[] = {"3", "hello"};
  PgResult r(PQexecParams(c.get(), "SELECT $1::int + 1, upper($2::text)", 2, nullptr, text_values,
                          nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "4");
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 1), "HELLO");

  // Binary in and out: int4 41 → 42.
  uint32_t be41 = htonl(41);
  const char* bin_values[] = {reinterpret_cast<const char*>(&be41)};
  int lengths[] = {4};
  int formats[] = {1};
  Oid types[] = {23};
  PgResult b(PQexecParams(c.get(), "SELECT $1 + 1", 1, types, bin_values, lengths, formats, 1));
  ASSERT_EQ(PQresultStatus(b.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(b.get());
  ASSERT_EQ(PQgetlength(b.get(), 0, 0), 4);
  uint32_t out;
  std::memcpy(&out, PQgetvalue(b.get(), 0, 0), 4);
  EXPECT_EQ(ntohl(out), 42u);
}

TEST_F(ProtocolTest, NamedPreparedStatementInsideATransaction) {
  PgConn c = Client();
  ASSERT_TRUE(Exec(c.get(), "BEGIN").ok());
  PgResult prep(PQprepare(c.get(), "by_id", "SELECT v FROM items WHERE id = $1", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prep.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prep.get());
  PgResult desc(PQdescribePrepared(c.get(), "by_id"));
  EXPECT_EQ(PQnparams(desc.get()), 1);
  const char* v[] = {"7"};
  PgResult r(PQexecPrepared(c.get(), "by_id", 1, v, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_STREQ(PQgetvalue(r.get(), 0, 0), "item 7");
  ASSERT_TRUE(Exec(c.get(), "DEALLOCATE by_id; COMMIT").ok());
}

TEST_F(ProtocolTest, PipelineModeWithManyQueriesBeforeOneSync) {
  PgConn c = Client();
  ASSERT_EQ(PQenterPipelineMode(c.get()), 1);
  constexpr int kQueries = 200;
  for (int i = 0; i < kQueries; ++i) {
    std::string n = std::to_string(i);
    const char* v[] = {n.c_str()};
    ASSERT_EQ(PQsendQueryParams(c.get(), "SELECT $1::int * 2", 1, nullptr, v, nullptr, nullptr, 0),
              1);
  }
  ASSERT_EQ(PQpipelineSync(c.get()), 1);
  int seen = 0;
  while (seen < kQueries) {
    PGresult* r = PQgetResult(c.get());
    if (r == nullptr) continue;  // end of one query's results
    ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    EXPECT_EQ(std::stoi(PQgetvalue(r, 0, 0)), seen * 2);
    PQclear(r);
    ++seen;
  }
  PGresult* sync = PQgetResult(c.get());
  while (sync == nullptr) sync = PQgetResult(c.get());
  EXPECT_EQ(PQresultStatus(sync), PGRES_PIPELINE_SYNC);
  PQclear(sync);
  ASSERT_EQ(PQexitPipelineMode(c.get()), 1);
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 'after'"), "after");
}

TEST_F(ProtocolTest, PipelineErrorSkipsToSyncLikePostgres) {
  PgConn c = Client();
  ASSERT_EQ(PQenterPipelineMode(c.get()), 1);
  PQsendQueryParams(c.get(), "SELECT 1", 0, nullptr, nullptr, nullptr, nullptr, 0);
  PQsendQueryParams(c.get(), "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0);
  PQsendQueryParams(c.get(), "SELECT 3", 0, nullptr, nullptr, nullptr, nullptr, 0);
  PQpipelineSync(c.get());
  std::vector<ExecStatusType> statuses;
  while (statuses.size() < 4) {
    PGresult* r = PQgetResult(c.get());
    if (r == nullptr) continue;
    statuses.push_back(PQresultStatus(r));
    PQclear(r);
  }
  EXPECT_THAT(statuses, ::testing::ElementsAre(PGRES_TUPLES_OK, PGRES_FATAL_ERROR,
                                               PGRES_PIPELINE_ABORTED, PGRES_PIPELINE_SYNC));
  PQexitPipelineMode(c.get());
}

TEST_F(ProtocolTest, CopyInAndOutOf100000RowsKeepsEveryByte) {
  PgConn c = Client();
  ASSERT_TRUE(Exec(c.get(), "CREATE TABLE copied(id int, payload text)").ok());
  PgResult start(PQexec(c.get(), "COPY copied FROM STDIN"));
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN);
  std::string chunk;
  std::string all_rows;
  for (int i = 0; i < 100000; ++i) {
    std::string row = Cat(i, "\trow ", i, " \\\\ tab\\tand unicode \xc3\xa9\n");
    all_rows += row;
    chunk += row;
    if (chunk.size() > 8000) {
      ASSERT_EQ(PQputCopyData(c.get(), chunk.data(), static_cast<int>(chunk.size())), 1);
      chunk.clear();
    }
  }
  ASSERT_EQ(PQputCopyData(c.get(), chunk.data(), static_cast<int>(chunk.size())), 1);
  ASSERT_EQ(PQputCopyEnd(c.get(), nullptr), 1);
  PgResult done(PQgetResult(c.get()));
  ASSERT_EQ(PQresultStatus(done.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(done.get());
  EXPECT_STREQ(PQcmdTuples(done.get()), "100000");
  while (PGresult* r = PQgetResult(c.get())) PQclear(r);

  // The server holds exactly the values sent (COPY escapes decoded: "\\\\" is one backslash,
  // "\\t" a tab).
  std::string expected;
  for (int i = 0; i < 100000; ++i) {
    if (i > 0) expected += "|";
    expected += Cat("row ", i, " \\ tab\tand unicode \xc3\xa9");
  }
  auto rows = Query(
      c.get(), "SELECT count(*), sum(id), md5(string_agg(payload, '|' ORDER BY id)) FROM copied");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ((*rows)[0][0], "100000");
  EXPECT_EQ((*rows)[0][1], "4999950000");
  EXPECT_EQ((*rows)[0][2], crypto::Md5Hex(expected));

  // And COPY out returns the same bytes.
  PgResult out(PQexec(c.get(), "COPY (SELECT * FROM copied ORDER BY id) TO STDOUT"));
  ASSERT_EQ(PQresultStatus(out.get()), PGRES_COPY_OUT);
  std::string received;
  char* buf = nullptr;
  int n;
  while ((n = PQgetCopyData(c.get(), &buf, 0)) > 0) {
    received.append(buf, static_cast<size_t>(n));
    PQfreemem(buf);
  }
  ASSERT_EQ(n, -1);
  PgResult end(PQgetResult(c.get()));
  EXPECT_EQ(PQresultStatus(end.get()), PGRES_COMMAND_OK);
  EXPECT_EQ(crypto::Md5Hex(received), crypto::Md5Hex(all_rows));
}

TEST_F(ProtocolTest, CopyFromStdinFailureLeavesTheConnectionUsable) {
  PgConn c = Client();
  PgResult start(PQexec(c.get(), "COPY items FROM STDIN"));
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN);
  std::string rows = "100\tok\nnot-a-number\tbad\n";
  PQputCopyData(c.get(), rows.data(), static_cast<int>(rows.size()));
  PQputCopyEnd(c.get(), nullptr);
  PgResult r(PQgetResult(c.get()));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE), "22P02");
  while (PGresult* x = PQgetResult(c.get())) PQclear(x);
  EXPECT_EQ(*QueryValue(c.get(), "SELECT count(*) FROM items"), "10");
}

void CollectNotice(void* arg, const PGresult* r) {
  static_cast<std::vector<std::string>*>(arg)->push_back(
      PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
}

TEST_F(ProtocolTest, NoticesReachTheClient) {
  PgConn c = Client();
  std::vector<std::string> notices;
  PQsetNoticeReceiver(c.get(), CollectNotice, &notices);
  ASSERT_TRUE(Exec(c.get(), "DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$").ok());
  EXPECT_THAT(notices, ::testing::ElementsAre("hello from the server"));
}

TEST_F(ProtocolTest, FunctionCallProtocol) {
  PgConn c = Client();
  auto oid = QueryValue(c.get(), "SELECT 'int4pl'::regproc::oid");
  ASSERT_TRUE(oid.ok());
  PQArgBlock args[2];
  args[0].len = 4;
  args[0].isint = 1;
  args[0].u.integer = 2;
  args[1].len = 4;
  args[1].isint = 1;
  args[1].u.integer = 40;
  int result = 0;
  int result_len = 0;
  PgResult r(PQfn(c.get(), std::stoi(*oid), &result, &result_len, 1, args, 2));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(r.get());
  EXPECT_EQ(result, 42);
}

TEST_F(ProtocolTest, LargeResultsAndLargeQueriesPassThrough) {
  PgConn c = Client();
  auto v = QueryValue(c.get(), "SELECT length(repeat('x', 20000000))");
  EXPECT_EQ(*v, "20000000");
  PgResult r(PQexec(c.get(), "SELECT repeat('ab', 5000000)"));
  ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK);
  EXPECT_EQ(PQgetlength(r.get(), 0, 0), 10000000);
  std::string big = Cat("SELECT length('", std::string(3000000, 'q'), "')");
  EXPECT_EQ(*QueryValue(c.get(), big), "3000000");
}

TEST_F(ProtocolTest, SslRequestIsDeclinedAndPlainConnectionsContinue) {
  auto prefer = Connect(sy_->ConnInfo("app", "app", "secret", "sslmode=prefer"));
  ASSERT_TRUE(prefer.ok()) << prefer.status();
  EXPECT_EQ(*QueryValue(prefer->get(), "SELECT 1"), "1");
  auto require = Connect(sy_->ConnInfo("app", "app", "secret", "sslmode=require"));
  ASSERT_FALSE(require.ok());
  EXPECT_THAT(std::string(require.status().message()), HasSubstr("does not support SSL"));
}

// A raw protocol client for input libpq would never send.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }
  void Send(std::string_view bytes) { (void)!write(fd_, bytes.data(), bytes.size()); }
  // Reads typed messages until one of `type` arrives (returns its body) or the socket closes.
  std::optional<std::string> ReadUntil(char type) {
    while (true) {
      wire::Frame f = wire::ParseFrame(buffer_, 1 << 26);
      if (f.kind == wire::Frame::Kind::kMessage) {
        std::string body(f.body);
        char t = f.type;
        buffer_.erase(0, f.size);
        if (t == type) return body;
        continue;
      }
      char chunk[65536];
      ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  // Whether anything (bytes or the server's close) arrives within `ms` milliseconds.
  bool Stirs(int ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // Everything the server sends until it closes the connection; nullopt if it fails or stays
  // open (10 s).
  std::optional<std::string> ReadToEnd() {
    std::string all = std::move(buffer_);
    buffer_.clear();
    char chunk[4096];
    while (true) {
      ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n == 0) return all;
      if (n < 0) return std::nullopt;
      all.append(chunk, static_cast<size_t>(n));
    }
  }
  // Exactly `n` bytes (fewer if the connection ends first).
  std::string ReadBytes(size_t n) {
    std::string out;
    char chunk[64];
    while (out.size() < n) {
      ssize_t got = read(fd_, chunk, std::min(sizeof(chunk), n - out.size()));
      if (got <= 0) break;
      out.append(chunk, static_cast<size_t>(got));
    }
    return out;
  }
  // This end's port, as the proxy sees it.
  uint16_t LocalPort() const {
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }
  // Closes with a reset (RST) instead of an orderly end of file, as a crashed client does.
  void Reset() {
    linger l{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd_);
    fd_ = -1;
  }
  // True once the server has closed the connection (after draining what it sent).
  bool Closed() {
    char chunk[4096];
    while (true) {
      ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n == 0) return true;
      if (n < 0) return false;
    }
  }
  // Logs in as `user` through trust auth and waits for ReadyForQuery.
  bool Login(const std::string& user) {
    Send(wire::Encode(
        wire::fe::StartupMessage{wire::kProtocolVersion30, {{"user", user}, {"database", "app"}}}));
    return ReadUntil('Z').has_value();
  }

 private:
  int fd_;
  bool connected_ = false;
  std::string buffer_;
};

std::string SqlstateOf(const std::string& error_body) {
  auto e = wire::Decode<wire::be::ErrorResponse>(error_body);
  return e.ok() ? std::string(e->sqlstate()) : "?";
}

// A proxy with a user `raw` that logs in through trust auth, and `top` as top-level settings.
class RawClientTest : public ProtocolTest {
 protected:
  void StartWithRawUser(const std::string& top) {
    auto pg = StartAppServer();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    ASSERT_TRUE(pg_->CreateUser("raw", "secret").ok());
    ASSERT_TRUE(pg_->ExecSuper("GRANT ALL ON DATABASE app TO raw").ok());
    ConfigOptions o;
    o.pool = "  size: 5\n";
    o.top = top;
    o.users =
        "  - {name: app, password: secret}\n  - {name: raw, auth_type: trust, "
        "server_password: secret}\n";
    StartProxy(o);
  }
};

class MalformedInputTest : public RawClientTest {
 protected:
  void SetUp() override { StartWithRawUser("max_message_size: 64kB\n"); }
};

TEST_F(MalformedInputTest, BadLengthClosesOnlyThatClientWith08P01) {
  PgConn other = Client();
  ASSERT_TRUE(Exec(other.get(), "BEGIN").ok());
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.Login("raw"));
  raw.Send(std::string_view("Q\0\0\0\x02", 5));
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "08P01");
  EXPECT_THAT(*error, HasSubstr("invalid message length"));
  EXPECT_TRUE(raw.Closed());
  // Another client, mid-transaction, is untouched; the process is alive.
  EXPECT_EQ(*QueryValue(other.get(), "SELECT count(*) FROM items"), "10");
  EXPECT_TRUE(Exec(other.get(), "COMMIT").ok());
  EXPECT_THAT(sy_->Log(), HasSubstr("protocol violation"));
}

TEST_F(MalformedInputTest, MessagesOverMaxMessageSizeAreRejectedBeforeBuffering) {
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.Login("raw"));
  // Announce a 100 MB query but send only its header.
  raw.Send(std::string_view("Q\x06\0\0\0", 5));
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "08P01");
  EXPECT_THAT(*error, HasSubstr("max_message_size"));
  EXPECT_TRUE(raw.Closed());
}

TEST_F(MalformedInputTest, UnknownMessageTypeIsAProtocolViolation) {
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.Login("raw"));
  raw.Send(std::string_view("z\0\0\0\x04", 5));
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "08P01");
  EXPECT_THAT(*error, HasSubstr("invalid frontend message type 122"));
}

TEST_F(MalformedInputTest, GarbageStartupPacketIsRejected) {
  RawClient raw(sy_->port());
  raw.Send(
      std::string_view("\x7f\xff\xff\xff"
                       "GET / HTTP/1.1\r\n",
                       20));
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "08P01");
  PgConn c = Client();
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 1"), "1");
}

TEST_F(MalformedInputTest, TerminateBeforeTheStartupPacketIsClosedWithoutAWord) {
  // node-postgres sends Terminate when it is closed while connecting; PostgreSQL closes such a
  // connection without answering.
  constexpr std::string_view kTerminate("X\0\0\0\x04", 5);
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.connected());
  raw.Send(kTerminate);
  std::optional<std::string> answer = raw.ReadToEnd();
  ASSERT_TRUE(answer.has_value()) << "the connection was not closed cleanly";
  EXPECT_EQ(*answer, "");
  // The same after an SSLRequest was declined.
  RawClient after_ssl(sy_->port());
  after_ssl.Send(wire::Encode(wire::fe::SslRequest{}));
  ASSERT_EQ(after_ssl.ReadBytes(1), "N");
  after_ssl.Send(kTerminate);
  answer = after_ssl.ReadToEnd();
  ASSERT_TRUE(answer.has_value()) << "the connection was not closed cleanly";
  EXPECT_EQ(*answer, "");

  EXPECT_TRUE(sy_->process().WaitForLog(
      Cat("127.0.0.1:", raw.LocalPort(),
          " closing because: client sent Terminate in place of its startup packet"),
      std::chrono::seconds(5)))
      << sy_->Log();
  PgConn c = Client();
  EXPECT_EQ(*QueryValue(c.get(), "SELECT 1"), "1");
}

TEST_F(MalformedInputTest, AClientThatResetsItsConnectionIsLoggedWithItsAddress) {
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.Login("raw"));
  const uint16_t port = raw.LocalPort();
  raw.Reset();
  // The socket can no longer name its peer by then: the address was kept from accept.
  EXPECT_TRUE(sy_->process().WaitForLog(
      Cat("127.0.0.1:", port, " app/raw closing because: client connection failed"),
      std::chrono::seconds(5)))
      << sy_->Log();
  EXPECT_THAT(sy_->Log(), ::testing::Not(HasSubstr(" ? ")));
}

TEST_F(MalformedInputTest, DataPipelinedAfterSslRequestIsRefused) {
  RawClient raw(sy_->port());
  std::string ssl = wire::Encode(wire::fe::SslRequest{});
  std::string startup = wire::Encode(
      wire::fe::StartupMessage{wire::kProtocolVersion30, {{"user", "raw"}, {"database", "app"}}});
  raw.Send(ssl + startup);
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(*error, HasSubstr("unencrypted data after SSL request"));
}

TEST_F(MalformedInputTest, ExtendedMessagesWithoutSyncAndUnsupportedProtocolVersion) {
  RawClient raw(sy_->port());
  std::string startup =
      wire::Encode(wire::fe::StartupMessage{(4 << 16), {{"user", "raw"}, {"database", "app"}}});
  raw.Send(startup);
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "0A000");
  EXPECT_THAT(*error, HasSubstr("unsupported frontend protocol 4.0"));
}

TEST_F(MalformedInputTest, NewerProtocolMinorIsNegotiatedDown) {
  RawClient raw(sy_->port());
  raw.Send(wire::Encode(wire::fe::StartupMessage{
      (3 << 16) | 2, {{"user", "raw"}, {"database", "app"}, {"_pq_.compression", "on"}}}));
  auto negotiate = raw.ReadUntil('v');
  ASSERT_TRUE(negotiate.has_value());
  auto m = wire::Decode<wire::be::NegotiateProtocolVersion>(*negotiate);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->newest_minor, 0);
  EXPECT_THAT(m->unrecognized_options, ::testing::ElementsAre("_pq_.compression"));
  EXPECT_TRUE(raw.ReadUntil('Z').has_value());
}

class LoginTimeoutTest : public RawClientTest {};

TEST_F(LoginTimeoutTest, AClientThatStopsMidStartupIsEndedWith08P01) {
  StartWithRawUser("client_login_timeout: 1s\n");
  RawClient raw(sy_->port());
  std::string startup = wire::Encode(
      wire::fe::StartupMessage{wire::kProtocolVersion30, {{"user", "raw"}, {"database", "app"}}});
  raw.Send(startup.substr(0, 6));  // the length and half the version, then nothing
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(SqlstateOf(*error), "08P01");
  EXPECT_THAT(*error, HasSubstr("client_login_timeout"));
  EXPECT_TRUE(raw.Closed());
}

TEST_F(LoginTimeoutTest, WithoutDeferredAcceptASilentConnectionIsEndedAtTheLoginTimeout) {
  StartWithRawUser("client_login_timeout: 1s\ntcp_defer_accept: 0\n");
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.connected());
  auto error = raw.ReadUntil('E');
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(*error, HasSubstr("client_login_timeout"));
  EXPECT_TRUE(raw.Closed());
}

TEST_F(LoginTimeoutTest, ASilentConnectionWaitsInTheKernelAndItsLoginTimeStartsWhenItSpeaks) {
  // tcp_defer_accept (default 45s): Shardyard sees the connection only with its first bytes, so
  // it holds no session for it meanwhile, and the login timeout counts from then.
  StartWithRawUser("client_login_timeout: 1s\n");
  RawClient raw(sy_->port());
  ASSERT_TRUE(raw.connected());
  EXPECT_FALSE(raw.Stirs(2500)) << "a silent connection was accepted and timed out";
  ASSERT_TRUE(raw.Login("raw"));
  raw.Send(wire::Encode(wire::fe::Query{"SELECT 7"}));
  auto row = raw.ReadUntil('D');
  ASSERT_TRUE(row.has_value());
  EXPECT_THAT(*row, HasSubstr("7"));
}

TEST_F(ProtocolTest, UnknownDatabaseGets3D000AfterAuthentication) {
  auto c = Connect(sy_->ConnInfo("nosuchdb", "app", "secret"));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("database \"nosuchdb\" does not exist"));
}

}  // namespace
}  // namespace shardyard::testing
