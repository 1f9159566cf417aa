// Implements every shardyard-migrate command on top of the planner, linter,
// runner and fleet.
#include "migrate/commands.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/strings.h"
#include "config/config.h"
#include "migrate/fleet.h"
#include "migrate/lint.h"
#include "migrate/schema.h"

namespace shardyard::migrate {

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Command line

absl::Status Usage(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

absl::StatusOr<Duration> DurationFlag(std::string_view flag, std::string_view value) {
  auto d = ParseDuration(value);
  if (!d.ok()) return Usage(Cat(flag, ": ", d.status().message()));
  return *d;
}

}  // namespace

std::string UsageText() {
  return R"(usage: shardyard-migrate --config FILE --database NAME --dir DIR COMMAND [options]

commands:
  new NAME                 create DIR/NNNN_NAME.sql and NNNN_NAME.down.sql
  status [--json]          per shard: current version, pending, failed/dirty, checksum mismatches
  plan                     every pending step on every shard, its lock level and lint findings
  apply [--to V] [--shards 0,2] [--canary N] [--parallel N] [--dry-run]
  rollback [--to V]        run down files, newest first (default: the newest migration only)
  lint FILE...             check migration files (no database needed)
  verify                   compare the schemas of all shards and print every difference
  repair [--dry-run]       drop INVALID indexes, clear failed/dirty states and stale runner locks

options:
  --user NAME              config user to connect as (default: the only user in the config)
  --allow RULE[,RULE]      accept these lint findings (repeatable; "all" accepts every rule)
  --lock-timeout D         lock_timeout of every DDL step (default 1s; directive lock-timeout wins)
  --statement-timeout D    statement_timeout of non-concurrent steps (default 10m)
  --lock-retry-deadline D  keep retrying a step that hits lock_timeout this long (default 10m)
  --max-replica-lag D      pause backfills while a replica lags more (default 5s)
  --lock-ttl D             runner lock expiry without heartbeat (default 30s)
exit codes: 0 done, 1 a migration failed (or was refused), 2 usage or config error,
            3 gave up on lock contention
)";
}

absl::StatusOr<CliOptions> ParseCommandLine(const std::vector<std::string>& args) {
  CliOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (!arg.starts_with("--")) {
      if (o.command.empty()) {
        o.command = arg;
      } else {
        o.args.push_back(arg);
      }
      continue;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name == "--json" || name == "--dry-run" || name == "--help") {
      if (has_value) return Usage(Cat(name, " takes no value"));
      if (name == "--json") o.json = true;
      if (name == "--dry-run") o.dry_run = true;
      if (name == "--help") o.help = true;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) return Usage(Cat(name, " needs a value"));
      value = args[++i];
    }
    auto int_flag = [&](int64_t min, int64_t max, int64_t* out) -> absl::Status {
      if (!ParseInt(value, out) || *out < min || *out > max) {
        return Usage(Cat(name, " must be a number from ", min, " to ", max));
      }
      return absl::OkStatus();
    };
    absl::Status st;
    if (name == "--config") {
      o.config_path = value;
    } else if (name == "--database") {
      o.database = value;
    } else if (name == "--dir") {
      o.dir = value;
    } else if (name == "--user") {
      o.user = value;
    } else if (name == "--to") {
      int64_t v = 0;
      st = int_flag(0, int64_t{1} << 53, &v);
      o.to = v;
    } else if (name == "--shards") {
      o.shards.clear();
      for (std::string_view part : Split(value, ',', /*skip_empty=*/true)) {
        int shard = 0;
        if (!ParseInt(part, &shard) || shard < 0) {
          return Usage(Cat("--shards: \"", part, "\" is not a shard number"));
        }
        if (std::find(o.shards.begin(), o.shards.end(), shard) == o.shards.end()) {
          o.shards.push_back(shard);
        }
      }
      if (o.shards.empty()) return Usage("--shards needs shard numbers, e.g. 0,2");
    } else if (name == "--canary") {
      int64_t v = 0;
      st = int_flag(0, 100000, &v);
      o.canary = static_cast<int>(v);
    } else if (name == "--parallel") {
      int64_t v = 0;
      st = int_flag(1, 1000, &v);
      o.parallel = static_cast<int>(v);
    } else if (name == "--allow") {
      for (std::string_view rule : Split(value, ',', /*skip_empty=*/true)) {
        if (rule != "all" && !IsLintRule(rule)) return Usage(Cat("--allow: unknown rule ", rule));
        o.allow.emplace_back(rule);
      }
    } else if (name == "--lock-timeout" || name == "--statement-timeout" ||
               name == "--lock-retry-deadline" || name == "--max-replica-lag" ||
               name == "--lock-ttl") {
      auto d = DurationFlag(name, value);
      if (!d.ok()) return d.status();
      if (name == "--lock-timeout") o.lock_timeout = *d;
      if (name == "--statement-timeout") o.statement_timeout = *d;
      if (name == "--lock-retry-deadline") o.lock_retry_deadline = *d;
      if (name == "--max-replica-lag") o.max_replica_lag = *d;
      if (name == "--lock-ttl") {
        if (*d < std::chrono::seconds(1)) return Usage("--lock-ttl must be at least 1s");
        o.lock_ttl = *d;
      }
    } else {
      return Usage(Cat("unknown option ", name));
    }
    if (!st.ok()) return st;
  }
  if (o.help) return o;
  static const std::set<std::string> kCommands = {"new",      "status", "plan",   "apply",
                                                  "rollback", "lint",   "verify", "repair"};
  if (o.command.empty()) return Usage("missing COMMAND");
  if (!kCommands.contains(o.command)) return Usage(Cat("unknown command ", o.command));
  if (o.command == "new" && o.args.size() != 1) return Usage("new takes one NAME");
  if (o.command == "lint" && o.args.empty()) return Usage("lint needs FILE arguments");
  if (o.command != "new" && o.command != "lint" && !o.args.empty()) {
    return Usage(Cat(o.command, " takes no arguments (got ", o.args[0], ")"));
  }
  return o;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Shared plumbing

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void Print(std::FILE* f, std::string_view text) { std::fwrite(text.data(), 1, text.size(), f); }

