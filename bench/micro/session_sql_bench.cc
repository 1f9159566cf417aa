// Microbenchmarks of the check every forwarded Query and Parse passes through in transaction
// mode: might this SQL change settings beyond its transaction (router/session_sql.h)?
#include <string_view>

#include "benchmark/benchmark.h"
#include "router/session_sql.h"

namespace shardyard::sql {
namespace {

// pgbench's statements: -S, then the tpcb-like UPDATE (which has a SET, so it is scanned).
constexpr std::string_view kSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
constexpr std::string_view kUpdate =
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;";
constexpr std::string_view kSet = "SET search_path = tenant_42, public";

// The quick check alone: what a pgbench -S transaction pays.
void BM_MayChangeSettingsSelect(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(MayChangeSettings(kSelect));
}
BENCHMARK(BM_MayChangeSettingsSelect);

// The full scan, for statements the quick check lets through.
void BM_ScanSessionChanges(benchmark::State& state) {
  const std::string_view sql = state.range(0) == 0 ? kUpdate : kSet;
  for (auto _ : state) benchmark::DoNotOptimize(ScanSessionChanges(sql));
}
BENCHMARK(BM_ScanSessionChanges)->ArgName("set")->Arg(0)->Arg(1);

}  // namespace
}  // namespace shardyard::sql
