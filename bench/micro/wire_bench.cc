// Microbenchmarks of the wire layer: framing, and encoding/decoding each message type the proxy
// looks at or generates.
#include <string>
#include <string_view>
#include <vector>

#include "benchmark/benchmark.h"
#include "wire/framer.h"
#include "wire/messages.h"

namespace shardyard::wire {
namespace {

// ---------------------------------------------------------------------------------------------
// Sample messages, sized like the ones pgbench -S and typical OLTP traffic exchange.

struct QuerySample {
  static fe::Query Make() { return {"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"}; }
};
struct ParseSample {
  static fe::Parse Make() {
    return {"", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", {23}};
  }
};
struct BindSample {
  static fe::Bind Make() {
    fe::Bind b;
    b.parameter_formats = {0};
    b.parameters = {std::string("48213")};
    b.result_formats = {0};
    return b;
  }
};
struct Bind10Sample {
  static fe::Bind Make() {
    fe::Bind b;
    b.statement = "stmt_insert_orders";
    for (int i = 0; i < 10; ++i) b.parameters.push_back(std::string("value-") + std::to_string(i));
    b.parameters.push_back(std::nullopt);
    return b;
  }
};
struct DescribeSample {
  static fe::Describe Make() { return {'P', ""}; }
};
struct ExecuteSample {
  static fe::Execute Make() { return {"", 0}; }
};
struct SyncSample {
  static fe::Sync Make() { return {}; }
};
struct StartupSample {
  static fe::StartupMessage Make() {
    fe::StartupMessage m;
    m.parameters = {{"user", "bench"},
                    {"database", "bench"},
                    {"application_name", "pgbench"},
                    {"client_encoding", "UTF8"}};
    return m;
  }
};
struct AuthMd5Sample {
  static be::Authentication Make() {
    return {be::Authentication::kMd5Password, std::string("\x01\x02\x03\x04", 4), {}};
  }
};
struct ParameterStatusSample {
  static be::ParameterStatus Make() { return {"application_name", "pgbench"}; }
};
struct BackendKeyDataSample {
  static be::BackendKeyData Make() { return {12345, 67890}; }
};
struct RowDescription1Sample {
  static be::RowDescription Make() {
    be::RowDescription r;
    r.fields.push_back({"abalance", 16396, 3, 23, 4, -1, 0});
    return r;
  }
};
struct RowDescription10Sample {
  static be::RowDescription Make() {
    be::RowDescription r;
    for (int i = 0; i < 10; ++i) {
      r.fields.push_back(
          {"column_" + std::to_string(i), 16396, static_cast<int16_t>(i + 1), 25, -1, -1, 0});
    }
    return r;
  }
};
struct DataRow1Sample {
  static be::DataRow Make() { return {{std::string("-2871")}}; }
};
struct DataRow10Sample {
  static be::DataRow Make() {
    be::DataRow r;
    for (int i = 0; i < 9; ++i) r.values.push_back(std::string(12, static_cast<char>('a' + i)));
    r.values.push_back(std::nullopt);
    return r;
  }
};
struct CommandCompleteSample {
  static be::CommandComplete Make() { return {"SELECT 1"}; }
};
struct ReadyForQuerySample {
  static be::ReadyForQuery Make() { return {be::TxStatus::kIdle}; }
};
struct ErrorResponseSample {
  static be::ErrorResponse Make() {
    be::ErrorResponse e;
    e.fields = {{'S', "ERROR"}, {'V', "ERROR"},
                {'C', "42P01"}, {'M', "relation \"pgbench_acounts\" does not exist"},
                {'P', "15"},    {'F', "parse_relation.c"},
                {'L', "1392"},  {'R', "parserOpenTable"}};
    return e;
  }
};

template <typename Sample>
void BM_Encode(benchmark::State& state) {
  const auto message = Sample::Make();
  std::string out;
  for (auto _ : state) {
    out.clear();
    Encode(message, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}

template <typename Sample>
void BM_Decode(benchmark::State& state) {
  using M = decltype(Sample::Make());
  const std::string encoded = Encode(Sample::Make());
  // Startup-phase packets have a 4-byte header; typed messages a 5-byte one.
  const std::string_view body = std::string_view(encoded).substr(M::kType == 0 ? 4 : 5);
  for (auto _ : state) {
    auto decoded = Decode<M>(body);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * encoded.size()));
}

#define SY_CODEC_BENCH(Sample)                                    \
  BENCHMARK_TEMPLATE(BM_Encode, Sample)->Name("Encode/" #Sample); \
  BENCHMARK_TEMPLATE(BM_Decode, Sample)->Name("Decode/" #Sample)

SY_CODEC_BENCH(QuerySample);
SY_CODEC_BENCH(ParseSample);
SY_CODEC_BENCH(BindSample);
SY_CODEC_BENCH(Bind10Sample);
SY_CODEC_BENCH(DescribeSample);
SY_CODEC_BENCH(ExecuteSample);
SY_CODEC_BENCH(SyncSample);
SY_CODEC_BENCH(StartupSample);
SY_CODEC_BENCH(AuthMd5Sample);
SY_CODEC_BENCH(ParameterStatusSample);
SY_CODEC_BENCH(BackendKeyDataSample);
SY_CODEC_BENCH(RowDescription1Sample);
SY_CODEC_BENCH(RowDescription10Sample);
SY_CODEC_BENCH(DataRow1Sample);
SY_CODEC_BENCH(DataRow10Sample);
SY_CODEC_BENCH(CommandCompleteSample);
SY_CODEC_BENCH(ReadyForQuerySample);
SY_CODEC_BENCH(ErrorResponseSample);

// ---------------------------------------------------------------------------------------------
// Framing.

// One ParseFrame call on a complete message whose body is state.range(0) bytes.
void BM_ParseFrameOne(benchmark::State& state) {
  std::string msg = Encode(CopyData{std::string(static_cast<size_t>(state.range(0)), 'x')});
  for (auto _ : state) {
    Frame f = ParseFrame(msg, 1 << 30);
    benchmark::DoNotOptimize(f.body.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseFrameOne)->Arg(0)->Arg(64)->Arg(8192);

// ParseFrame on a header that is present but whose body is not complete yet.
void BM_ParseFrameNeedMore(benchmark::State& state) {
  std::string msg = Encode(CopyData{std::string(100, 'x')});
  std::string_view partial = std::string_view(msg).substr(0, 50);
  for (auto _ : state) {
    Frame f = ParseFrame(partial, 1 << 30);
    benchmark::DoNotOptimize(f.kind);
  }
}
BENCHMARK(BM_ParseFrameNeedMore);

// Walks a buffer holding one extended-protocol round trip from a client (Parse, Bind, Describe,
// Execute, Sync) repeated, as ProcessInput does message by message.
void BM_ParseFrameStream(benchmark::State& state) {
  std::string stream;
  for (int i = 0; i < 100; ++i) {
    Encode(ParseSample::Make(), &stream);
    Encode(BindSample::Make(), &stream);
    Encode(DescribeSample::Make(), &stream);
    Encode(ExecuteSample::Make(), &stream);
    Encode(SyncSample::Make(), &stream);
  }
  int64_t messages = 0;
  for (auto _ : state) {
    std::string_view rest = stream;
    while (true) {
      Frame f = ParseFrame(rest, 1 << 20);
      if (f.kind != Frame::Kind::kMessage) break;
      benchmark::DoNotOptimize(f.type);
      rest.remove_prefix(f.size);
      ++messages;
    }
  }
  state.SetItemsProcessed(messages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_ParseFrameStream);

void BM_ParseStartupFrame(benchmark::State& state) {
  std::string msg = Encode(StartupSample::Make());
  for (auto _ : state) {
    Frame f = ParseStartupFrame(msg);
    benchmark::DoNotOptimize(f.body.data());
  }
}
BENCHMARK(BM_ParseStartupFrame);

}  // namespace
}  // namespace shardyard::wire
