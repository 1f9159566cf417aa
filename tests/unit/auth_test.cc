// Checks SCRAM-SHA-256 (both sides) against RFC 7677's vectors and PostgreSQL's stored secrets,
// and md5 against what PostgreSQL stores.
#include "wire/auth.h"

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/scram_secret.h"

namespace shardyard::wire {
namespace {

// RFC 7677, section 3.
constexpr char kClientFirst[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr char kServerFirst[] =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr char kClientFinal[] =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr char kServerFinal[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramSecret RfcSecret() {
  auto salt = crypto::Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  return ScramSecret::FromPassword("pencil", *salt, 4096);
}

TEST(ScramTest, ClientSideMatchesRfc7677) {
  ScramClientExchange client("pencil", "rOprNGfwEbeRWgbNEkqO", "user");
  EXPECT_EQ(client.ClientFirst(), kClientFirst);
  auto final_message = client.HandleServerFirst(kServerFirst);
  ASSERT_TRUE(final_message.ok()) << final_message.status();
  EXPECT_EQ(*final_message, kClientFinal);
  EXPECT_TRUE(client.HandleServerFinal(kServerFinal).ok());
}

TEST(ScramTest, ServerSideMatchesRfc7677) {
  ScramServerExchange server(RfcSecret(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  auto server_first = server.HandleClientFirst(kClientFirst);
  ASSERT_TRUE(server_first.ok()) << server_first.status();
  EXPECT_EQ(*server_first, kServerFirst);
  auto server_final = server.HandleClientFinal(kClientFinal);
  ASSERT_TRUE(server_final.ok()) << server_final.status();
  EXPECT_EQ(*server_final, kServerFinal);
}

TEST(ScramTest, ServerRejectsWrongPassword) {
  ScramServerExchange server(RfcSecret());
  ScramClientExchange client("not-pencil");
  auto server_first = server.HandleClientFirst(client.ClientFirst());
  ASSERT_TRUE(server_first.ok());
  auto client_final = client.HandleServerFirst(*server_first);
  ASSERT_TRUE(client_final.ok());
  auto result = server.HandleClientFinal(*client_final);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(ScramTest, ClientRejectsForgedServerSignature) {
  ScramClientExchange client("pencil", "rOprNGfwEbeRWgbNEkqO", "user");
  ASSERT_TRUE(client.HandleServerFirst(kServerFirst).ok());
  EXPECT_FALSE(client.HandleServerFinal("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok());
}

TEST(ScramTest, ClientRejectsNonceThatDoesNotExtendItsOwn) {
  ScramClientExchange client("pencil", "abc");
  EXPECT_FALSE(client.HandleServerFirst("r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").ok());
}

TEST(ScramTest, ServerRejectsChannelBindingItNeverOffered) {
  ScramServerExchange server(RfcSecret());
  EXPECT_FALSE(server.HandleClientFirst("p=tls-server-end-point,,n=,r=abc").ok());
}

TEST(ScramTest, ServerRejectsTamperedNonceInFinalMessage) {
  ScramServerExchange server(RfcSecret(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  ASSERT_TRUE(server.HandleClientFirst(kClientFirst).ok());
  EXPECT_FALSE(server
                   .HandleClientFinal("c=biws,r=rOprNGfwEbeRWgbNEkqOXX,"
                                      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                   .ok());
}

// A secret exactly as PostgreSQL 15 stored it for password "secret".
constexpr char kPostgresSecret[] =
    "SCRAM-SHA-256$4096:I4G10khPyepqx8lBhAG45A==$EgJDEoobWu96Oz9c/MK91kqjliEKPFy9nRf7pI8H9MA=:"
    "EN0K/ANHeDJ1NvWNdMVrFcRYNkYbRfHzP7p5nb+PU4Y=";

TEST(ScramTest, PostgresStoredSecretParsesAndRoundTrips) {
  auto secret = ScramSecret::Parse(kPostgresSecret);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(secret->iterations, 4096);
  EXPECT_EQ(secret->ToString(), kPostgresSecret);
  // Deriving from the password with the same salt gives PostgreSQL's secret.
  EXPECT_EQ(ScramSecret::FromPassword("secret", secret->salt, 4096).ToString(), kPostgresSecret);
}

TEST(ScramTest, FullExchangeAgainstPostgresSecretAndPassthroughKeys) {
  auto secret = ScramSecret::Parse(kPostgresSecret);
  ASSERT_TRUE(secret.ok());
  ScramServerExchange server(*secret);
  ScramClientExchange client("secret");
  auto first = server.HandleClientFirst(client.ClientFirst());
  ASSERT_TRUE(first.ok());
  auto final_message = client.HandleServerFirst(*first);
  ASSERT_TRUE(final_message.ok());
  auto server_final = server.HandleClientFinal(*final_message);
  ASSERT_TRUE(server_final.ok()) << server_final.status();
  EXPECT_TRUE(client.HandleServerFinal(*server_final).ok());

  // The ClientKey recovered from the proof logs in to a second server with the same secret.
  ScramServerExchange second(*secret);
  ScramClientExchange passthrough =
      ScramClientExchange::WithKeys(server.client_key(), secret->server_key);
  auto first2 = second.HandleClientFirst(passthrough.ClientFirst());
  ASSERT_TRUE(first2.ok());
  auto final2 = passthrough.HandleServerFirst(*first2);
  ASSERT_TRUE(final2.ok());
  auto server_final2 = second.HandleClientFinal(*final2);
  ASSERT_TRUE(server_final2.ok()) << server_final2.status();
  EXPECT_TRUE(passthrough.HandleServerFinal(*server_final2).ok());
}

TEST(ScramTest, MalformedSecretsAreRejected) {
  EXPECT_FALSE(ScramSecret::Parse("SCRAM-SHA-256$4096:abc").ok());
  EXPECT_FALSE(ScramSecret::Parse("SCRAM-SHA-256$x:I4G10khPyepqx8lBhAG45A==$a:b").ok());
  EXPECT_FALSE(ScramSecret::Parse("md5abc").ok());
}

TEST(Md5Test, SecretMatchesPostgres) {
  // SET password_encryption = 'md5'; CREATE ROLE md5user PASSWORD 'secret';
  EXPECT_EQ(crypto::Md5Secret("md5user", "secret"), "md52aea419619857e8a27f0f7aa641db0c6");
}

TEST(Md5Test, ResponseFromPasswordAndFromSecretAgree) {
  std::string salt("\x01\x02\x03\x04", 4);
  std::string from_password = Md5Response("md5user", "secret", salt);
  std::string from_secret = Md5Response("md5user", "md52aea419619857e8a27f0f7aa641db0c6", salt);
  EXPECT_EQ(from_password, from_secret);
  EXPECT_EQ(from_password.size(), 35u);
  EXPECT_TRUE(Md5Verify("md5user", "secret", salt, from_password));
  EXPECT_FALSE(Md5Verify("md5user", "wrong", salt, from_password));
  EXPECT_FALSE(Md5Verify("md5user", "secret", std::string("\x01\x02\x03\x05", 4), from_password));
}

}  // namespace
}  // namespace shardyard::wire
