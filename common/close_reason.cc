// Holds the close-reason tables and their process-wide counters.
#include "common/close_reason.h"

#include <array>
#include <atomic>

namespace shardyard {
namespace {

struct Row {
  std::string_view side;
  std::string_view metric;
  std::string_view text;
};

constexpr std::array<Row, kCloseReasonCount> kRows = {{
#define SY_ROW(name, side, metric, text) {#side, metric, text},
    SY_CLOSE_REASONS(SY_ROW)
#undef SY_ROW
}};

std::array<std::atomic<uint64_t>, kCloseReasonCount> g_counts{};

}  // namespace

std::string_view CloseReasonText(CloseReason r) { return kRows[static_cast<int>(r)].text; }
std::string_view CloseReasonMetricName(CloseReason r) { return kRows[static_cast<int>(r)].metric; }
std::string_view CloseReasonSide(CloseReason r) { return kRows[static_cast<int>(r)].side; }
void CountClose(CloseReason r) {
  g_counts[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed);
}
uint64_t CloseCount(CloseReason r) {
  return g_counts[static_cast<int>(r)].load(std::memory_order_relaxed);
}

}  // namespace shardyard
