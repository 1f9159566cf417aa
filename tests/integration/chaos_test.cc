// A randomized storm on one small pool: many libpq clients mixing queries, transactions,
// pipelines, COPY, errors, cancels, SETs and abrupt disconnects, checked for what must always
// hold. Every answer is the asking client's own, with its own settings; every committed row is
// in the table and no other row is; a cancel stops nobody else's query; and the pool ends with
// idle, clean server connections and a working proxy.
//
// SY_CHAOS_SECONDS (default 8) and SY_CHAOS_SEED (default: random, printed on failure) make a
// longer or repeated run: SY_CHAOS_SECONDS=300 build/tests/integration/chaos_test.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/strings.h"
#include "tests/harness/proxy_test.h"

namespace shardyard::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kClients = 24;

// What each echo reads back besides its marker: the client's own settings.
constexpr std::string_view kSettings =
    "current_setting('application_name'), current_setting('work_mem')";
std::string EchoWithParams() { return Cat("SELECT $1::text, ", kSettings); }
constexpr int kPoolSize = 4;

// What a client can do; each is picked with its weight.
enum class Action {
  kEchoSimple,
  kEchoExtended,
  kCommit,
  kRollback,
  kErrorInTransaction,
  kPipeline,
  kCopy,
  kCopyFail,
  kCancel,
  kSetApplicationName,
  kSetRolledBack,
  kKillInTransaction,
  kKillRunningQuery,
  kKillUnreadResults,
  kKillMidPipeline,
  kKillMidCopy,
  kReconnect,
  kPipelineError,
  kLargeResult,
  kLargeCopy,
  kTerminateInTransaction,
  kStatementTimeout,
  kSetWorkMem,
  kCount,
};

constexpr std::array<std::pair<const char*, int>, static_cast<size_t>(Action::kCount)> kActions{{
    {"echo simple", 20},
    {"echo extended", 12},
    {"commit", 12},
    {"rollback", 4},
    {"error in transaction", 5},
    {"pipeline", 8},
    {"copy", 5},
    {"copy fail", 2},
    {"cancel", 5},
    {"set application_name", 4},
    {"set rolled back", 3},
    {"kill in transaction", 4},
    {"kill running query", 3},
    {"kill unread results", 3},
    {"kill mid-pipeline", 2},
    {"kill mid-copy", 2},
    {"reconnect", 3},
    {"pipeline error", 3},
    {"large result", 1},
    {"large copy", 1},
    {"terminate in transaction", 2},
    {"statement timeout", 2},
    {"set work_mem", 4},
}};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

std::string ErrorOf(const PGresult* r) {
  if (r == nullptr) return "no result";
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return Cat(PQresStatus(PQresultStatus(r)), " ", state ? state : "", " ", PQresultErrorMessage(r));
}

