// The Asio pieces the proxy uses, with the completion token that turns errors into values
// (no exceptions on the data plane).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace shardyard::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

template <typename T = void>
using Task = asio::awaitable<T>;

// The executor every session's strand wraps.
using IoExecutor = asio::io_context::executor_type;
using Strand = asio::strand<IoExecutor>;
// Client sockets use the plain io_context executor (an 8-byte handle): each pending
// operation stores a copy, and an idle client always has one pending.
using ClientSocket = asio::basic_stream_socket<tcp, IoExecutor>;

// co_await op(..., kAwait) yields a tuple (error_code, ...) instead of throwing.
inline constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

}  // namespace shardyard::proxy
