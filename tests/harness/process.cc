// Implements test subprocesses with fork/exec, dropping to the postgres user where needed.
#include "tests/harness/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/strings.h"

extern char** environ;

namespace shardyard::testing {
namespace {

// Everything a child needs, prepared before fork(): a multi-threaded parent's child may only
// make async-signal-safe calls (no getpwnam, setenv or malloc) until it execs.
struct ChildSpec {
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::string program;  // resolved path
  bool drop_to_postgres = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

std::string ResolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  for (std::string_view dir : Split(path ? path : "/usr/bin:/bin", ':', true)) {
    std::string candidate = Cat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

ChildSpec PrepareChild(const std::vector<std::string>& argv,
                       const std::map<std::string, std::string>& env, bool as_postgres) {
  ChildSpec spec;
  spec.argv_storage = argv;
  spec.program = ResolveProgram(argv[0]);
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos) merged[std::string(kv.substr(0, eq))] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  if (as_postgres && IsRoot()) {
    struct passwd* pw = getpwnam("postgres");
    if (pw != nullptr) {
      spec.drop_to_postgres = true;
      spec.uid = pw->pw_uid;
      spec.gid = pw->pw_gid;
      int n = 64;
      spec.groups.resize(static_cast<size_t>(n));
      if (getgrouplist("postgres", pw->pw_gid, spec.groups.data(), &n) < 0) {
        spec.groups.resize(static_cast<size_t>(n));
        getgrouplist("postgres", pw->pw_gid, spec.groups.data(), &n);
      }
      spec.groups.resize(static_cast<size_t>(n));
      merged["HOME"] = pw->pw_dir;
      merged["USER"] = "postgres";
    }
  }
  for (const auto& [k, v] : merged) spec.env_storage.push_back(Cat(k, "=", v));
  for (auto& a : spec.argv_storage) spec.argv.push_back(a.data());
  spec.argv.push_back(nullptr);
  for (auto& e : spec.env_storage) spec.envp.push_back(e.data());
  spec.envp.push_back(nullptr);
  return spec;
}

// Runs in the forked child: only async-signal-safe calls.
[[noreturn]] void ExecChild(ChildSpec& spec) {
  if (spec.drop_to_postgres) {
    if (setgroups(spec.groups.size(), spec.groups.data()) != 0 || setgid(spec.gid) != 0 ||
        setuid(spec.uid) != 0) {
      _exit(126);
    }
  }
  execve(spec.program.c_str(), spec.argv.data(), spec.envp.data());
  _exit(127);
}

}  // namespace

bool IsRoot() { return geteuid() == 0; }

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env, bool as_postgres,
                         const std::string& stdin_text) {
  CommandResult result;
  int out_pipe[2];
  int in_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(in_pipe) != 0) return result;
  ChildSpec spec = PrepareChild(argv, env, as_postgres);
  pid_t pid = fork();
  if (pid < 0) return result;
  if (pid == 0) {
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(out_pipe[1], STDERR_FILENO);
    close(out_pipe[0]);
    close(out_pipe[1]);
    close(in_pipe[0]);
    close(in_pipe[1]);
    ExecChild(spec);
  }
  close(out_pipe[1]);
  close(in_pipe[0]);
  std::thread writer([fd = in_pipe[1], &stdin_text] {
    size_t off = 0;
    while (off < stdin_text.size()) {
      ssize_t n = write(fd, stdin_text.data() + off, stdin_text.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  });
  char buf[65536];
  ssize_t n;
  while ((n = read(out_pipe[0], buf, sizeof(buf))) > 0)
    result.output.append(buf, static_cast<size_t>(n));
  close(out_pipe[0]);
  writer.join();
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(
    const std::vector<std::string>& argv, const std::string& log_path,
    const std::map<std::string, std::string>& env) {
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(Cat("cannot open ", log_path));
  ChildSpec spec = PrepareChild(argv, env, false);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, STDIN_FILENO);
    ExecChild(spec);
  }
  close(fd);
  return std::unique_ptr<Daemon>(new Daemon(pid, log_path));
}

Daemon::~Daemon() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
}

void Daemon::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

std::optional<int> Daemon::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return -WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool Daemon::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

std::string Daemon::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Daemon::WaitForLog(const std::string& needle, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Log().find(needle) != std::string::npos;
}

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string MakeTempDir(const std::string& prefix, bool for_postgres) {
  std::string templ = Cat("/tmp/", prefix, "-XXXXXX");
  char* dir = mkdtemp(templ.data());
  if (dir == nullptr) return "";
  if (for_postgres && IsRoot()) {
    struct passwd* pw = getpwnam("postgres");
    if (pw != nullptr) chown(dir, pw->pw_uid, pw->pw_gid);
  }
  chmod(dir, 0700);
  return templ;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  if (!path.empty()) std::filesystem::remove_all(path, ec);
}

}  // namespace shardyard::testing
