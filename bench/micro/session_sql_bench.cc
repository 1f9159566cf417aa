// Microbenchmarks of the check every forwarded Query and Parse passes through in transaction
// mode: might this SQL change settings beyond its transaction (sql/session_sql.h)?
#include <string_view>

#include "benchmark/benchmark.h"
#include "sql/session_sql.h"

namespace shardyard::sql {
namespace {

// pgbench's statements: -S, and the tpcb-like UPDATE (which has a SET).
constexpr std::string_view kSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
constexpr std::string_view kUpdate =
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;";
constexpr std::string_view kSet = "SET search_path = tenant_42, public";

// The quick check alone: what each of pgbench's statements pays (the UPDATE's SET is not where
// a statement starts, so it goes no further either).
void BM_MayChangeSettings(benchmark::State& state) {
  const std::string_view sql = state.range(0) == 0 ? kSelect : kUpdate;
  for (auto _ : state) benchmark::DoNotOptimize(MayChangeSettings(sql));
}
BENCHMARK(BM_MayChangeSettings)->ArgName("update")->Arg(0)->Arg(1);

// The full scan, for statements the quick check lets through.
void BM_ScanSessionChanges(benchmark::State& state) {
  const std::string_view sql = state.range(0) == 0 ? kUpdate : kSet;
  for (auto _ : state) benchmark::DoNotOptimize(ScanSessionChanges(sql));
}
BENCHMARK(BM_ScanSessionChanges)->ArgName("set")->Arg(0)->Arg(1);

}  // namespace
}  // namespace shardyard::sql
