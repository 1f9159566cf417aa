// The shardyard daemon's entry point: command-line flags, config check, then Daemon::Run.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "common/log.h"
#include "common/version.h"
#include "config/config.h"
#include "proxy/daemon.h"

namespace {

constexpr char kUsage[] =
    "Usage: shardyard --config FILE [--check]\n"
    "\n"
    "Shardyard is a PostgreSQL connection pooler and sharding router. Clients connect to it\n"
    "exactly as they would to PostgreSQL.\n"
    "\n"
    "  --config FILE   the YAML configuration (see docs/config.md)\n"
    "  --check         validate the configuration, print every problem, and exit\n"
    "                  (0 when valid, 1 otherwise)\n"
    "  --version       print the version and exit\n"
    "  --help          print this help and exit\n"
    "\n"
    "Signals: SIGHUP reloads the configuration, SIGTERM shuts down after running\n"
    "transactions finish (up to shutdown_timeout), SIGINT closes everything at once.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version" || arg == "-V") {
      std::printf("shardyard %s\n", shardyard::kVersion);
      return 0;
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--config" || arg == "-c") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "shardyard: --config needs a file name\n\n%s", kUsage);
        return 2;
      }
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(std::strlen("--config="));
    } else {
      std::fprintf(stderr, "shardyard: unknown argument \"%s\"\n\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "shardyard: --config FILE is required\n\n%s", kUsage);
    return 2;
  }

  shardyard::config::LoadResult loaded = shardyard::config::LoadConfigFile(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::fprintf(stderr, "shardyard: %zu problem(s) in %s\n", loaded.errors.size(),
                 config_path.c_str());
    return 1;
  }
  if (check) {
    // Valid, but not all of it is used yet (the daemon logs the same lines at startup).
    for (const auto& w : shardyard::config::ConfigWarnings(*loaded.config)) {
      std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
    std::printf("%s: configuration is valid (%zu databases, %zu users)\n", config_path.c_str(),
                loaded.config->databases.size(), loaded.config->users.size());
    return 0;
  }
  // Writes to a vanished client must fail with EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  auto config = std::make_shared<const shardyard::config::Config>(*std::move(loaded.config));
  shardyard::proxy::Daemon daemon(std::move(config), config_path);
  return daemon.Run();
}