std::string StateOf(const PGresult* r) {
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

// SY_CHAOS_ONLY="kill mid-copy,echo simple" narrows the storm to those actions.
bool Chosen(std::string_view action) {
  const char* only = std::getenv("SY_CHAOS_ONLY");
  if (only == nullptr) return true;
  for (std::string_view rest = only; !rest.empty();) {
    size_t comma = rest.find(',');
    if (rest.substr(0, comma) == action) return true;
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return false;
}

// One client's thread: its connection, what it expects and what went wrong.
class ChaosClient {
 public:
  // `servers_may_die`: the test terminates backends meanwhile, so an action may end with its
  // server connection lost (57P01 or 08006, the client's connection closed). Such an action is
  // not a failure, but rows it wrote and did not see committed may or may not be there.
  ChaosClient(int id, uint64_t seed, std::string conninfo, bool servers_may_die)
      : id_(id), rng_(seed), conninfo_(std::move(conninfo)), servers_may_die_(servers_may_die) {}

  void Run(Clock::time_point end) {
    while (!Reconnect()) {
      if (!failures_.empty() || Clock::now() >= end) return;
      EndLostAction();
    }
    std::vector<int> weights;
    for (const auto& [name, weight] : kActions) weights.push_back(Chosen(name) ? weight : 0);
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    while (Clock::now() < end && failures_.empty()) {
      auto action = static_cast<Action>(pick(rng_));
      ++counts_[static_cast<size_t>(action)];
      current_ = kActions[static_cast<size_t>(action)].first;
      action_first_seq_ = seq_;
      Do(action);
      EndLostAction();
      while (conn_ == nullptr && failures_.empty() && !Reconnect()) EndLostAction();
    }
    conn_.reset();
  }

  const std::vector<std::string>& failures() const { return failures_; }
  const std::set<int>& committed() const { return committed_; }
  // Rows written by actions whose server connection was lost before they could tell.
  const std::set<int>& uncertain() const { return uncertain_; }
  int losses() const { return losses_; }
  const std::string& ActionOf(int seq) const { return seq_actions_.at(seq); }
  const std::array<int, static_cast<size_t>(Action::kCount)>& counts() const { return counts_; }
  int cancels_landed() const { return cancels_landed_; }

 private:
  void Do(Action action) {
    switch (action) {
      case Action::kEchoSimple:
        EchoSimple();
        return;
      case Action::kEchoExtended:
        EchoExtended();
        return;
      case Action::kCommit:
        return Transaction(/*commit=*/true);
      case Action::kRollback:
        return Transaction(/*commit=*/false);
      case Action::kErrorInTransaction:
        return ErrorInTransaction();
      case Action::kPipeline:
        return Pipeline();
      case Action::kCopy:
        return Copy(/*fail=*/false, /*rows=*/3);
      case Action::kCopyFail:
        return Copy(/*fail=*/true, /*rows=*/3);
      case Action::kCancel:
        return Cancel();
      case Action::kSetApplicationName:
        return SetApplicationName();
      case Action::kSetRolledBack:
        return SetRolledBack();
      case Action::kKillInTransaction:
        if (!BeginWithARow()) return;
        return Kill();
      case Action::kKillRunningQuery:
        return SendThenKill("SELECT pg_sleep(0.2)");
      case Action::kKillUnreadResults:
        return SendThenKill("SELECT repeat('x', 500) FROM generate_series(1, 5000)");
      case Action::kKillMidPipeline:
        return KillMidPipeline();
      case Action::kKillMidCopy:
        return KillMidCopy();
      case Action::kReconnect:
        conn_.reset();  // a polite goodbye (Terminate)
        return;
      case Action::kPipelineError:
        return PipelineError();
      case Action::kLargeResult:
        return LargeResult();
      case Action::kLargeCopy:
        return Copy(/*fail=*/false, /*rows=*/5000);
      case Action::kTerminateInTransaction:
        if (!BeginWithARow()) return;
        conn_.reset();  // Terminate with the transaction open: it must roll back
        return;
      case Action::kStatementTimeout:
        return StatementTimeout();
      case Action::kSetWorkMem:
        return SetWorkMem();
      case Action::kCount:
        break;
    }
  }

  template <typename... Args>
  void Fail(const Args&... what) {
    std::string failure = Cat("client ", id_, " (", current_, "): ", what...);
    if (servers_may_die_ && (lost_ || ServerLost(failure))) {
      lost_ = true;  // what follows in this action fails for the same reason
      return;
    }
    failures_.push_back(std::move(failure));
  }

  // The signs of a server connection terminated under the client: PostgreSQL's FATAL relayed,
  // Shardyard's 08006, or libpq finding the connection closed.
  bool ServerLost(std::string_view failure) const {
    for (std::string_view sign : {"57P01", "08006", "server closed the connection",
                                  "terminating connection", "no connection to the server"}) {
      if (failure.find(sign) != std::string_view::npos) return true;
    }
    return conn_ != nullptr && PQstatus(conn_.get()) == CONNECTION_BAD;
  }

  // After an action whose connection was lost: drop the connection, and count the rows it wrote
  // without seeing them committed as uncertain.
  void EndLostAction() {
    if (!lost_) return;
    lost_ = false;
    ++losses_;
    conn_.reset();
    for (int seq = action_first_seq_; seq < seq_; ++seq) {
      if (!committed_.contains(seq)) uncertain_.insert(seq);
    }
  }

  bool Reconnect() {
    conn_.reset(PQconnectdb(Cat(conninfo_, " application_name=", app_name_,
                                " options='-c work_mem=", startup_work_mem_, "'")
                                .c_str()));
    work_mem_ = startup_work_mem_;
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      Fail("connect: ", PQerrorMessage(conn_.get()));
      conn_.reset();
      return false;
    }
    return true;
  }

  int NextSeq() {
    seq_actions_[seq_] = current_;
    return seq_++;
  }
  std::string Marker() { return Cat("c", id_, "-", ++markers_); }
  std::string Insert(int seq) const {
    return Cat("INSERT INTO chaos VALUES (", id_, ", ", seq, ")");
  }

  bool Command(const std::string& sql) {
    PgResult r(PQexec(conn_.get(), sql.c_str()));
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) return true;
    Fail(sql, ": ", ErrorOf(r.get()));
    return false;
  }

  // Expects `state` as the error of `sql`.
  bool CommandFails(const std::string& sql, const std::string& state) {
    PgResult r(PQexec(conn_.get(), sql.c_str()));
    if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR && StateOf(r.get()) == state) return true;
    Fail(sql, ": expected ", state, ", got ", ErrorOf(r.get()));
    return false;
  }

  // An echo is this client's marker, application_name and startup work_mem, nothing else.
  bool CheckEcho(const PGresult* r, const std::string& marker) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 3) {
      Fail("echo ", marker, ": ", ErrorOf(r));
      return false;
    }
    if (marker != PQgetvalue(r, 0, 0)) {
      Fail("asked for ", marker, ", got another answer: ", PQgetvalue(r, 0, 0));
      return false;
    }
    if (app_name_ != PQgetvalue(r, 0, 1)) {
      Fail("application_name is ", PQgetvalue(r, 0, 1), ", expected ", app_name_);
      return false;
    }
    if (work_mem_ != PQgetvalue(r, 0, 2)) {
      Fail("work_mem is ", PQgetvalue(r, 0, 2), ", expected ", work_mem_);
      return false;
    }
    return true;
  }

  bool EchoSimple() {
    std::string marker = Marker();
    PgResult r(PQexec(conn_.get(), Cat("SELECT '", marker, "', ", kSettings).c_str()));
    return CheckEcho(r.get(), marker);
  }

  bool EchoExtended() {
    std::string marker = Marker();
    const char* values[] = {marker.c_str()};
    PgResult r(PQexecParams(conn_.get(), EchoWithParams().c_str(), 1, nullptr, values, nullptr,
                            nullptr, 0));
    return CheckEcho(r.get(), marker);
  }

  void Transaction(bool commit) {
    const int seq = NextSeq();
    if (!Command("BEGIN") || !Command(Insert(seq)) || !EchoExtended()) return;
    if (!Command(commit ? "COMMIT" : "ROLLBACK")) return;
    if (commit) committed_.insert(seq);
  }

  // Opens a transaction and writes a row in it (not committed unless the caller commits).
  bool BeginWithARow() { return Command("BEGIN") && Command(Insert(NextSeq())); }

  void ErrorInTransaction() {
    if (!BeginWithARow()) return;
    if (!CommandFails("SELECT 1/0", "22012")) return;
    if (!CommandFails("SELECT 1", "25P02")) return;  // the transaction is aborted, as it should be
    if (Command("ROLLBACK")) EchoSimple();
  }

  // Sends this client's row `seq` as a parameterized INSERT (pipeline mode: not waited for).
  void SendInsert(PGconn* c, int seq) {
    std::string id = Cat(id_), s = Cat(seq);
    const char* row[] = {id.c_str(), s.c_str()};
    PQsendQueryParams(c, "INSERT INTO chaos VALUES ($1::int, $2::int)", 2, nullptr, row, nullptr,
                      nullptr, 0);
  }

  // Reads the pipeline's Sync and leaves pipeline mode; false (a failure recorded) otherwise.
  bool EndPipeline(PGconn* c) {
    PgResult sync(PQgetResult(c));
    if (PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
      Fail("expected the pipeline's sync, got ", ErrorOf(sync.get()));
      return false;
    }
    if (PQexitPipelineMode(c) != 1) {
      Fail("exit pipeline mode: ", PQerrorMessage(c));
      return false;
    }
    return true;
  }

  void Pipeline() {
    PGconn* c = conn_.get();
    if (PQenterPipelineMode(c) != 1) return Fail("enter pipeline mode: ", PQerrorMessage(c));
    std::vector<std::string> markers;
    for (int i = 0; i < 4; ++i) {
      markers.push_back(Marker());
      const char* values[] = {markers.back().c_str()};
      PQsendQueryParams(c, EchoWithParams().c_str(), 1, nullptr, values, nullptr, nullptr, 0);
    }
    const int seq = NextSeq();
    SendInsert(c, seq);
    if (PQpipelineSync(c) != 1) return Fail("pipeline sync: ", PQerrorMessage(c));
    bool ok = true;
    for (size_t i = 0; i <= markers.size(); ++i) {
      PgResult r(PQgetResult(c));
      if (i < markers.size()) {
        ok = ok && CheckEcho(r.get(), markers[i]);
      } else if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        Fail("pipelined insert: ", ErrorOf(r.get()));
        ok = false;
      }
      PgResult end(PQgetResult(c));  // each query's results end with a null
    }
    if (EndPipeline(c) && ok) committed_.insert(seq);
  }

  void Copy(bool fail, int count) {
    PGconn* c = conn_.get();
    PgResult start(PQexec(c, "COPY chaos FROM STDIN"));
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
      return Fail("COPY FROM STDIN: ", ErrorOf(start.get()));
    }
    const int first = seq_;
    for (int i = 0; i < count; ++i) NextSeq();
    std::string rows;
    for (int seq = first; seq < seq_; ++seq) rows += Cat(id_, "\t", seq, "\n");
    if (PQputCopyData(c, rows.data(), static_cast<int>(rows.size())) != 1 ||
        PQputCopyEnd(c, fail ? "the client gave up" : nullptr) != 1) {
      return Fail("sending COPY data: ", PQerrorMessage(c));
    }
    PgResult r(PQgetResult(c));
    PgResult end(PQgetResult(c));
    if (fail) {
      if (StateOf(r.get()) != "57014") Fail("CopyFail: expected 57014, got ", ErrorOf(r.get()));
      return;
    }
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Fail("COPY: ", ErrorOf(r.get()));
    for (int seq = first; seq < seq_; ++seq) committed_.insert(seq);
  }

  // A failing query in a pipeline: the queries before it answer, the ones after it are skipped
  // up to the Sync, and the connection goes on.
  void PipelineError() {
    PGconn* c = conn_.get();
    if (PQenterPipelineMode(c) != 1) return Fail("enter pipeline mode: ", PQerrorMessage(c));
    std::string first = Marker(), skipped = Marker();
    const char* v1[] = {first.c_str()};
    const char* v2[] = {skipped.c_str()};
    PQsendQueryParams(c, EchoWithParams().c_str(), 1, nullptr, v1, nullptr, nullptr, 0);
    PQsendQueryParams(c, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0);
    PQsendQueryParams(c, EchoWithParams().c_str(), 1, nullptr, v2, nullptr, nullptr, 0);
    if (PQpipelineSync(c) != 1) return Fail("pipeline sync: ", PQerrorMessage(c));
    {
      PgResult r(PQgetResult(c));
      if (!CheckEcho(r.get(), first)) return;
      PgResult end(PQgetResult(c));
    }
    {
      PgResult r(PQgetResult(c));
      if (StateOf(r.get()) != "22012") return Fail("expected 22012, got ", ErrorOf(r.get()));
      PgResult end(PQgetResult(c));
    }
    {
      PgResult r(PQgetResult(c));
      if (PQresultStatus(r.get()) != PGRES_PIPELINE_ABORTED) {
        return Fail("expected the skipped query to be aborted, got ", ErrorOf(r.get()));
      }
      PgResult end(PQgetResult(c));
    }
    if (EndPipeline(c)) EchoExtended();
  }

  // A result far larger than one buffer arrives whole and in order.
  void LargeResult() {
    std::string marker = Marker();
    PgResult r(PQexec(conn_.get(), Cat("SELECT g, repeat('", marker,
                                       "', 500) FROM generate_series(1, 400) g ORDER BY g")
                                       .c_str()));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 400) {
      return Fail("large result: ", ErrorOf(r.get()));
    }
    std::string expected;
    for (int i = 0; i < 500; ++i) expected += marker;
    for (int row = 0; row < 400; ++row) {
      if (std::to_string(row + 1) != PQgetvalue(r.get(), row, 0) ||
          expected != PQgetvalue(r.get(), row, 1)) {
        return Fail("large result: row ", row, " is not this client's");
      }
    }
  }

  // statement_timeout set for one transaction stops that statement and nothing after it.
  void StatementTimeout() {
    if (!Command("BEGIN") || !Command("SET LOCAL statement_timeout = '30ms'")) return;
    if (!CommandFails("SELECT pg_sleep(2)", "57014")) return;
    if (Command("ROLLBACK")) EchoSimple();
  }

  // The client's own query is cancelled or, if the cancel came too early to count, finishes;
  // no other outcome is acceptable, and the connection stays usable either way.
  void Cancel() {
    PGconn* c = conn_.get();
    if (PQsendQuery(c, "SELECT pg_sleep(0.5)") != 1) return Fail("send: ", PQerrorMessage(c));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 40));
    PGcancel* cancel = PQgetCancel(c);
    char err[256];
    if (PQcancel(cancel, err, sizeof(err)) != 1) Fail("PQcancel: ", err);
    PQfreeCancel(cancel);
    std::string outcome = "none";
    while (PGresult* r = PQgetResult(c)) {
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        outcome = "finished";
      } else {
        outcome = StateOf(r) == "57014" ? "cancelled" : ErrorOf(r);
      }
      PQclear(r);
    }
    if (outcome == "cancelled") {
      ++cancels_landed_;
    } else if (outcome != "finished") {
      return Fail("cancelled query ended with ", outcome);
    }
    EchoSimple();
  }

  void SetApplicationName() {
    std::string name = Cat("chaos-", id_, "-", ++names_);
    if (Command(Cat("SET application_name = '", name, "'"))) app_name_ = name;
    EchoExtended();
  }

  // A setting PostgreSQL does not report (no ParameterStatus): Shardyard reads it back after
  // the SET, and every server this client is lent from then on has it.
  void SetWorkMem() {
    std::string value = Cat(1000 + 64 * id_ + 4096 * (1 + ++names_ % 4), "kB");
    if (Command(Cat("SET work_mem = '", value, "'"))) work_mem_ = value;
    EchoSimple();
  }

  // A SET inside a rolled back transaction leaves the old value, for this client and the pool.
  void SetRolledBack() {
    if (!Command("BEGIN") ||
        !Command(Cat("SET application_name = 'rolled-back-", id_, "-", ++names_, "'")) ||
        !Command("SET work_mem = '99999kB'")) {
      return;
    }
    if (Command("ROLLBACK")) EchoSimple();
  }

  // Drops the connection without a goodbye: a reset (RST) or a half-close (FIN), at random.
  void Kill() {
    PGconn* c = conn_.get();
    const int fd = PQsocket(c);
    if (rng_() % 2 == 0) {
      linger abort{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    } else {
      shutdown(fd, SHUT_RDWR);
    }
    conn_.reset();
  }

  void SendThenKill(const char* sql) {
    if (PQsendQuery(conn_.get(), sql) != 1) return Fail("send: ", PQerrorMessage(conn_.get()));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 20));
    Kill();
  }

  void KillMidPipeline() {
    PGconn* c = conn_.get();
    if (PQenterPipelineMode(c) != 1) return Fail("enter pipeline mode: ", PQerrorMessage(c));
    const int seq = NextSeq();
    SendInsert(c, seq);
    PQsendFlushRequest(c);
    PQflush(c);
    Kill();  // no Sync ever came: the insert must not commit
  }

  void KillMidCopy() {
    PGconn* c = conn_.get();
    PgResult start(PQexec(c, "COPY chaos FROM STDIN"));
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
      return Fail("COPY FROM STDIN: ", ErrorOf(start.get()));
    }
    std::string rows = Cat(id_, "\t", NextSeq(), "\n");
    PQputCopyData(c, rows.data(), static_cast<int>(rows.size()));
    PQflush(c);
    Kill();
  }

  const int id_;
  std::mt19937_64 rng_;
  const std::string conninfo_;
  const bool servers_may_die_;
  bool lost_ = false;
  int losses_ = 0;
  int action_first_seq_ = 0;
  std::set<int> uncertain_;
  PgConn conn_;
  std::string app_name_ = Cat("chaos-", id_);
  // Each differs from every other client's.
  const std::string startup_work_mem_ = Cat(1000 + 64 * id_, "kB");
  std::string work_mem_ = startup_work_mem_;  // the current value, after a SET
  std::string current_ = "connect";
  int seq_ = 0;
  int markers_ = 0;
  int names_ = 0;
  int cancels_landed_ = 0;
  std::set<int> committed_;
  std::map<int, std::string> seq_actions_;  // which action wrote each row
  std::array<int, static_cast<size_t>(Action::kCount)> counts_{};
  std::vector<std::string> failures_;
};

