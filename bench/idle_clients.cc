// sy_idle_clients: opens N PostgreSQL client connections, logs each in, then holds them idle.
//
// A single-threaded epoll loop drives every connection through TCP connect, StartupMessage,
// authentication (trust, cleartext, md5 or SCRAM-SHA-256) and the first ReadyForQuery, with at
// most --concurrency handshakes in flight. When all are logged in (or failed) it prints one line
// "READY {json}" on stdout and keeps the connections open until standard input reaches EOF or
// --hold seconds pass; then it prints "DONE {json}" with how many connections dropped while idle.
// The harness (bench/run) measures the pooler's memory between the two lines.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "wire/auth.h"
#include "wire/framer.h"
#include "wire/messages.h"

namespace shardyard::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "Usage: sy_idle_clients --port PORT [options]\n"
    "\n"
    "Opens N client connections to a PostgreSQL server or pooler, authenticates each, waits\n"
    "for ReadyForQuery, then keeps them idle. Prints 'READY {json}' once all connections are\n"
    "logged in, and 'DONE {json}' when it closes them (stdin EOF or --hold elapsed).\n"
    "\n"
    "  --host ADDR        IPv4 address (default 127.0.0.1)\n"
    "  --port PORT        port (required)\n"
    "  --user NAME        user (default bench)\n"
    "  --password TEXT    password for cleartext, md5 or SCRAM (default bench)\n"
    "  --database NAME    database (default bench)\n"
    "  --clients N        connections to open (default 1000)\n"
    "  --concurrency K    handshakes in flight at once (default 100)\n"
    "  --timeout S        give up on connections not logged in after S seconds (default 120)\n"
    "  --hold S           close after S seconds idle even if stdin stays open\n"
    "                     (default: no limit)\n";

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string user = "bench";
  std::string password = "bench";
  std::string database = "bench";
  int clients = 1000;
  int concurrency = 100;
  double timeout_s = 120;
  double hold_s = -1;
};

enum class State { kNotStarted, kConnecting, kHandshake, kIdle, kFailed, kClosed };

struct Conn {
  int fd = -1;
  State state = State::kNotStarted;
  Clock::time_point started;
  std::string in;
  std::string out;
  std::unique_ptr<wire::ScramClientExchange> scram;
};

struct Stats {
  int ready = 0;
  int failed = 0;
  int dropped = 0;
  std::string first_error;
  std::vector<double> handshake_ms;
};

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "sy_idle_clients: %s needs a value\n", argv[i]);
      return false;
    }
    std::string_view v = argv[++i];
    bool ok = true;
    if (a == "--host") {
      o->host = std::string(v);
    } else if (a == "--port") {
      ok = ParseInt(v, &o->port);
    } else if (a == "--user") {
      o->user = std::string(v);
    } else if (a == "--password") {
      o->password = std::string(v);
    } else if (a == "--database") {
      o->database = std::string(v);
    } else if (a == "--clients") {
      ok = ParseInt(v, &o->clients);
    } else if (a == "--concurrency") {
      ok = ParseInt(v, &o->concurrency);
    } else if (a == "--timeout") {
      o->timeout_s = std::atof(std::string(v).c_str());
    } else if (a == "--hold") {
      o->hold_s = std::atof(std::string(v).c_str());
    } else {
      std::fprintf(stderr, "sy_idle_clients: unknown option %s\n\n%s", argv[i - 1], kUsage);
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "sy_idle_clients: bad value for %s\n", argv[i - 1]);
      return false;
    }
  }
  if (o->port <= 0 || o->port > 65535 || o->clients < 0 || o->concurrency < 1) {
    std::fprintf(stderr, "%s", kUsage);
    return false;
  }
  return true;
}

void RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

