// Implements accept steering: the policy's hysteresis and the classic BPF programs.
#include "proxy/accept_steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"

namespace shardyard::proxy {

int SteeringPolicy::Threshold(int total_sessions, int workers) {
  return std::max(8, total_sessions / (8 * std::max(1, workers)));
}

int SteeringPolicy::Decide(std::span<const int> sessions) {
  if (sessions.size() < 2) return choice_ = kByCpu;
  int total = 0;
  int least = 0;
  int most = 0;
  for (int i = 0; i < static_cast<int>(sessions.size()); ++i) {
    total += sessions[i];
    if (sessions[i] < sessions[least]) least = i;
    if (sessions[i] > sessions[most]) most = i;
  }
  const int spread = sessions[most] - sessions[least];
  const int threshold = Threshold(total, static_cast<int>(sessions.size()));
  if (choice_ == kByCpu) {
    if (spread > threshold) choice_ = least;
  } else {
    choice_ = spread <= threshold / 2 ? kByCpu : least;
  }
  return choice_;
}

AcceptSteering::AcceptSteering(int workers)
    : workers_(workers), sessions_(std::make_unique<std::atomic<int>[]>(workers)) {
  for (int i = 0; i < workers_; ++i) sessions_[i].store(0, std::memory_order_relaxed);
}

bool AcceptSteering::Start(int listen_fd) {
  if (workers_ < 2) return false;
  std::lock_guard lock(mu_);
  if (InstallSteering(listen_fd, workers_, SteeringPolicy::kByCpu) != 0) return false;
  listen_fd_ = listen_fd;
  return true;
}

void AcceptSteering::SessionOpened(int worker) {
  sessions_[worker].fetch_add(1, std::memory_order_relaxed);
  if (listen_fd_ < 0) return;
  absl::InlinedVector<int, 16> counts(workers_);  // no malloc per accept
  for (int i = 0; i < workers_; ++i) counts[i] = sessions_[i].load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  const int before = policy_.choice();
  const int after = policy_.Decide(counts);
  // If the kernel refuses a swap, the old program stays (still a valid choice): the policy goes
  // back to it and tries again on the next session.
  if (after != before && InstallSteering(listen_fd_, workers_, after) != 0) {
    policy_ = SteeringPolicy(before);
  }
}

void AcceptSteering::SessionClosed(int worker) {
  sessions_[worker].fetch_sub(1, std::memory_order_relaxed);
}

int AcceptSteering::choice() const {
  std::lock_guard lock(mu_);
  return policy_.choice();
}

int InstallSteering(int fd, int workers, int choice) {
  std::vector<sock_filter> code;
  if (choice == SteeringPolicy::kByCpu) {
    code = {
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_CPU)},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, static_cast<uint32_t>(workers)},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
  } else {
    code = {{BPF_RET | BPF_K, 0, 0, static_cast<uint32_t>(choice)}};
  }
  sock_fprog program{static_cast<unsigned short>(code.size()), code.data()};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) != 0) {
    return errno;
  }
  return 0;
}

}  // namespace shardyard::proxy