struct ShardState {
  ShardTarget target;
  bool reachable = false;
  std::string error;
  std::vector<StateRow> rows;
  std::optional<LockRow> lock;

  const StateRow* Row(int64_t version) const {
    for (const StateRow& r : rows) {
      if (r.version == version) return &r;
    }
    return nullptr;
  }
  bool LockHeldByLiveRunner() const {
    return lock && lock->expires_in_seconds > 0 && !OwnerIsDeadLocalProcess(lock->owner);
  }
};

struct Pending {
  const Migration* migration;
  const StateRow* row;  // nullptr: never started
};

class Command {
 public:
  Command(const CliOptions& options, std::FILE* out, std::FILE* err)
      : o_(options), out_(out), err_(err), reporter_(out) {}

  int Run() {
    if (o_.command == "new") return New();
    if (o_.command == "lint") return LintFiles();
    if (int code = LoadCluster(); code != kExitDone) return code;
    if (o_.command == "verify") return Verify();
    if (int code = LoadMigrations(); code != kExitDone) return code;
    if (o_.command == "status") return Status();
    if (o_.command == "plan") return Plan(/*dry_run_of_apply=*/false);
    if (o_.command == "apply") return Apply();
    if (o_.command == "rollback") return Rollback();
    if (o_.command == "repair") return Repair();
    return kExitUsage;
  }

 private:
  void Err(std::string_view text) { Print(err_, Cat(text, "\n")); }
  void Out(std::string_view text) { Print(out_, Cat(text, "\n")); }

  int LoadCluster() {
    if (o_.config_path.empty()) return UsageError("--config is required");
    if (o_.database.empty()) return UsageError("--database is required");
    config::LoadResult loaded = config::LoadConfigFile(o_.config_path);
    if (!loaded.config) {
      for (const config::ConfigError& e : loaded.errors) Err(e.ToString());
      return kExitUsage;
    }
    config_ = std::move(*loaded.config);
    const config::Database* db = config_.FindDatabase(o_.database);
    if (!db) return UsageError(Cat("database \"", o_.database, "\" is not in ", o_.config_path));
    const config::User* user = nullptr;
    if (!o_.user.empty()) {
      user = config_.FindUser(o_.user);
      if (!user) return UsageError(Cat("user \"", o_.user, "\" is not in ", o_.config_path));
    } else if (config_.users.size() == 1) {
      user = &config_.users[0];
    } else {
      return UsageError("the config has several users; pick one with --user");
    }
    // A hashed password cannot log in; server_password (or libpq's own sources)
    // must.
    std::string password = user->server_password;
    if (password.empty() && config::ClassifySecret(user->password) == config::SecretKind::kPlain) {
      password = user->password;
    }
    auto conninfo = [&](const config::Endpoint& e) {
      std::map<std::string, std::string> p = {{"host", e.host},
                                              {"port", std::to_string(e.port)},
                                              {"dbname", db->server_database},
                                              {"user", user->name},
                                              {"application_name", "shardyard-migrate"},
                                              {"connect_timeout", "5"}};
      if (!password.empty()) p["password"] = password;
      return BuildConninfo(p);
    };
    std::vector<int> selected = o_.shards;
    if (selected.empty()) {
      for (size_t i = 0; i < db->shards.size(); ++i) selected.push_back(static_cast<int>(i));
    }
    for (int s : selected) {
      if (s >= static_cast<int>(db->shards.size())) {
        return UsageError(
            Cat("--shards: database ", db->name, " has shards 0..", db->shards.size() - 1));
      }
      const config::Shard& shard = db->shards[static_cast<size_t>(s)];
      ShardTarget t;
      t.index = s;
      t.endpoint = shard.primary.ToString();
      t.conninfo = conninfo(shard.primary);
      for (const config::Endpoint& r : shard.replicas) {
        t.replica_endpoints.push_back(r.ToString());
        t.replica_conninfos.push_back(conninfo(r));
      }
      targets_.push_back(std::move(t));
    }
    char host[256] = {0};
    (void)gethostname(host, sizeof(host) - 1);
    settings_.applied_by = Cat(user->name, "@", host);
    settings_.plan.lock_timeout = o_.lock_timeout;
    settings_.plan.statement_timeout = o_.statement_timeout;
    settings_.lock_retry_deadline = o_.lock_retry_deadline;
    settings_.max_replica_lag = o_.max_replica_lag;
    return kExitDone;
  }

  int UsageError(std::string_view what) {
    Err(Cat("shardyard-migrate: ", what));
    return kExitUsage;
  }

  int LoadMigrations() {
    auto migrations = ReadDirectory(o_.dir);
    if (!migrations.ok()) {
      Err(Cat("shardyard-migrate: ", migrations.status().message()));
      return migrations.status().code() == absl::StatusCode::kNotFound ? kExitUsage : kExitFailed;
    }
    migrations_ = std::move(*migrations);
    for (const Migration& m : migrations_) {
      auto plan = PlanScript(m.up, settings_.plan);
      if (!plan.ok()) {
        Err(Cat("shardyard-migrate: ", plan.status().message()));
        return kExitFailed;
      }
      plans_[m.version] = std::move(*plan);
    }
    return kExitDone;
  }

