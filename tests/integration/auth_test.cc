// Authentication both ways: clients to Shardyard (trust, md5, scram-sha-256) and Shardyard to
// servers (trust, cleartext, md5, scram-sha-256, and SCRAM passthrough), with PostgreSQL's
// messages for refused logins.
#include "wire/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;

class AuthTest : public ProxyTest {
 protected:
  void SetUp() override {
    PgServer::Options options;
    // How the server makes each user log in (the default is scram-sha-256).
    options.hba_lines = {"host all u_trust 127.0.0.1/32 trust",
                         "host all u_clear 127.0.0.1/32 password",
                         "host all u_md5 127.0.0.1/32 md5"};
    auto pg = StartAppServer(options);
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    ASSERT_TRUE(pg_->CreateUser("u_trust", "pw_trust").ok());
    ASSERT_TRUE(pg_->CreateUser("u_clear", "pw_clear").ok());
    ASSERT_TRUE(pg_->CreateUser("u_md5", "pw_md5", "md5").ok());
    ASSERT_TRUE(pg_->CreateUser("u_scram", "pw_scram").ok());
    for (const char* u : {"u_trust", "u_clear", "u_md5", "u_scram"}) {
      ASSERT_TRUE(pg_->ExecSuper(Cat("GRANT ALL ON DATABASE app TO ", u)).ok());
    }
    auto conn = pg_->ConnectSuper();
    ASSERT_TRUE(conn.ok());
    scram_secret_ =
        *QueryValue(conn->get(), "SELECT rolpassword FROM pg_authid WHERE rolname = 'u_scram'");
    md5_secret_ =
        *QueryValue(conn->get(), "SELECT rolpassword FROM pg_authid WHERE rolname = 'u_md5'");
  }
  void StartWithUsers(const std::string& users, const std::string& top = "") {
    ConfigOptions o;
    o.users = users;
    o.top = top;
    StartProxy(o);
  }
  absl::StatusOr<std::string> Whoami(const std::string& user, const std::string& password) {
    auto c = Connect(sy_->ConnInfo("app", user, password));
    if (!c.ok()) return c.status();
    return QueryValue(c->get(), "SELECT current_user");
  }

  std::string scram_secret_;
  std::string md5_secret_;
};

TEST_F(AuthTest, EveryClientMethodWithEverySecretForm) {
  StartWithUsers(
      Cat("  - {name: app, password: secret}\n"
          "  - {name: u_md5, auth_type: md5, password: '",
          md5_secret_,
          "'}\n  - {name: u_clear, auth_type: md5, password: pw_clear}\n"
          "  - {name: u_scram, password: '",
          scram_secret_, "'}\n  - {name: u_trust, auth_type: trust, password: pw_trust}\n"));
  EXPECT_EQ(*Whoami("app", "secret"), "app");            // scram, plain secret
  EXPECT_EQ(*Whoami("u_md5", "pw_md5"), "u_md5");        // md5, md5 secret
  EXPECT_EQ(*Whoami("u_clear", "pw_clear"), "u_clear");  // md5, plain secret
  EXPECT_EQ(*Whoami("u_scram", "pw_scram"), "u_scram");  // scram, SCRAM secret + passthrough
  EXPECT_EQ(*Whoami("u_trust", ""), "u_trust");          // trust
}

TEST_F(AuthTest, WrongPasswordIsRefusedWithPostgresMessage) {
  StartWithUsers(
      "  - {name: app, password: secret}\n"
      "  - {name: u_md5, auth_type: md5, password: pw_md5}\n");
  for (const std::string user : {"app", "u_md5"}) {
    auto c = Connect(sy_->ConnInfo("app", user, "wrong"));
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(std::string(c.status().message()),
                HasSubstr(Cat("password authentication failed for user \"", user, "\"")));
  }
  EXPECT_THAT(sy_->Log(), HasSubstr("closing because: authentication failed"));
}

TEST_F(AuthTest, UnknownUserIsRefusedAsPostgresWould) {
  StartWithUsers("  - {name: app, password: secret}\n");
  // With password authentication PostgreSQL does not reveal whether the role exists.
  auto c = Connect(sy_->ConnInfo("app", "nobody", "x"));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("password authentication failed for user \"nobody\""));
}

TEST_F(AuthTest, UnknownUserUnderTrustIsRoleDoesNotExist) {
  StartWithUsers("  - {name: app, password: secret}\n", "auth_type: trust\n");
  auto c = Connect(sy_->ConnInfo("app", "nobody"));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("role \"nobody\" does not exist"));
  auto ok = Connect(sy_->ConnInfo("app", "app"));
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(AuthTest, EveryServerMethod) {
  StartWithUsers(
      "  - {name: u_trust, password: pw_trust}\n"    // server: trust
      "  - {name: u_clear, password: pw_clear}\n"    // server: cleartext password
      "  - {name: u_md5, password: pw_md5}\n"        // server: md5
      "  - {name: u_scram, password: pw_scram}\n");  // server: scram-sha-256
  for (const std::string user : {"u_trust", "u_clear", "u_md5", "u_scram"}) {
    std::string pw = "pw_" + user.substr(2);
    auto who = Whoami(user, pw);
    ASSERT_TRUE(who.ok()) << user << ": " << who.status();
    EXPECT_EQ(*who, user);
  }
}

TEST_F(AuthTest, Md5SecretLogsInToAnMd5Server) {
  StartWithUsers(Cat("  - {name: u_md5, auth_type: md5, password: '", md5_secret_, "'}\n"));
  EXPECT_EQ(*Whoami("u_md5", "pw_md5"), "u_md5");
}

TEST_F(AuthTest, HashedPasswordThatCannotAnswerTheServerIsExplained) {
  // Clients are checked against the md5 hash, but the server asks for the cleartext password.
  StartWithUsers(Cat("  - {name: u_clear, auth_type: md5, password: ",
                     crypto::Md5Secret("u_clear", "pw_clear"), "}\n"));
  auto who = Whoami("u_clear", "pw_clear");
  ASSERT_FALSE(who.ok());
  EXPECT_THAT(std::string(who.status().message()), HasSubstr("set server_password"));
}

}  // namespace
}  // namespace shardyard::testing
