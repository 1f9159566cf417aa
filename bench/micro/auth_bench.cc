// Microbenchmarks of authentication: SCRAM-SHA-256 on both sides of the proxy, and md5.
#include <string>

#include "benchmark/benchmark.h"
#include "common/scram_secret.h"
#include "wire/auth.h"

namespace shardyard::wire {
namespace {

constexpr char kPassword[] = "bench-password";
constexpr char kClientNonce[] = "rOprNGfwEbeRWgbNEkqO";
constexpr char kServerNonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

// A client's messages for a known server nonce, computed once so the server side can be timed
// alone.
struct ScramTranscript {
  ScramSecret secret;
  std::string client_first;
  std::string client_final;
};

ScramTranscript MakeTranscript(int iterations) {
  ScramTranscript t;
  t.secret = ScramSecret::FromPassword(kPassword, "0123456789abcdef", iterations);
  ScramClientExchange client(kPassword, kClientNonce);
  ScramServerExchange server(t.secret, kServerNonce);
  t.client_first = client.ClientFirst();
  auto server_first = server.HandleClientFirst(t.client_first);
  auto client_final = client.HandleServerFirst(*server_first);
  t.client_final = *client_final;
  return t;
}

// Shardyard verifying a client against a stored SCRAM secret: the per-login cost on the
// client side of the pooler (no PBKDF2).
void BM_ScramServerVerify(benchmark::State& state) {
  const ScramTranscript t = MakeTranscript(4096);
  for (auto _ : state) {
    ScramServerExchange server(t.secret, kServerNonce);
    auto first = server.HandleClientFirst(t.client_first);
    auto final_message = server.HandleClientFinal(t.client_final);
    if (!final_message.ok()) state.SkipWithError("proof rejected");
    benchmark::DoNotOptimize(final_message);
  }
}
BENCHMARK(BM_ScramServerVerify);

// The same with a fresh random server nonce per exchange, as in production.
void BM_ScramServerFirstRandomNonce(benchmark::State& state) {
  const ScramTranscript t = MakeTranscript(4096);
  for (auto _ : state) {
    ScramServerExchange server(t.secret);
    auto first = server.HandleClientFirst(t.client_first);
    benchmark::DoNotOptimize(first);
  }
}
BENCHMARK(BM_ScramServerFirstRandomNonce);

// Deriving a SCRAM secret from a plain password (PBKDF2, state.range(0) iterations): what a
// login costs when a user's password is configured in plain text and must be salted per login.
void BM_ScramSecretFromPassword(benchmark::State& state) {
  const int iterations = static_cast<int>(state.range(0));
  for (auto _ : state) {
    ScramSecret s = ScramSecret::FromPassword(kPassword, "0123456789abcdef", iterations);
    benchmark::DoNotOptimize(s.stored_key.data());
  }
}
BENCHMARK(BM_ScramSecretFromPassword)->Arg(4096)->Unit(benchmark::kMicrosecond);

// Shardyard logging in to PostgreSQL with a plain password, client side. PBKDF2 runs once:
// its keys are cached per password and salt, as for a pool's repeated logins
// (BM_ScramSecretFromPassword is what the first login pays).
void BM_ScramClientLogin(benchmark::State& state) {
  const int iterations = static_cast<int>(state.range(0));
  const ScramSecret secret = ScramSecret::FromPassword(kPassword, "0123456789abcdef", iterations);
  for (auto _ : state) {
    ScramClientExchange client(kPassword, kClientNonce);
    ScramServerExchange server(secret, kServerNonce);
    auto server_first = server.HandleClientFirst(client.ClientFirst());
    auto client_final = client.HandleServerFirst(*server_first);
    auto server_final = server.HandleClientFinal(*client_final);
    absl::Status st = client.HandleServerFinal(*server_final);
    if (!st.ok()) state.SkipWithError("login failed");
  }
}
BENCHMARK(BM_ScramClientLogin)->Arg(4096)->Unit(benchmark::kMicrosecond);

// The same with keys known in advance (SCRAM passthrough): no PBKDF2.
void BM_ScramClientLoginWithKeys(benchmark::State& state) {
  const ScramSecret secret = ScramSecret::FromPassword(kPassword, "0123456789abcdef", 4096);
  ScramClientExchange probe(kPassword, kClientNonce);
  ScramServerExchange probe_server(secret, kServerNonce);
  auto probe_first = probe_server.HandleClientFirst(probe.ClientFirst());
  auto probe_final = probe.HandleServerFirst(*probe_first);
  (void)probe_server.HandleClientFinal(*probe_final);
  const crypto::Sha256Digest client_key = probe_server.client_key();
  for (auto _ : state) {
    ScramClientExchange client = ScramClientExchange::WithKeys(client_key, secret.server_key);
    ScramServerExchange server(secret, kServerNonce);
    auto server_first = server.HandleClientFirst(client.ClientFirst());
    auto client_final = client.HandleServerFirst(*server_first);
    auto server_final = server.HandleClientFinal(*client_final);
    if (!server_final.ok()) state.SkipWithError("login failed");
    benchmark::DoNotOptimize(server_final);
  }
}
BENCHMARK(BM_ScramClientLoginWithKeys);

void BM_Md5Response(benchmark::State& state) {
  for (auto _ : state) {
    std::string r = Md5Response("bench", kPassword, "\x01\x02\x03\x04");
    benchmark::DoNotOptimize(r.data());
  }
}
BENCHMARK(BM_Md5Response);

// Checking a client's md5 response against a plain password (two MD5s) and a stored md5 secret.
void BM_Md5Verify(benchmark::State& state) {
  const bool stored = state.range(0) != 0;
  const std::string secret =
      stored ? crypto::Md5Secret("bench", kPassword) : std::string(kPassword);
  const std::string response = Md5Response("bench", kPassword, "\x01\x02\x03\x04");
  for (auto _ : state) {
    bool ok = Md5Verify("bench", secret, "\x01\x02\x03\x04", response);
    if (!ok) state.SkipWithError("md5 mismatch");
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_Md5Verify)->ArgName("stored_secret")->Arg(0)->Arg(1);

}  // namespace
}  // namespace shardyard::wire