  const Migration* FindMigration(int64_t version) const {
    for (const Migration& m : migrations_) {
      if (m.version == version) return &m;
    }
    return nullptr;
  }

  std::vector<ShardState> ReadStates() {
    std::vector<ShardState> states;
    for (const ShardTarget& t : targets_) {
      ShardState s;
      s.target = t;
      auto session = PgSession::Connect(t.conninfo);
      if (!session.ok()) {
        s.error = std::string(session.status().message());
      } else {
        auto rows = ReadState(**session);
        auto lock = ReadRunnerLock(**session);
        if (!rows.ok() || !lock.ok()) {
          s.error = std::string((!rows.ok() ? rows.status() : lock.status()).message());
        } else {
          s.reachable = true;
          s.rows = std::move(*rows);
          s.lock = *lock;
        }
      }
      states.push_back(std::move(s));
    }
    return states;
  }

  // Highest applied version label ("-" if none).
  std::string CurrentLabel(const ShardState& s) const {
    std::string label = "-";
    for (const StateRow& r : s.rows) {
      if (r.status != MigrationStatus::kApplied) continue;
      const Migration* m = FindMigration(r.version);
      label = m ? m->label : Cat(FormatVersion(r.version), "_", r.name);
    }
    return label;
  }

  // Rows whose file changed or disappeared. Returns the number of problems
  // printed.
  int ReportChecksumProblems(const std::vector<ShardState>& states, bool print) {
    int problems = 0;
    for (const ShardState& s : states) {
      for (const StateRow& r : s.rows) {
        const Migration* m = FindMigration(r.version);
        if (!m) {
          if (r.status != MigrationStatus::kApplied) {
            ++problems;
            if (print) {
              Err(Cat("shard ", s.target.index, ": migration ", FormatVersion(r.version), "_",
                      r.name, " is ", MigrationStatusName(r.status),
                      " but its file is missing from ", o_.dir));
            }
          }
          continue;
        }
        if (ChangedAfterApplied(r, *m)) {
          ++problems;
          if (print) {
            Err(Cat("shard ", s.target.index, ": ", m->up.path, " changed after it was ",
                    r.status == MigrationStatus::kApplied ? "applied" : "started", " (",
                    r.started_at, ")\n  recorded checksum  sha256:", r.checksum,
                    "\n  file checksum      sha256:", m->up.checksum,
                    "\n  restore the file as it was applied (e.g. from version "
                    "control) and put "
                    "the change in a new migration"));
          }
        }
      }
    }
    return problems;
  }

  // Whether the file of a recorded migration changed after some of it was
  // applied. One of which nothing was applied (a failed transaction, or a
  // step-by-step migration stopped before its first step) may still be edited.
  bool ChangedAfterApplied(const StateRow& r, const Migration& m) const {
    if (r.checksum == m.up.checksum) return false;
    bool nothing_applied = r.status != MigrationStatus::kApplied &&
                           r.status != MigrationStatus::kRollingBack &&
                           (plans_.at(m.version).transactional || r.steps_done == 0);
    return !nothing_applied;
  }

  std::vector<Pending> PendingFor(const ShardState& s) const {
    std::vector<Pending> out;
    for (const Migration& m : migrations_) {
      if (o_.to && m.version > *o_.to) break;
      const StateRow* row = s.Row(m.version);
      if (row && row->status == MigrationStatus::kApplied) continue;
      out.push_back({&m, row});
    }
    return out;
  }

  std::vector<const Script*> EarlierScripts(int64_t version) const {
    std::vector<const Script*> out;
    for (const Migration& m : migrations_) {
      if (m.version < version) out.push_back(&m.up);
    }
    return out;
  }

  // Lints the given migrations; prints findings; returns how many are not
  // allowed.
  int LintMigrations(const std::set<int64_t>& versions, std::string* text) {
    int refused = 0;
    for (const Migration& m : migrations_) {
      if (!versions.contains(m.version)) continue;
      std::vector<Finding> findings = Lint(m.up, EarlierScripts(m.version));
      std::vector<Finding> bad = Unallowed(findings, m.up, o_.allow);
      for (const Finding& f : findings) {
        bool allowed = std::find(bad.begin(), bad.end(), f) == bad.end();
        Append(text, "  ", m.up.path, ":", f.line, ": ", f.rule, allowed ? " (allowed)" : "", ": ",
               f.message, "\n");
      }
      refused += static_cast<int>(bad.size());
    }
    return refused;
  }

