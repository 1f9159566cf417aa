// Line-atomic progress output, elapsed-time formatting and the process-wide
// stop flag.
#include "migrate/progress.h"

#include <thread>

#include "absl/strings/str_format.h"

namespace shardyard::migrate {

namespace {
std::atomic<int> g_signals{0};
}  // namespace

void Reporter::Line(std::string_view text) {
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(text.data(), 1, text.size(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

std::string FormatElapsed(Duration d) {
  double s = std::chrono::duration<double>(d).count();
  if (s < 60) return absl::StrFormat("%.1fs", s);
  int64_t total = static_cast<int64_t>(s);
  if (total < 3600) return absl::StrFormat("%dm%02ds", total / 60, total % 60);
  return absl::StrFormat("%dh%02dm", total / 3600, (total % 3600) / 60);
}

void StopSignal::OnSignal() { g_signals.fetch_add(1); }
int StopSignal::SignalCount() { return g_signals.load(); }

bool StopSignal::SleepFor(Duration d) const {
  auto end = std::chrono::steady_clock::now() + d;
  while (true) {
    if (interrupted()) return false;
    auto now = std::chrono::steady_clock::now();
    if (now >= end) return true;
    std::this_thread::sleep_for(std::min<Duration>(end - now, std::chrono::milliseconds(50)));
  }
}

}  // namespace shardyard::migrate
