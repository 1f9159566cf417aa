// Checks config loading: the documented shape loads, and every kind of mistake is reported with
// its file, line and key.
#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/strings.h"

namespace shardyard::config {
namespace {

using ::testing::HasSubstr;

constexpr char kIssueExample[] = R"(listen: {host: 127.0.0.1, port: 6432}
workers: 0                     # 0 = one per core
pool:
  mode: transaction            # transaction | session | statement
  size: 20                     # server connections per (database, user, node)
  min_size: 0
  reserve_size: 0
  reserve_timeout: 5s
  max_client_connections: 10000
  max_db_connections: 0        # 0 = unlimited
  query_wait_timeout: 120s
  server_connect_timeout: 5s
  server_login_retry: 1s
  server_idle_timeout: 600s
  server_lifetime: 3600s
  client_idle_timeout: 0s
  idle_transaction_timeout: 0s
users:
  - {name: app, password: secret}          # plain, md5..., or SCRAM-SHA-256$... secret
databases:
  - name: app                               # what clients ask for
    server_database: app                    # name on the servers (default: name)
    shards:
      - primary: {host: 127.0.0.1, port: 5432}
        replicas: [{host: 127.0.0.1, port: 5433}]
)";

std::vector<std::string> Errors(const std::string& yaml) {
  LoadResult r = LoadConfigText(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.ToString());
  EXPECT_EQ(r.config.has_value(), r.errors.empty());
  return out;
}

TEST(ConfigTest, TheDocumentedExampleLoads) {
  LoadResult r = LoadConfigText(kIssueExample, "shardyard.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].ToString();
  const Config& c = *r.config;
  EXPECT_EQ(c.listen.port, 6432);
  EXPECT_EQ(c.pool.mode, PoolMode::kTransaction);
  EXPECT_EQ(c.pool.size, 20);
  EXPECT_EQ(c.pool.query_wait_timeout, std::chrono::seconds(120));
  EXPECT_EQ(c.pool.server_lifetime, std::chrono::hours(1));
  ASSERT_EQ(c.databases.size(), 1u);
  EXPECT_EQ(c.databases[0].shards[0].replicas[0].port, 5433);
  EXPECT_EQ(c.FindUser("app")->password, "secret");
  EXPECT_EQ(c.FindDatabase("nope"), nullptr);
}

TEST(ConfigTest, DefaultsApplyAndServerDatabaseDefaultsToName) {
  LoadResult r = LoadConfigText(
      "users: [{name: u, password: p}]\n"
      "databases: [{name: d, shards: [{primary: {host: h, port: 1}}]}]\n",
      "t.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->databases[0].server_database, "d");
  EXPECT_EQ(r.config->pool.size, 20);
  EXPECT_EQ(r.config->auth_type, AuthType::kScramSha256);
  EXPECT_EQ(r.config->listen.port, 6432);
  EXPECT_EQ(r.config->tcp_defer_accept, std::chrono::seconds(45));
  EXPECT_TRUE(r.config->pool.pipelining);
}

TEST(ConfigTest, PipeliningIsABoolean) {
  for (const char* off : {"false", "off", "no", "FALSE"}) {
    LoadResult r =
        LoadConfigText(std::string("pool: {pipelining: ") + off + "}\n" +
                           "users: [{name: u, password: p}]\n"
                           "databases: [{name: d, shards: [{primary: {host: h, port: 1}}]}]\n",
                       "t.yaml");
    ASSERT_TRUE(r.config) << off;
    EXPECT_FALSE(r.config->pool.pipelining) << off;
  }
  EXPECT_THAT(Errors("pool: {pipelining: sometimes}\nusers: []\ndatabases: []\n"),
              ::testing::ElementsAre(HasSubstr("pool.pipelining: must be one of true, false, on, "
                                               "off, yes, no (got \"sometimes\")")));
}

TEST(ConfigTest, DeferredAcceptCanBeTurnedOff) {
  LoadResult r = LoadConfigText(
      "tcp_defer_accept: 0\n"
      "users: [{name: u, password: p}]\n"
      "databases: [{name: d, shards: [{primary: {host: h, port: 1}}]}]\n",
      "t.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->tcp_defer_accept.count(), 0);
  EXPECT_THAT(Errors("tcp_defer_accept: 45\nusers: []\ndatabases: []\n"),
              ::testing::ElementsAre(HasSubstr(":1: tcp_defer_accept: \"45\" needs a unit")));
}

TEST(ConfigTest, UnknownKeysNameTheKeyAndLine) {
  auto errors = Errors(
      "users: []\n"
      "databases: []\n"
      "pool:\n"
      "  sizee: 3\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("test.yaml:4: pool.sizee: unknown key"));
}

TEST(ConfigTest, WrongTypesAndImpossibleValuesAreAllReported) {
  auto errors = Errors(
      "listen: {host: 127.0.0.1, port: 70000}\n"
      "pool:\n"
      "  size: twenty\n"
      "  min_size: 5\n"
      "  mode: sessions\n"
      "  query_wait_timeout: 10\n"
      "  server_connect_timeout: 0s\n"
      "users: []\n"
      "databases: []\n");
  ASSERT_EQ(errors.size(), 5u) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr(":1: listen.port: must be between 0 and 65535"));
  EXPECT_THAT(errors[1], HasSubstr(":3: pool.size: must be a whole number"));
  EXPECT_THAT(errors[2],
              HasSubstr(":5: pool.mode: must be one of transaction, session, statement"));
  EXPECT_THAT(errors[3], HasSubstr(":6: pool.query_wait_timeout: \"10\" needs a unit"));
  EXPECT_THAT(errors[4], HasSubstr(":7: pool.server_connect_timeout: must be more than 0"));
}

TEST(ConfigTest, MinSizeAboveSizeIsImpossible) {
  auto errors = Errors("pool: {size: 2, min_size: 3}\nusers: []\ndatabases: []\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("pool.min_size: must not exceed pool.size"));
}

TEST(ConfigTest, MissingSectionsAndFieldsAreRequired) {
  auto errors = Errors(
      "databases:\n"
      "  - name: app\n"
      "    shards:\n"
      "      - replicas: []\n");
  ASSERT_EQ(errors.size(), 2u) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("users: is required"));
  EXPECT_THAT(errors[1], HasSubstr(":4: databases[0].shards[0].primary: is required"));
}

TEST(ConfigTest, DuplicateNamesAreErrors) {
  auto errors = Errors(
      "users:\n"
      "  - {name: a, password: x}\n"
      "  - {name: a, password: y}\n"
      "databases:\n"
      "  - {name: d, shards: [{primary: {host: h, port: 1}}]}\n"
      "  - {name: d, shards: [{primary: {host: h, port: 2}}]}\n");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0], HasSubstr(":3: users[1].name: user \"a\" is defined more than once"));
  EXPECT_THAT(errors[1],
              HasSubstr(":6: databases[1].name: database \"d\" is defined more than once"));
}

TEST(ConfigTest, EachUsersMd5SecretIsDerivedOnceAtLoad) {
  LoadResult r = LoadConfigText(
      "auth_type: md5\n"
      "users:\n"
      "  - {name: alice, password: hunter2}\n"
      "  - {name: bob, password: md52aea419619857e8a27f0f7aa641db0c6}\n"
      "  - {name: carol, auth_type: scram-sha-256, password: "
      "'SCRAM-SHA-256$4096:I4G10khPyepqx8lBhAG45A==$EgJDEoobWu96Oz9c/MK91kqjliEKPFy9nRf7pI8H9MA=:"
      "EN0K/ANHeDJ1NvWNdMVrFcRYNkYbRfHzP7p5nb+PU4Y='}\n"
      "databases: []\n",
      "t.yaml");
  ASSERT_TRUE(r.config) << r.errors[0].ToString();
  // PostgreSQL's md5 secret: "md5" + hex MD5(password || user name).
  EXPECT_EQ(r.config->FindUser("alice")->md5_secret, "md5f1d6e2da5767fddc60c941cf0fa924cf");
  EXPECT_EQ(r.config->FindUser("bob")->md5_secret, "md52aea419619857e8a27f0f7aa641db0c6");
  EXPECT_EQ(r.config->FindUser("carol")->md5_secret, "");
}

TEST(ConfigTest, SecretsMustSuitTheAuthType) {
  auto errors = Errors(
      "users:\n"
      "  - {name: a, password: md52aea419619857e8a27f0f7aa641db0c6}\n"
      "  - {name: b, auth_type: md5, password: "
      "'SCRAM-SHA-256$4096:I4G10khPyepqx8lBhAG45A==$EgJDEoobWu96Oz9c/MK91kqjliEKPFy9nRf7pI8H9MA=:"
      "EN0K/ANHeDJ1NvWNdMVrFcRYNkYbRfHzP7p5nb+PU4Y='}\n"
      "  - {name: c, password: 'SCRAM-SHA-256$broken'}\n"
      "  - {name: d, auth_type: trust}\n"
      "  - {name: e}\n"
      "databases: []\n");
  ASSERT_EQ(errors.size(), 4u) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr(":2: users[0].password: an md5 hash cannot check scram"));
  EXPECT_THAT(errors[1], HasSubstr(":3: users[1].password: a SCRAM secret cannot check md5"));
  EXPECT_THAT(errors[2], HasSubstr(":4: users[2].password: looks like a SCRAM secret"));
  EXPECT_THAT(errors[3], HasSubstr(":6: users[4].password: is required"));
}

TEST(ConfigTest, SeveralShardsAndReplicasLoad) {
  LoadResult r = LoadConfigText(
      "users: [{name: u, password: p}]\n"
      "databases:\n"
      "  - name: d\n"
      "    shards:\n"
      "      - primary: {host: a, port: 1}\n"
      "        replicas: [{host: b, port: 2}, {host: c, port: 3}]\n"
      "      - primary: {host: d, port: 4}\n",
      "t.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->databases[0].shards.size(), 2u);
  EXPECT_EQ(r.config->databases[0].shards[0].replicas.size(), 2u);
}

// The shards and replicas a config lists but Shardyard does not use yet, one line per database.
std::vector<std::string> Warnings(const std::string& databases) {
  LoadResult r =
      LoadConfigText(Cat("users: [{name: u, password: p}]\ndatabases:\n", databases), "t.yaml");
  EXPECT_TRUE(r.config.has_value()) << (r.errors.empty() ? "" : r.errors[0].ToString());
  return r.config ? ConfigWarnings(*r.config) : std::vector<std::string>{};
}

TEST(ConfigTest, UnusedReplicasAndShardsAreNamedInOneWarningPerDatabase) {
  EXPECT_THAT(Warnings("  - {name: one, shards: [{primary: {host: a, port: 1}}]}\n"),
              ::testing::IsEmpty());
  std::vector<std::string> w = Warnings(
      "  - name: app\n"
      "    shards:\n"
      "      - primary: {host: 10.0.0.5, port: 5432}\n"
      "        replicas: [{host: b, port: 2}]\n"
      "      - primary: {host: c, port: 3}\n"
      "      - primary: {host: d, port: 4}\n"
      "      - primary: {host: e, port: 5}\n"
      "  - {name: plain, shards: [{primary: {host: a, port: 1}}]}\n"
      "  - name: reads\n"
      "    shards: [{primary: {host: f, port: 6}, replicas: [{host: g, port: 7}, "
      "{host: h, port: 8}]}]\n"
      "  - name: split\n"
      "    shards: [{primary: {host: i, port: 9}}, {primary: {host: j, port: 10}, replicas: "
      "[{host: k, port: 11}]}]\n");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0],
            "database \"app\": 1 replica of shard 0 and shards 1-3 are accepted but not used yet: "
            "Shardyard routes every query to shard 0's primary (10.0.0.5:5432) until read/write "
            "splitting and sharding land");
  EXPECT_EQ(w[1],
            "database \"reads\": 2 replicas of shard 0 are accepted but not used yet: Shardyard "
            "routes every query to shard 0's primary (f:6) until read/write splitting lands");
  EXPECT_EQ(w[2],
            "database \"split\": shard 1 (with 1 replica) is accepted but not used yet: Shardyard "
            "routes every query to shard 0's primary (i:9) until read/write splitting and "
            "sharding land");
}

TEST(ConfigTest, YamlSyntaxErrorsHaveALine) {
  auto errors = Errors("users: [\n  {name: a\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("YAML syntax error"));
  EXPECT_THAT(errors[0], HasSubstr("test.yaml:"));
}

TEST(ConfigTest, QuotedNumbersAreNotNumbers) {
  auto errors = Errors("workers: '2'\nusers: []\ndatabases: []\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("workers: must be a whole number"));
}

TEST(ConfigTest, MissingFileIsReported) {
  LoadResult r = LoadConfigFile("/nonexistent/shardyard.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(), HasSubstr("cannot open the file"));
}

}  // namespace
}  // namespace shardyard::config