// The pooling mode under test, and a pool size for it: transaction mode shares a few server
// connections among all the clients; session mode lends one to each client for its session.
struct ChaosMode {
  const char* name;  // the test's name
  const char* mode;  // pool.mode
  int pool_size;
  bool kill_servers = false;  // also terminate random backends (pg_terminate_backend)
};

class ChaosTest : public ProxyTest, public ::testing::WithParamInterface<ChaosMode> {};

INSTANTIATE_TEST_SUITE_P(Modes, ChaosTest,
                         ::testing::Values(ChaosMode{"transaction", "transaction", kPoolSize},
                                           ChaosMode{"session", "session", kClients + 2},
                                           ChaosMode{"transaction_with_backends_killed",
                                                     "transaction", kPoolSize, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_P(ChaosTest, EveryClientGetsOnlyItsOwnAnswersAndThePoolEndsClean) {
  const ChaosMode mode = GetParam();
  const int seconds = EnvInt("SY_CHAOS_SECONDS", 8);
  const uint64_t seed =
      std::getenv("SY_CHAOS_SEED") ? EnvInt("SY_CHAOS_SEED", 0) : std::random_device{}();
  SCOPED_TRACE(Cat("SY_CHAOS_SEED=", seed));
  ConfigOptions options;
  if (const char* level = std::getenv("SY_CHAOS_LOG_LEVEL")) options.log_level = level;
  auto pool_lines = [&mode](int size) {
    return Cat("  mode: ", mode.mode, "\n  size: ", size, "\n  query_wait_timeout: 60s\n");
  };
  StartWith(pool_lines(mode.pool_size), {}, options);
  ASSERT_TRUE(pg_->ExecSuper("CREATE TABLE chaos (client int, seq int, PRIMARY KEY (client, seq));"
                             "GRANT ALL ON chaos TO app",
                             "app")
                  .ok());

  std::vector<std::unique_ptr<ChaosClient>> clients;
  for (int id = 0; id < kClients; ++id) {
    clients.push_back(std::make_unique<ChaosClient>(
        id, seed * 1000 + id, sy_->ConnInfo("app", "app", "secret"), mode.kill_servers));
  }
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> threads;
  for (auto& client : clients) threads.emplace_back([&client, end] { client->Run(end); });
  // Meanwhile the operator resizes the pool back and forth (SIGHUP reloads): connections of the
  // old size are closed as they come back, never while a client uses them.
  int reloads = 0;
  std::thread operator_thread([&] {
    while (Clock::now() < end) {
      std::this_thread::sleep_for(400ms);
      options.pool = pool_lines(++reloads % 2 == 1 ? mode.pool_size - 1 : mode.pool_size);
      EXPECT_TRUE(sy_->Reload(MakeConfig(*pg_, options)).ok());
    }
    options.pool = pool_lines(mode.pool_size);
    EXPECT_TRUE(sy_->Reload(MakeConfig(*pg_, options)).ok());
  });
  // In the last mode, a DBA also terminates a random backend of the pool now and then.
  int killed = 0;
  std::thread dba_thread([&] {
    if (!mode.kill_servers) return;
    auto dba = pg_->ConnectSuper("app");
    ASSERT_TRUE(dba.ok()) << dba.status();
    while (Clock::now() < end) {
      std::this_thread::sleep_for(150ms);
      auto r = QueryValue(dba->get(),
                          "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM "
                          "pg_stat_activity WHERE usename = 'app' ORDER BY random() LIMIT 1) s");
      if (r.ok()) killed += std::stoi(*r);
    }
  });
  for (auto& t : threads) t.join();
  operator_thread.join();
  dba_thread.join();
  EXPECT_GT(reloads, 0);
  if (mode.kill_servers) {
    EXPECT_GT(killed, 0);
  }

  // Nothing went wrong in any client.
  std::array<int, static_cast<size_t>(Action::kCount)> counts{};
  int cancels_landed = 0;
  for (const auto& client : clients) {
    for (const std::string& failure : client->failures()) ADD_FAILURE() << failure;
    for (size_t i = 0; i < counts.size(); ++i) counts[i] += client->counts()[i];
    cancels_landed += client->cancels_landed();
  }
  // Every kind of action ran (the storm covered what it claims to), and some cancels landed.
  std::string summary;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (Chosen(kActions[i].first)) {
      EXPECT_GT(counts[i], 0) << kActions[i].first << " never ran";
    }
    summary += Cat(kActions[i].first, " ", counts[i], "; ");
  }
  if (Chosen("cancel")) {
    EXPECT_GT(cancels_landed, 0);
  }
  int losses = 0;
  for (const auto& client : clients) losses += client->losses();
  std::cout << "chaos (" << mode.name << "): " << summary << cancels_landed << " cancels landed; "
            << reloads << " reloads; " << killed << " backends killed, " << losses
            << " actions lost their server\n";

  // The table holds exactly the committed rows: none lost, none from a killed or failed client.
  auto super = pg_->ConnectSuper("app");
  ASSERT_TRUE(super.ok()) << super.status();
  auto rows = Query(super->get(), "SELECT client, seq FROM chaos ORDER BY 1, 2");
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::map<int, std::set<int>> found;
  for (const auto& row : *rows) found[std::stoi(row[0])].insert(std::stoi(row[1]));
  for (int id = 0; id < kClients; ++id) {
    const std::set<int>& committed = clients[id]->committed();
    for (int seq : found[id]) {
      if (!committed.contains(seq) && !clients[id]->uncertain().contains(seq)) {
        ADD_FAILURE() << "client " << id << " row " << seq
                      << " is in the table but was never committed (" << clients[id]->ActionOf(seq)
                      << ")";
      }
    }
    for (int seq : committed) {
      if (!found[id].contains(seq)) {
        ADD_FAILURE() << "client " << id << " row " << seq << " was committed but is missing ("
                      << clients[id]->ActionOf(seq) << ")";
      }
    }
  }

  // Every server connection comes back idle (no transaction, no query left running) and within
  // the pool's size.
  std::string activity;
  for (auto deadline = Clock::now() + 15s; Clock::now() < deadline;) {
    auto a = Query(super->get(),
                   "SELECT count(*) FILTER (WHERE state <> 'idle'), count(*) FROM pg_stat_activity "
                   "WHERE usename = 'app'");
    ASSERT_TRUE(a.ok()) << a.status();
    activity = Cat((*a)[0][0], " busy of ", (*a)[0][1]);
    if ((*a)[0][0] == "0") break;
    std::this_thread::sleep_for(100ms);
  }
  if (activity.substr(0, activity.find(' ')) != "0") {
    auto busy = Query(super->get(),
                      "SELECT state, wait_event_type, wait_event, left(query, 60) FROM "
                      "pg_stat_activity WHERE usename = 'app' AND state <> 'idle'");
    ASSERT_TRUE(busy.ok()) << busy.status();
    std::string what;
    for (const auto& row : *busy)
      what += Cat("\n  ", row[0], " | ", row[1], " | ", row[2], " | ", row[3]);
    ADD_FAILURE() << activity << " server connections still busy:" << what << "\nShardyard's log:\n"
                  << sy_->Log();
  }
  EXPECT_LE(CountBackends(*pg_, "app"), mode.pool_size);

  // And the proxy still serves a new client with clean settings.
  PgConn after = Client();
  EXPECT_EQ(*QueryValue(after.get(), "SELECT current_setting('application_name')"), "");
  EXPECT_EQ(*QueryValue(after.get(), "SELECT current_setting('work_mem')"), "4MB");
  EXPECT_EQ(*QueryValue(after.get(), "SELECT count(*) FROM chaos WHERE client < 0"), "0");
}

}  // namespace
}  // namespace shardyard::testing