class Driver {
 public:
  explicit Driver(const Options& o) : o_(o), conns_(static_cast<size_t>(o.clients)) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    std::memset(&addr_, 0, sizeof(addr_));
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr) != 1) {
      std::fprintf(stderr, "sy_idle_clients: --host must be an IPv4 address\n");
      std::exit(2);
    }
    wire::fe::StartupMessage sm;
    sm.parameters = {
        {"user", o.user}, {"database", o.database}, {"application_name", "sy_idle_clients"}};
    startup_ = wire::Encode(sm);
  }
  ~Driver() {
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    close(epfd_);
  }

  // Connects and logs in every client; returns once none is in progress.
  void Connect() {
    begin_ = Clock::now();
    const auto deadline = begin_ + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o_.timeout_s));
    size_t next = 0;
    std::vector<epoll_event> events(1024);
    while (true) {
      while (in_flight_ < o_.concurrency && next < conns_.size()) Start(next++);
      if (in_flight_ == 0 && next == conns_.size()) break;
      auto now = Clock::now();
      if (now >= deadline) {
        for (size_t i = 0; i < conns_.size(); ++i) {
          if (conns_[i].state == State::kConnecting || conns_[i].state == State::kHandshake) {
            Fail(i, "login timed out");
          }
        }
        for (; next < conns_.size(); ++next) Fail(next, "not started before the timeout");
        break;
      }
      int wait_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()),
                         std::min(wait_ms, 1000));
      for (int k = 0; k < n; ++k) HandleEvent(events[k].data.u32, events[k].events);
    }
    connect_s_ = std::chrono::duration<double>(Clock::now() - begin_).count();
  }

  // Idles until stdin closes (or --hold passes), counting connections the server drops.
  void Hold() {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLHUP;
    ev.data.u32 = kStdinToken;
    bool watch_stdin = epoll_ctl(epfd_, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == 0;
    const auto start = Clock::now();
    std::vector<epoll_event> events(1024);
    char sink[4096];
    while (true) {
      int timeout_ms = 1000;
      if (o_.hold_s >= 0) {
        double left = o_.hold_s - std::chrono::duration<double>(Clock::now() - start).count();
        if (left <= 0) break;
        timeout_ms = std::min(timeout_ms, static_cast<int>(left * 1000) + 1);
      } else if (!watch_stdin) {
        break;
      }
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout_ms);
      bool stop = false;
      for (int k = 0; k < n; ++k) {
        uint32_t token = events[k].data.u32;
        if (token == kStdinToken) {
          ssize_t r = read(STDIN_FILENO, sink, sizeof(sink));
          if (r <= 0) stop = true;
          continue;
        }
        Conn& c = conns_[token];
        if (c.state != State::kIdle) continue;
        ssize_t r = recv(c.fd, sink, sizeof(sink), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          ++stats_.dropped;
          CloseConn(token, State::kClosed);
        }
        // Data on an idle connection (e.g. a NoticeResponse or ParameterStatus) is ignored.
      }
      if (stop) break;
    }
  }

  // Sends Terminate on every idle connection and closes it.
  void CloseAll() {
    std::string terminate = wire::Encode(wire::fe::Terminate{});
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (conns_[i].fd < 0) continue;
      if (conns_[i].state == State::kIdle) {
        ssize_t ignored = send(conns_[i].fd, terminate.data(), terminate.size(), MSG_NOSIGNAL);
        (void)ignored;
      }
      CloseConn(i, State::kClosed);
    }
  }

  std::string ReadyJson() const {
    return Cat("{\"clients\":", o_.clients, ",\"ready\":", stats_.ready,
               ",\"failed\":", stats_.failed, ",\"connect_s\":", connect_s_,
               ",\"connects_per_s\":", connect_s_ > 0 ? stats_.ready / connect_s_ : 0.0,
               ",\"handshake_p50_ms\":", Percentile(stats_.handshake_ms, 0.50),
               ",\"handshake_p99_ms\":", Percentile(stats_.handshake_ms, 0.99),
               ",\"handshake_max_ms\":", Percentile(stats_.handshake_ms, 1.0),
               ",\"first_error\":\"", JsonEscape(stats_.first_error), "\"}");
  }
  std::string DoneJson() const {
    return Cat("{\"ready\":", stats_.ready, ",\"dropped\":", stats_.dropped, "}");
  }

 private:
  static constexpr uint32_t kStdinToken = 0xffffffffu;

  void Start(size_t i) {
    Conn& c = conns_[i];
    c.started = Clock::now();
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      Fail(i, Cat("socket: ", std::strerror(errno)));
      return;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++in_flight_;
    c.state = State::kConnecting;
    int r = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_));
    if (r < 0 && errno != EINPROGRESS) {
      Fail(i, Cat("connect: ", std::strerror(errno)));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void HandleEvent(uint32_t i, uint32_t events) {
    Conn& c = conns_[i];
    if (c.state == State::kConnecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Fail(i, Cat("connect: ", std::strerror(err)));
        return;
      }
      c.state = State::kHandshake;
      c.out = startup_;
    }
    if (c.state != State::kHandshake) return;
    if (!c.out.empty() && !Flush(i)) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ReadAndProcess(i);
    if (conns_[i].state == State::kHandshake) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (c.out.empty() ? 0u : uint32_t{EPOLLOUT});
      ev.data.u32 = i;
      epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
    }
  }

  bool Flush(uint32_t i) {
    Conn& c = conns_[i];
    while (!c.out.empty()) {
      ssize_t r = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return true;
        Fail(i, Cat("send: ", std::strerror(errno)));
        return false;
      }
      c.out.erase(0, static_cast<size_t>(r));
    }
    return true;
  }

  void ReadAndProcess(uint32_t i) {
    Conn& c = conns_[i];
    char buf[8192];
    while (true) {
      ssize_t r = recv(c.fd, buf, sizeof(buf), 0);
      if (r > 0) {
        c.in.append(buf, static_cast<size_t>(r));
        continue;
      }
      if (r == 0) {
        Process(i);
        if (conns_[i].state == State::kHandshake) Fail(i, "server closed the connection");
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      Fail(i, Cat("recv: ", std::strerror(errno)));
      return;
    }
    Process(i);
    if (conns_[i].state == State::kHandshake && !conns_[i].out.empty()) Flush(i);
  }

  // Handles every complete message received so far.
  void Process(uint32_t i) {
    Conn& c = conns_[i];
    size_t pos = 0;
    while (c.state == State::kHandshake) {
      wire::Frame f = wire::ParseFrame(std::string_view(c.in).substr(pos), 1 << 20);
      if (f.kind == wire::Frame::Kind::kNeedMore) break;
      if (f.kind == wire::Frame::Kind::kError) {
        Fail(i, std::string(f.error.message()));
        return;
      }
      pos += f.size;
      if (!HandleMessage(i, f.type, f.body)) return;
    }
    if (c.state == State::kHandshake) c.in.erase(0, pos);
  }

  bool HandleMessage(uint32_t i, char type, std::string_view body) {
    Conn& c = conns_[i];
    switch (type) {
      case 'R':
        return HandleAuth(i, body);
      case 'E': {
        auto e = wire::Decode<wire::be::ErrorResponse>(body);
        Fail(i, e.ok() ? Cat(e->sqlstate(), " ", e->message()) : "malformed ErrorResponse");
        return false;
      }
      case 'Z': {
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - c.started).count();
        stats_.handshake_ms.push_back(ms);
        ++stats_.ready;
        --in_flight_;
        c.state = State::kIdle;
        std::string().swap(c.in);
        std::string().swap(c.out);
        c.scram.reset();
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u32 = i;
        epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
        return false;
      }
      default:
        return true;  // ParameterStatus, BackendKeyData, NoticeResponse
    }
  }

  bool HandleAuth(uint32_t i, std::string_view body) {
    Conn& c = conns_[i];
    auto auth = wire::Decode<wire::be::Authentication>(body);
    if (!auth.ok()) {
      Fail(i, "malformed Authentication message");
      return false;
    }
    switch (auth->code) {
      case wire::be::Authentication::kOk:
        return true;
      case wire::be::Authentication::kCleartextPassword:
        wire::Encode(wire::fe::PasswordMessage{o_.password}, &c.out);
        return true;
      case wire::be::Authentication::kMd5Password:
        wire::Encode(wire::fe::PasswordMessage{wire::Md5Response(o_.user, o_.password, auth->data)},
                     &c.out);
        return true;
      case wire::be::Authentication::kSasl: {
        if (std::find(auth->mechanisms.begin(), auth->mechanisms.end(), "SCRAM-SHA-256") ==
            auth->mechanisms.end()) {
          Fail(i, "server offers no SCRAM-SHA-256");
          return false;
        }
        c.scram = std::make_unique<wire::ScramClientExchange>(o_.password);
        wire::fe::SaslInitialResponse init;
        init.mechanism = "SCRAM-SHA-256";
        init.data = c.scram->ClientFirst();
        wire::Encode(init, &c.out);
        return true;
      }
      case wire::be::Authentication::kSaslContinue: {
        if (c.scram == nullptr) break;
        auto final_message = c.scram->HandleServerFirst(auth->data);
        if (!final_message.ok()) {
          Fail(i, std::string(final_message.status().message()));
          return false;
        }
        wire::Encode(wire::fe::SaslResponse{*std::move(final_message)}, &c.out);
        return true;
      }
      case wire::be::Authentication::kSaslFinal: {
        if (c.scram == nullptr) break;
        if (auto st = c.scram->HandleServerFinal(auth->data); !st.ok()) {
          Fail(i, std::string(st.message()));
          return false;
        }
        return true;
      }
      default:
        break;
    }
    Fail(i, Cat("unsupported authentication request ", auth->code));
    return false;
  }

  void Fail(size_t i, std::string why) {
    Conn& c = conns_[i];
    if (c.state == State::kConnecting || c.state == State::kHandshake) --in_flight_;
    if (stats_.first_error.empty()) stats_.first_error = std::move(why);
    ++stats_.failed;
    CloseConn(i, State::kFailed);
  }

  void CloseConn(size_t i, State state) {
    Conn& c = conns_[i];
    if (c.fd >= 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
    c.state = state;
    std::string().swap(c.in);
    std::string().swap(c.out);
    c.scram.reset();
  }

  const Options& o_;
  std::vector<Conn> conns_;
  int epfd_ = -1;
  sockaddr_in addr_{};
  std::string startup_;
  int in_flight_ = 0;
  Clock::time_point begin_;
  double connect_s_ = 0;
  Stats stats_;
};

}  // namespace
}  // namespace shardyard::bench

int main(int argc, char** argv) {
  shardyard::bench::Options options;
  if (!shardyard::bench::ParseArgs(argc, argv, &options)) return 2;
  shardyard::bench::RaiseFileLimit();
  shardyard::bench::Driver driver(options);
  driver.Connect();
  std::printf("READY %s\n", driver.ReadyJson().c_str());
  std::fflush(stdout);
  driver.Hold();
  std::printf("DONE %s\n", driver.DoneJson().c_str());
  std::fflush(stdout);
  driver.CloseAll();
  return 0;
}
