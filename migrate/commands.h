// The shardyard-migrate command line: options, and one function per command.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migrate/runner.h"

namespace shardyard::migrate {

inline constexpr int kExitDone = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitLockContention = 3;

struct CliOptions {
  std::string command;
  std::vector<std::string> args;  // NAME for new, FILEs for lint
  std::string config_path;
  std::string database;
  std::string dir = "migrations";
  std::string user;
  bool json = false;
  bool dry_run = false;
  bool help = false;
  std::optional<int64_t> to;
  std::vector<int> shards;  // empty: all
  int canary = 1;
  int parallel = 4;
  std::vector<std::string> allow;
  Duration lock_timeout = std::chrono::seconds(1);
  Duration statement_timeout = std::chrono::minutes(10);
  Duration lock_retry_deadline = std::chrono::minutes(10);
  Duration max_replica_lag = std::chrono::seconds(5);
  Duration lock_ttl = std::chrono::seconds(30);
};

// Parses argv (without the program name). InvalidArgument explains what is
// wrong.
absl::StatusOr<CliOptions> ParseCommandLine(const std::vector<std::string>& args);
std::string UsageText();

// Runs the command; returns the process exit code. Output goes to `out`,
// problems to `err`.
int RunCommand(const CliOptions& options, std::FILE* out, std::FILE* err);

}  // namespace shardyard::migrate
