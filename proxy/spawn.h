// Starts a detached coroutine whose escaped exception (a bug: the data plane uses Status) is
// logged loudly instead of being swallowed.
#pragma once

#include <exception>
#include <string_view>

#include "common/log.h"
#include "proxy/asio.h"

namespace shardyard::proxy {

template <typename F>
void Spawn(const Executor& executor, F&& function, std::string_view what) {
  asio::co_spawn(executor, std::forward<F>(function), [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      SY_LOG_ERROR("BUG: %s coroutine ended with exception: %s", what, ex.what());
    } catch (...) {
      SY_LOG_ERROR("BUG: %s coroutine ended with an unknown exception", what);
    }
  });
}

}  // namespace shardyard::proxy
