// shardyard-migrate's entry point: signals, argument parsing, and the exit
// code.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "migrate/commands.h"
#include "migrate/progress.h"

namespace {

// First Ctrl-C: stop cleanly between steps. Second: leave now; a re-run
// resumes.
void OnSignal(int) {
  shardyard::migrate::StopSignal::OnSignal();
  if (shardyard::migrate::StopSignal::SignalCount() >= 2) _exit(shardyard::migrate::kExitFailed);
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  auto options = shardyard::migrate::ParseCommandLine(args);
  if (!options.ok()) {
    std::fprintf(stderr, "shardyard-migrate: %s\n\n%s",
                 std::string(options.status().message()).c_str(),
                 shardyard::migrate::UsageText().c_str());
    return shardyard::migrate::kExitUsage;
  }
  return shardyard::migrate::RunCommand(*options, stdout, stderr);
}
