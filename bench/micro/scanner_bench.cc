// Microbenchmarks of server→client forwarding: BackendScanner following a DataRow stream that
// arrives in socket-read-sized chunks, as the proxy's pump sees it.
#include <algorithm>
#include <string>
#include <string_view>

#include "benchmark/benchmark.h"
#include "wire/backend_scanner.h"
#include "wire/messages.h"

namespace shardyard::wire {
namespace {

// The types the proxy's pump asks the scanner for (see proxy/client_session.cc).
constexpr std::string_view kPumpTypes = "ZSEGW";

// A result set: RowDescription, `rows` DataRows of `columns` text values of `width` bytes,
// CommandComplete, ReadyForQuery.
std::string ResultStream(int rows, int columns, int width) {
  std::string out;
  be::RowDescription desc;
  for (int c = 0; c < columns; ++c) {
    desc.fields.push_back({"c" + std::to_string(c), 0, 0, 25, -1, -1, 0});
  }
  Encode(desc, &out);
  be::DataRow row;
  for (int c = 0; c < columns; ++c) row.values.push_back(std::string(width, 'v'));
  for (int r = 0; r < rows; ++r) Encode(row, &out);
  Encode(be::CommandComplete{"SELECT " + std::to_string(rows)}, &out);
  Encode(be::ReadyForQuery{be::TxStatus::kIdle}, &out);
  return out;
}

// Scans the stream in chunks of state.range(0) bytes; state.range(1) is the row width.
void BM_ScanDataRows(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const std::string stream = ResultStream(/*rows=*/1000, /*columns=*/4, width);
  BackendScanner scanner(kPumpTypes);
  int64_t ready = 0;
  for (auto _ : state) {
    for (size_t at = 0; at < stream.size(); at += chunk) {
      std::string_view piece = std::string_view(stream).substr(at, chunk);
      absl::Status st = scanner.Scan(piece, [&](char type, std::string_view body) {
        if (type == 'Z') ready += static_cast<int64_t>(body.size());
      });
      if (!st.ok()) state.SkipWithError("scan failed");
    }
  }
  if (ready != static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("lost a ReadyForQuery");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 1000));  // rows
}
BENCHMARK(BM_ScanDataRows)
    ->ArgNames({"chunk", "width"})
    ->ArgsProduct({{64, 512, 4096, 16384, 65536}, {8, 200}});

// The same, plus copying each chunk into an output buffer as forwarding to the client does.
void BM_ForwardDataRows(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0));
  const std::string stream = ResultStream(/*rows=*/1000, /*columns=*/4, /*width=*/8);
  BackendScanner scanner(kPumpTypes);
  std::string out;
  out.reserve(stream.size());
  for (auto _ : state) {
    out.clear();
    for (size_t at = 0; at < stream.size(); at += chunk) {
      std::string_view piece = std::string_view(stream).substr(at, chunk);
      absl::Status st = scanner.Scan(piece, [](char, std::string_view) {});
      benchmark::DoNotOptimize(st);
      out.append(piece);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_ForwardDataRows)->ArgName("chunk")->Arg(512)->Arg(16384);

// The whole reply to one pgbench -S transaction (simple protocol), the hot path's common case.
void BM_ScanSelectOneReply(benchmark::State& state) {
  const std::string stream = ResultStream(/*rows=*/1, /*columns=*/1, /*width=*/5);
  BackendScanner scanner(kPumpTypes);
  for (auto _ : state) {
    absl::Status st = scanner.Scan(stream, [](char type, std::string_view body) {
      benchmark::DoNotOptimize(type);
      benchmark::DoNotOptimize(body.data());
    });
    benchmark::DoNotOptimize(st);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_ScanSelectOneReply);

}  // namespace
}  // namespace shardyard::wire
