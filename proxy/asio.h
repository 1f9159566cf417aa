// The Asio types the proxy uses. Every socket, timer and coroutine is bound to one worker's
// io_context through a concrete executor (8 bytes, no type erasure on each operation), and
// completion tokens turn errors into values (no exceptions on the data plane).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_signal_set.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/basic_resolver.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>

namespace shardyard::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

using Executor = asio::io_context::executor_type;

template <typename T = void>
using Task = asio::awaitable<T, Executor>;

using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Resolver = asio::ip::basic_resolver<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using SignalSet = asio::basic_signal_set<Executor>;

inline constexpr asio::use_awaitable_t<Executor> kUseAwaitable{};
// co_await op(..., kAwait) yields a tuple (error_code, ...) instead of throwing. The operation
// is awaited directly (deferred): no coroutine frame is allocated for it.
inline constexpr auto kAwait = asio::as_tuple(asio::deferred);
// The same as a full awaitable, for the operands of `a || b`.
inline constexpr auto kAwaitable = asio::as_tuple(kUseAwaitable);

// The executor and index of the worker whose thread is calling (every proxy thread is a
// worker: one event loop each).
Executor CurrentExecutor();
int CurrentWorker();
// Called once by each worker thread before it runs its io_context.
void SetCurrentWorker(const Executor& executor, int index);

}  // namespace shardyard::proxy