  std::string DescribeMigration(const Migration& m, const MigrationPlan& plan,
                                const StateRow* row) const {
    std::string out =
        Cat("  ", m.label, " (", plan.transactional ? "one transaction" : "step by step",
            ", lock_timeout ", FormatDuration(plan.lock_timeout), ")");
    if (row) {
      Append(&out, " — resumes: ", MigrationStatusName(row->status), ", ", row->steps_done, "/",
             row->steps_total, " steps done");
    }
    out += "\n";
    for (size_t k = 0; k < plan.steps.size(); ++k) {
      const Step& step = plan.steps[k];
      std::string locks;
      for (const RelationLock& l : step.locks) {
        Append(&locks, locks.empty() ? "" : ", ", LockModeName(l.mode), " on ", l.relation);
      }
      if (locks.empty()) locks = "no table locks";
      if (step.locks_unknown) locks += " (unknown: assumed)";
      Append(&out, "    step ", k + 1, "/", plan.steps.size(), " [", StepKindName(step.kind), "] ",
             locks, "\n");
      for (size_t i = 0; i < step.summaries.size(); ++i) {
        Append(&out, "      line ", step.lines[i], ": ", step.summaries[i], "\n");
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // new, lint

  int New() {
    auto path = CreateMigrationFiles(o_.dir, o_.args[0]);
    if (!path.ok()) {
      Err(Cat("shardyard-migrate: ", path.status().message()));
      return path.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailed;
    }
    std::string down = path->substr(0, path->size() - 4) + ".down.sql";
    Out(Cat("created ", *path, "\ncreated ", down));
    return kExitDone;
  }

  int LintFiles() {
    int refused = 0, broken = 0;
    for (const std::string& file : o_.args) {
      auto script = ReadScript(file);
      if (!script.ok()) {
        Err(std::string(script.status().message()));
        if (script.status().code() == absl::StatusCode::kNotFound) return kExitUsage;
        ++broken;
        continue;
      }
      // Earlier migrations in the same directory count (a CHECK validated
      // before SET NOT NULL).
      std::vector<Script> siblings;
      std::string base =
          file.substr(file.rfind('/') == std::string::npos ? 0 : file.rfind('/') + 1);
      auto name = ParseFileName(base);
      if (name) {
        std::string dir =
            file.rfind('/') == std::string::npos ? "." : file.substr(0, file.rfind('/'));
        if (auto all = ReadDirectory(dir); all.ok()) {
          for (Migration& m : *all) {
            if (m.version < name->version) siblings.push_back(std::move(m.up));
          }
        }
      }
      std::vector<const Script*> earlier;
      for (const Script& s : siblings) earlier.push_back(&s);
      std::vector<Finding> findings = Lint(*script, earlier);
      std::vector<Finding> bad = Unallowed(findings, *script, o_.allow);
      for (const Finding& f : findings) {
        bool allowed = std::find(bad.begin(), bad.end(), f) == bad.end();
        Out(Cat(file, ":", f.line, ": ", f.rule, allowed ? " (allowed)" : "", ": ", f.message));
      }
      refused += static_cast<int>(bad.size());
    }
    if (refused == 0 && broken == 0) Out(Cat(o_.args.size(), " file(s), no findings to fix"));
    return refused > 0 || broken > 0 ? kExitFailed : kExitDone;
  }

  // ---------------------------------------------------------------------------------------------
  // status

  int Status() {
    std::vector<ShardState> states = ReadStates();
    bool problem = false;
    struct Line {
      std::string state;
      std::vector<std::string> notes;
      int pending = 0;
    };
    std::vector<Line> lines;
    for (const ShardState& s : states) {
      Line line;
      if (!s.reachable) {
        line.state = "UNREACHABLE";
        line.notes.push_back(s.error);
        problem = true;
        lines.push_back(std::move(line));
        continue;
      }
      std::vector<std::string> states_text;
      for (const StateRow& r : s.rows) {
        const Migration* m = FindMigration(r.version);
        std::string label = m ? m->label : Cat(FormatVersion(r.version), "_", r.name);
        if (m && ChangedAfterApplied(r, *m)) {
          states_text.push_back(Cat("CHECKSUM MISMATCH ", label));
          line.notes.push_back(Cat(label, ": file changed after it was applied (recorded sha256:",
                                   r.checksum.substr(0, 12),
                                   "…, file sha256:", m->up.checksum.substr(0, 12), "…)"));
          problem = true;
        }
        if (!m && r.status == MigrationStatus::kApplied) {
          line.notes.push_back(Cat(label, ": applied, but its file is not in ", o_.dir));
        }
        if (r.status == MigrationStatus::kApplied) continue;
        std::string steps = Cat("step ", r.steps_done, "/", r.steps_total);
        switch (r.status) {
          case MigrationStatus::kFailed:
            states_text.push_back(Cat("FAILED ", label, " (", steps, " done)"));
            problem = true;
            break;
          case MigrationStatus::kStopped:
            states_text.push_back(Cat("stopped ", label, " (", steps, " done)"));
            break;
          case MigrationStatus::kRunning:
            if (s.LockHeldByLiveRunner()) {
              states_text.push_back(Cat("running ", label, " (", steps, " done)"));
            } else {
              states_text.push_back(Cat("DIRTY ", label, " (", steps, " done; runner gone)"));
              problem = true;
            }
            break;
          case MigrationStatus::kRollingBack:
            states_text.push_back(
                Cat(s.LockHeldByLiveRunner() ? "rolling back " : "DIRTY rollback ", label, " (",
                    steps, " done)"));
            if (!s.LockHeldByLiveRunner()) problem = true;
            break;
          case MigrationStatus::kApplied:
            break;
        }
        if (r.status == MigrationStatus::kRunning && r.backfill_after) {
          line.notes.push_back(Cat(label, ": backfill at key ", *r.backfill_after, ", ",
                                   r.backfill_rows, " rows done"));
        }
        if (!r.error.empty()) line.notes.push_back(Cat(label, ": ", r.error));
      }
      line.pending = static_cast<int>(PendingFor(s).size());
      line.state = states_text.empty() ? "ok" : Join(states_text, "; ");
      if (s.lock && s.LockHeldByLiveRunner()) {
        line.notes.push_back(
            Cat("runner lock held by ", s.lock->owner, " since ", s.lock->acquired_at));
      }
      lines.push_back(std::move(line));
    }

    if (o_.json) {
      std::string j = Cat("{\"database\":", JsonString(o_.database), ",\"shards\":[");
      for (size_t i = 0; i < states.size(); ++i) {
        const ShardState& s = states[i];
        if (i) j += ",";
        Append(&j, "{\"shard\":", s.target.index, ",\"endpoint\":", JsonString(s.target.endpoint),
               ",\"reachable\":", s.reachable ? "true" : "false");
        if (!s.reachable) {
          Append(&j, ",\"error\":", JsonString(s.error), "}");
          continue;
        }
        Append(&j, ",\"current\":", JsonString(CurrentLabel(s)),
               ",\"state\":", JsonString(lines[i].state), ",\"pending\":[");
        bool first = true;
        for (const Pending& p : PendingFor(s)) {
          Append(&j, first ? "" : ",", JsonString(p.migration->label));
          first = false;
        }
        j += "],\"migrations\":[";
        for (size_t r = 0; r < s.rows.size(); ++r) {
          const StateRow& row = s.rows[r];
          const Migration* m = FindMigration(row.version);
          Append(&j, r ? "," : "", "{\"version\":", row.version, ",\"name\":", JsonString(row.name),
                 ",\"status\":", JsonString(MigrationStatusName(row.status)),
                 ",\"steps_done\":", row.steps_done, ",\"steps_total\":", row.steps_total,
                 ",\"checksum\":", JsonString(row.checksum), ",\"checksum_matches\":",
                 m ? (m->up.checksum == row.checksum ? "true" : "false") : "null",
                 ",\"started_at\":", JsonString(row.started_at),
                 ",\"finished_at\":", JsonString(row.finished_at),
                 ",\"duration_seconds\":", absl::StrFormat("%.3f", row.duration_seconds),
                 ",\"applied_by\":", JsonString(row.applied_by),
                 ",\"backfill_rows\":", row.backfill_rows, ",\"error\":", JsonString(row.error),
                 "}");
        }
        j += "],\"runner_lock\":";
        if (s.lock) {
          Append(&j, "{\"owner\":", JsonString(s.lock->owner),
                 ",\"acquired_at\":", JsonString(s.lock->acquired_at),
                 ",\"expires_in_seconds\":", absl::StrFormat("%.1f", s.lock->expires_in_seconds),
                 "}");
        } else {
          j += "null";
        }
        j += "}";
      }
      j += "]}";
      Out(j);
      return problem ? kExitFailed : kExitDone;
    }

    Out(Cat("database ", o_.database, ": ", states.size(), " shard(s), ", migrations_.size(),
            " migration(s) in ", o_.dir));
    Out(absl::StrFormat("%-6s %-22s %-28s %-8s %s", "shard", "endpoint", "current", "pending",
                        "state"));
    for (size_t i = 0; i < states.size(); ++i) {
      const ShardState& s = states[i];
      Out(absl::StrFormat("%-6d %-22s %-28s %-8s %s", s.target.index, s.target.endpoint,
                          s.reachable ? CurrentLabel(s) : "?",
                          s.reachable ? std::to_string(lines[i].pending) : "?", lines[i].state));
    }
    for (size_t i = 0; i < states.size(); ++i) {
      for (const std::string& note : lines[i].notes) {
        Out(Cat("shard ", states[i].target.index, ": ", note));
      }
    }
    return problem ? kExitFailed : kExitDone;
  }

  // ---------------------------------------------------------------------------------------------
  // plan / apply

  // Shared checks of plan and apply. Returns kExitDone to go on.
  int Preflight(const std::vector<ShardState>& states) {
    for (const ShardState& s : states) {
      if (!s.reachable) {
        Err(Cat("shard ", s.target.index, " (", s.target.endpoint, ") is unreachable: ", s.error));
        return kExitFailed;
      }
    }
    if (ReportChecksumProblems(states, /*print=*/true) > 0) {
      Err("refusing to run: applied migrations changed (see above)");
      return kExitFailed;
    }
    return kExitDone;
  }

  int Plan(bool dry_run_of_apply) {
    std::vector<ShardState> states = ReadStates();
    if (int code = Preflight(states); code != kExitDone) return code;
    // Shards with the same pending work share one description.
    std::map<std::string, std::vector<int>> groups;
    std::set<int64_t> versions;
    for (const ShardState& s : states) {
      std::string text;
      for (const Pending& p : PendingFor(s)) {
        versions.insert(p.migration->version);
        if (p.row && p.row->status == MigrationStatus::kRollingBack) {
          Append(&text, "  ", p.migration->label, ": its rollback was interrupted; run rollback\n");
          continue;
        }
        text += DescribeMigration(*p.migration, plans_.at(p.migration->version), p.row);
      }
      groups[text].push_back(s.target.index);
    }
    Out(Cat(dry_run_of_apply ? "dry run: nothing will be changed\n" : "", "plan for database ",
            o_.database, " (canary: first ", o_.canary, " shard(s), then ", o_.parallel,
            " at a time):"));
    for (const auto& [text, shards] : groups) {
      std::vector<std::string> names;
      for (int s : shards) names.push_back(std::to_string(s));
      Out(Cat("shard", shards.size() > 1 ? "s " : " ", Join(names, ","), ": ",
              text.empty() ? "up to date" : "\n" + text.substr(0, text.size() - 1)));
    }
    std::string lint;
    int refused = LintMigrations(versions, &lint);
    if (!lint.empty()) Out(Cat("lint:\n", lint.substr(0, lint.size() - 1)));
    if (refused > 0) {
      Out(Cat("apply would refuse: ", refused,
              " lint finding(s); make the migration safe or accept with "
              "--allow RULE"));
      return kExitFailed;
    }
    return kExitDone;
  }

  // Takes the runner lock on every shard, renews it while the run lasts,
  // releases it at the end.
  class RunnerLocks {
   public:
    RunnerLocks(Duration ttl, Reporter& reporter, StopSignal& stop)
        : ttl_(std::chrono::duration_cast<std::chrono::seconds>(ttl)),
          owner_(MakeLockOwner()),
          reporter_(reporter),
          stop_(stop) {}
    ~RunnerLocks() {
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_ = true;
      }
      cv_.notify_all();
      if (heartbeat_.joinable()) heartbeat_.join();
      for (auto& [shard, session] : sessions_) (void)ReleaseRunnerLock(*session, owner_);
    }

    absl::Status AcquireAll(const std::vector<ShardTarget>& targets) {
      for (const ShardTarget& t : targets) {
        auto session = PgSession::Connect(t.conninfo);
        if (!session.ok()) return session.status();
        if (auto st = EnsureStateTables(**session); !st.ok()) return st;
        if (auto st = AcquireRunnerLock(**session, owner_, ttl_); !st.ok()) {
          return absl::Status(st.code(), Cat("shard ", t.index, ": ", st.message()));
        }
        sessions_.emplace_back(t.index, std::move(*session));
      }
      heartbeat_ = std::thread([this] { Heartbeat(); });
      return absl::OkStatus();
    }

   private:
    void Heartbeat() {
      std::unique_lock<std::mutex> lock(mu_);
      while (!done_) {
        cv_.wait_for(lock,
                     std::max<std::chrono::milliseconds>(ttl_ / 3, std::chrono::milliseconds(300)));
        if (done_) return;
        for (auto& [shard, session] : sessions_) {
          auto renewed = RenewRunnerLock(*session, owner_, ttl_);
          if (renewed.ok() && *renewed) continue;
          reporter_.Line(Cat("shard ", shard, ": lost the runner lock (",
                             renewed.ok() ? "taken over after expiry" : renewed.status().message(),
                             "); stopping after the current step"));
          stop_.FleetFailed();
        }
      }
    }

    std::chrono::seconds ttl_;
    std::string owner_;
    Reporter& reporter_;
    StopSignal& stop_;
    std::vector<std::pair<int, std::unique_ptr<PgSession>>> sessions_;
    std::thread heartbeat_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
  };

  // Runs `work` on each shard with a pending list under the runner lock, canary
  // first.
  int RunOnFleet(
      const std::vector<ShardState>& states,
      const std::function<absl::Status(ShardRunner&, const ShardState&, ShardOutcome&)>& work,
      const std::set<int>& shards_with_work) {
    std::vector<ShardTarget> locked;
    for (const ShardState& s : states) {
      if (shards_with_work.contains(s.target.index)) locked.push_back(s.target);
    }
    StopSignal stop;
    RunnerLocks locks(o_.lock_ttl, reporter_, stop);
    if (auto st = locks.AcquireAll(locked); !st.ok()) {
      Err(Cat("shardyard-migrate: ", st.message()));
      return st.code() == absl::StatusCode::kAborted ? kExitLockContention : kExitFailed;
    }
    FleetOrder order;
    order.canary = o_.canary;
    order.parallel = o_.parallel;
    for (const ShardTarget& t : locked) order.shards.push_back(t.index);
    NoTrafficCoordination coordinator;
    auto job = [&](int shard) {
      const ShardState& state =
          *std::find_if(states.begin(), states.end(),
                        [&](const ShardState& s) { return s.target.index == shard; });
      ShardOutcome outcome;
      outcome.shard = shard;
      outcome.endpoint = state.target.endpoint;
      outcome.from = CurrentLabel(state);
      outcome.to = outcome.from;
      Clock::time_point start = Clock::now();
      ShardRunner runner(state.target, settings_, reporter_, stop, coordinator);
      absl::Status st = runner.Connect();
      if (st.ok()) st = work(runner, state, outcome);
      outcome.elapsed = Clock::now() - start;
      outcome.retries = runner.retries();
      outcome.rows_backfilled = runner.rows_backfilled();
      if (st.ok()) {
        outcome.result = ShardResult::kDone;
      } else {
        outcome.error = std::string(st.message());
        outcome.result = st.code() == absl::StatusCode::kCancelled ? ShardResult::kStopped
                         : st.code() == absl::StatusCode::kAborted ? ShardResult::kGaveUp
                                                                   : ShardResult::kFailed;
      }
      return outcome;
    };
    std::vector<ShardOutcome> outcomes = RunFleet(order, job, stop);
    for (ShardOutcome& o : outcomes) {
      if (o.endpoint.empty()) {
        for (const ShardState& s : states) {
          if (s.target.index == o.shard) {
            o.endpoint = s.target.endpoint;
            o.from = o.to = CurrentLabel(s);
          }
        }
      }
    }
    Out(Cat("\nsummary:\n", SummaryTable(outcomes)));
    int code = ExitCodeFor(outcomes);
    if (code == kExitLockContention) {
      Out("gave up on lock contention: re-run apply later (or with a longer "
          "--lock-retry-deadline)");
    } else if (code != kExitDone) {
      Out("not finished: fix the cause (status shows it) and re-run; every "
          "shard resumes where "
          "it stopped");
    }
    return code;
  }

  int Apply() {
    if (o_.dry_run) return Plan(/*dry_run_of_apply=*/true);
    std::vector<ShardState> states = ReadStates();
    if (int code = Preflight(states); code != kExitDone) return code;
    std::set<int64_t> versions;
    std::set<int> shards_with_work;
    for (const ShardState& s : states) {
      for (const Pending& p : PendingFor(s)) {
        versions.insert(p.migration->version);
        shards_with_work.insert(s.target.index);
        if (p.row && p.row->status == MigrationStatus::kRollingBack) {
          Err(Cat("shard ", s.target.index, ": the rollback of ", p.migration->label,
                  " was interrupted; run rollback again before apply"));
          return kExitFailed;
        }
      }
    }
    std::string lint;
    int refused = LintMigrations(versions, &lint);
    if (refused > 0) {
      Err(Cat("lint:\n", lint, "refusing to apply: ", refused,
              " lint finding(s); make the migration safe or accept with "
              "--allow RULE"));
      return kExitFailed;
    }
    if (!lint.empty()) Out(Cat("lint (allowed):\n", lint.substr(0, lint.size() - 1)));
    if (shards_with_work.empty()) {
      Out(Cat("nothing to apply: ", states.size(), " shard(s) up to date"));
      return kExitDone;
    }
    return RunOnFleet(
        states,
        [&](ShardRunner& runner, const ShardState& state, ShardOutcome& outcome) -> absl::Status {
          for (const Pending& p : PendingFor(state)) {
            absl::Status st = runner.Apply(*p.migration, plans_.at(p.migration->version), p.row);
            if (!st.ok()) return st;
            ++outcome.migrations;
            outcome.to = p.migration->label;
          }
          return absl::OkStatus();
        },
        shards_with_work);
  }

  // ---------------------------------------------------------------------------------------------
  // rollback

  int Rollback() {
    std::vector<ShardState> states = ReadStates();
    if (int code = Preflight(states); code != kExitDone) return code;
    int64_t newest = 0;
    for (const ShardState& s : states) {
      for (const StateRow& r : s.rows) newest = std::max(newest, r.version);
    }
    if (newest == 0) {
      Out("nothing to roll back");
      return kExitDone;
    }
    // Without --to: only the newest migration recorded on any shard.
    int64_t to = o_.to ? *o_.to : newest - 1;
    std::map<int64_t, MigrationPlan> down_plans;
    std::set<int> shards_with_work;
    for (const ShardState& s : states) {
      for (const StateRow& r : s.rows) {
        if (r.version <= to) continue;
        shards_with_work.insert(s.target.index);
        const Migration* m = FindMigration(r.version);
        if (!m) {
          Err(Cat("cannot roll back ", FormatVersion(r.version), "_", r.name,
                  ": its file is missing from ", o_.dir));
          return kExitFailed;
        }
        if (down_plans.contains(r.version)) continue;
        if (!m->down) {
          if (r.status == MigrationStatus::kApplied || r.steps_done > 0) {
            Err(Cat("cannot roll back ", m->label, ": ", m->label, ".down.sql does not exist"));
            return kExitFailed;
          }
          down_plans[r.version] = MigrationPlan{};
          continue;
        }
        auto plan = PlanScript(*m->down, settings_.plan);
        if (!plan.ok()) {
          Err(std::string(plan.status().message()));
          return kExitFailed;
        }
        for (const Finding& f : Lint(*m->down)) {
          Out(Cat("warning: ", m->down->path, ":", f.line, ": ", f.rule, ": ", f.message));
        }
        down_plans[r.version] = std::move(*plan);
      }
    }
    if (shards_with_work.empty()) {
      Out("nothing to roll back");
      return kExitDone;
    }
    Out(o_.to ? Cat("rolling back every migration after ", FormatVersion(to))
              : Cat("rolling back ",
                    FindMigration(newest) ? FindMigration(newest)->label : FormatVersion(newest)));
    return RunOnFleet(
        states,
        [&](ShardRunner& runner, const ShardState& state, ShardOutcome& outcome) -> absl::Status {
          for (auto it = state.rows.rbegin(); it != state.rows.rend(); ++it) {
            const StateRow& r = *it;
            if (r.version <= to) continue;
            const Migration& m = *FindMigration(r.version);
            const MigrationPlan& up = plans_.at(r.version);
            bool nothing_applied = r.status != MigrationStatus::kApplied &&
                                   r.status != MigrationStatus::kRollingBack &&
                                   (up.transactional || r.steps_done == 0);
            absl::Status st = nothing_applied ? DeleteState(runner.session(), r.version)
                                              : runner.Rollback(m, down_plans.at(r.version), r);
            if (!st.ok()) return st;
            reporter_.Line(Cat("shard ", state.target.index, ": rolled back ", m.label));
            ++outcome.migrations;
          }
          outcome.to = "-";
          for (const StateRow& r : state.rows) {
            if (r.version <= to && r.status == MigrationStatus::kApplied) {
              const Migration* m = FindMigration(r.version);
              outcome.to = m ? m->label : FormatVersion(r.version);
            }
          }
          return absl::OkStatus();
        },
        shards_with_work);
  }

  // ---------------------------------------------------------------------------------------------
  // verify

  int Verify() {
    std::vector<std::vector<std::string>> snapshots;
    for (const ShardTarget& t : targets_) {
      auto session = PgSession::Connect(t.conninfo);
      if (!session.ok()) {
        Err(Cat("shard ", t.index, " (", t.endpoint,
                ") is unreachable: ", session.status().message()));
        return kExitFailed;
      }
      auto snapshot = SnapshotSchema(**session);
      if (!snapshot.ok()) {
        Err(Cat("shard ", t.index, ": ", snapshot.status().message()));
        return kExitFailed;
      }
      snapshots.push_back(std::move(*snapshot));
    }
    if (targets_.empty()) return kExitDone;
    int differing = 0;
    Out(Cat("shard ", targets_[0].index, " (", targets_[0].endpoint, "): reference, ",
            snapshots[0].size(), " objects"));
    for (size_t i = 1; i < targets_.size(); ++i) {
      SchemaDiff diff = DiffSchemas(snapshots[0], snapshots[i]);
      if (diff.empty()) {
        Out(Cat("shard ", targets_[i].index, " (", targets_[i].endpoint, "): identical"));
        continue;
      }
      ++differing;
      Out(Cat("shard ", targets_[i].index, " (", targets_[i].endpoint,
              "): ", diff.missing.size() + diff.extra.size(), " difference(s)"));
      for (const std::string& line : diff.missing) {
        Out(Cat("  - ", line, "   (on shard ", targets_[0].index, ", missing here)"));
      }
      for (const std::string& line : diff.extra) {
        Out(Cat("  + ", line, "   (here, not on shard ", targets_[0].index, ")"));
      }
    }
    Out(differing == 0 ? "schemas identical on every shard"
                       : Cat(differing, " shard(s) differ from shard ", targets_[0].index));
    return differing == 0 ? kExitDone : kExitFailed;
  }

  // ---------------------------------------------------------------------------------------------
  // repair

  int Repair() {
    std::string owner = MakeLockOwner();
    std::chrono::seconds ttl = std::chrono::duration_cast<std::chrono::seconds>(o_.lock_ttl);
    int code = kExitDone;
    for (const ShardTarget& t : targets_) {
      std::string where = Cat("shard ", t.index, " (", t.endpoint, ")");
      auto session = PgSession::Connect(t.conninfo);
      if (!session.ok()) {
        Err(Cat(where, " is unreachable: ", session.status().message()));
        code = kExitFailed;
        continue;
      }
      PgSession& s = **session;
      auto stale = o_.dry_run ? absl::StatusOr<bool>(false) : ClearStaleRunnerLock(s);
      if (stale.ok() && *stale) Out(Cat(where, ": removed a stale runner lock"));
      bool have_tables = false;
      if (auto exists = s.Exec("SELECT to_regclass('public.shardyard_migrate_lock') IS "
                               "NOT NULL");
          exists.ok()) {
        have_tables = exists->Text(0, 0) == "t";
      }
      if (have_tables && !o_.dry_run) {
        if (auto st = AcquireRunnerLock(s, owner, ttl); !st.ok()) {
          Err(Cat(where, ": ", st.message()));
          code = st.code() == absl::StatusCode::kAborted ? kExitLockContention : kExitFailed;
          continue;
        }
      }
      auto invalid = s.Exec(
          "SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text "
          "FROM pg_index i "
          "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON "
          "n.oid = c.relnamespace "
          "WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', "
          "'information_schema') "
          "AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p "
          "WHERE p.index_relid = i.indexrelid) ORDER BY 1");
      if (!invalid.ok()) {
        Err(Cat(where, ": ", invalid.status().message()));
        code = kExitFailed;
      } else {
        for (size_t r = 0; r < invalid->size(); ++r) {
          std::string index = invalid->Text(r, 0);
          if (o_.dry_run) {
            Out(Cat(where, ": would drop INVALID index ", index, " on ", invalid->Text(r, 1)));
            continue;
          }
          auto st = s.Run(Cat("DROP INDEX CONCURRENTLY IF EXISTS ", index));
          Out(Cat(where, st.ok() ? ": dropped INVALID index " : ": could not drop INVALID index ",
                  index, " on ", invalid->Text(r, 1), st.ok() ? "" : Cat(": ", st.message())));
          if (!st.ok()) code = kExitFailed;
        }
      }
      auto rows = ReadState(s);
      if (rows.ok()) {
        for (const StateRow& r : *rows) {
          bool failed = r.status == MigrationStatus::kFailed;
          bool dirty = r.status == MigrationStatus::kRunning;  // we hold the lock: nobody runs it
          if (!failed && !dirty) continue;
          const Migration* m = FindMigration(r.version);
          std::string label = m ? m->label : Cat(FormatVersion(r.version), "_", r.name);
          bool forget = r.steps_done == 0;
          if (o_.dry_run) {
            Out(Cat(where, ": would clear ", failed ? "failed " : "dirty ", label));
            continue;
          }
          absl::Status st = forget ? DeleteState(s, r.version)
                                   : MarkStatus(s, r.version, MigrationStatus::kStopped, "");
          Out(Cat(where, ": cleared ", failed ? "failed " : "dirty ", label,
                  forget ? " (nothing of it was applied: pending again)"
                         : Cat(" (", r.steps_done, "/", r.steps_total,
                               " steps done: apply resumes at the next step)"),
                  st.ok() ? "" : Cat(": ", st.message())));
          if (!st.ok()) code = kExitFailed;
        }
      }
      if (have_tables && !o_.dry_run) (void)ReleaseRunnerLock(s, owner);
    }
    if (code == kExitDone) Out("repair done");
    return code;
  }

  const CliOptions& o_;
  std::FILE* out_;
  std::FILE* err_;
  Reporter reporter_;
  config::Config config_;
  std::vector<ShardTarget> targets_;
  RunSettings settings_;
  std::vector<Migration> migrations_;
  std::map<int64_t, MigrationPlan> plans_;
};

}  // namespace

int RunCommand(const CliOptions& options, std::FILE* out, std::FILE* err) {
  if (options.help) {
    Print(out, UsageText());
    return kExitDone;
  }
  return Command(options, out, err).Run();
}

}  // namespace shardyard::migrate
