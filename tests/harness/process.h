// Runs child processes for tests: one-shot commands with captured output, and long-running daemons.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shardyard::testing {

struct CommandResult {
  int exit_code = -1;  // -1 if killed by a signal or not started
  std::string output;  // stdout and stderr, interleaved
};

// Runs `argv` to completion. `env` entries are added to the inherited environment.
// With `as_postgres` and when running as root, the command runs as the postgres OS user.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         bool as_postgres = false, const std::string& stdin_text = "");

// A background process whose stdout/stderr go to a log file; killed (SIGKILL) on destruction.
class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      const std::vector<std::string>& argv, const std::string& log_path,
      const std::map<std::string, std::string>& env = {});
  ~Daemon();

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit; returns the exit code, -(signal) if killed, or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool Running();
  std::string Log() const;  // the whole log so far
  // Waits until the log contains `needle`.
  bool WaitForLog(const std::string& needle, std::chrono::milliseconds timeout) const;

 private:
  Daemon(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
};

// A port on 127.0.0.1 that was free a moment ago.
uint16_t FreePort();

// Whether this process runs as root (PostgreSQL then runs as the postgres user).
bool IsRoot();

// A fresh directory under /tmp, owned by postgres when running as root; removed by the caller.
std::string MakeTempDir(const std::string& prefix, bool for_postgres);
void RemoveTree(const std::string& path);

}  // namespace shardyard::testing
