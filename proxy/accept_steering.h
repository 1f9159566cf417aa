// Which worker the kernel hands each new connection to. By default the worker matching the CPU
// the connection arrived on: a client on the same host then talks to the event loop that shares
// its CPU, and a short-lived connection's wake-ups stay there (a new connection per transaction
// ran 1.2-1.5x faster than with the kernel's hash). When that leaves the workers' session counts
// unbalanced (many connections arriving on one CPU), new connections go to the least loaded
// worker until the counts are even again. Installed as a classic BPF program on the listening
// sockets' SO_REUSEPORT group; no Asio here.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <span>

namespace shardyard::proxy {

// The policy, without sockets: from each worker's live session count, where new connections go.
class SteeringPolicy {
 public:
  static constexpr int kByCpu = -1;

  explicit SteeringPolicy(int choice = kByCpu) : choice_(choice) {}

  // Balancing starts when the busiest worker has more than this many sessions over the least
  // busy one, and stops when the spread is back to half of it.
  static int Threshold(int total_sessions, int workers);

  // kByCpu, or the worker every new connection should go to for now.
  int Decide(std::span<const int> sessions);
  int choice() const { return choice_; }

 private:
  int choice_;
};

// The policy applied to a listening group: counts sessions per worker and swaps the group's
// program when the choice changes (rarely: a setsockopt then). Thread-safe.
class AcceptSteering {
 public:
  explicit AcceptSteering(int workers);

  // Attaches the by-CPU program through `listen_fd`, the first socket of the group (the
  // program's answer is a socket's position in it, in the order they started listening, which
  // is the workers' order). False if the kernel refused: its hash spreads connections then.
  bool Start(int listen_fd);

  // A session began on `worker` (call after accepting it): may re-steer.
  void SessionOpened(int worker);
  // A session on `worker` ended.
  void SessionClosed(int worker);

  int choice() const;

 private:
  const int workers_;
  std::unique_ptr<std::atomic<int>[]> sessions_;
  mutable std::mutex mu_;
  SteeringPolicy policy_;
  int listen_fd_ = -1;
};

// Attaches to the SO_REUSEPORT group of `fd` a program that picks, out of `workers` sockets,
// the one matching the receiving CPU (choice kByCpu) or always socket `choice`. Returns errno
// (0 on success).
int InstallSteering(int fd, int workers, int choice);

}  // namespace shardyard::proxy
