// Reads the epoll reactor's per-socket readiness record, which Asio keeps private.
#include "proxy/socket_access.h"

#include <boost/asio/detail/epoll_reactor.hpp>

namespace shardyard::proxy {

namespace {

// Names a private data member through an explicit instantiation, where the language waives
// access checks: after it, Member<Tag>::pointer is `&Class::member`.
template <typename Tag>
struct Member {
  static inline typename Tag::type pointer = nullptr;
};
template <typename Tag, typename Tag::type M>
struct Expose {
  static inline const bool done = (Member<Tag>::pointer = M, true);
};

using Reactor = asio::detail::epoll_reactor;
using DescriptorState = Reactor::descriptor_state;
using DescriptorMutex = asio::detail::conditionally_enabled_mutex;

struct TrySpeculative {
  using type = bool (DescriptorState::*)[Reactor::max_ops];
};
struct StateMutex {
  using type = DescriptorMutex DescriptorState::*;
};

}  // namespace

template struct Expose<TrySpeculative, &DescriptorState::try_speculative_>;
template struct Expose<StateMutex, &DescriptorState::mutex_>;

bool MayHaveInput(Socket& socket) {
  DescriptorState* state = SocketImpl(socket).reactor_data_;
  if (state == nullptr) return true;
  // Set by the reactor whenever a readiness event arrives; cleared by a read that emptied the
  // socket (done_and_exhausted, as the proxy's reactor reads report).
  DescriptorMutex::scoped_lock lock(state->*Member<StateMutex>::pointer);
  return (state->*Member<TrySpeculative>::pointer)[Reactor::read_op];
}

}  // namespace shardyard::proxy
