// A one-shot signal between coroutines on the same strand (for example, "the pump has stopped").
#pragma once

#include <chrono>

#include "proxy/asio.h"

namespace shardyard::proxy {

// Not thread-safe: Set and Wait must run on the same strand.
class Event {
 public:
  explicit Event(const asio::any_io_executor& ex) : timer_(ex) {
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  void Set() {
    set_ = true;
    timer_.cancel();
  }
  void Reset() {
    set_ = false;
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  bool is_set() const { return set_; }
  Task<> Wait() {
    while (!set_) co_await timer_.async_wait(kAwait);
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace shardyard::proxy
