// Implements the real-driver fixture: starting the stack, running a driver program, checking it.
#include "tests/drivers/driver_fixture.h"

#include <gmock/gmock.h>

#include <chrono>
#include <filesystem>

#include "common/strings.h"
#include "tests/integration/pooled_servers_check.h"

namespace shardyard::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const char* DriverName(Driver driver) {
  switch (driver) {
    case Driver::kPsycopg:
      return "psycopg";
    case Driver::kNodePg:
      return "node-postgres";
    case Driver::kJdbc:
      return "JDBC";
  }
  return "?";
}

// The last `lines` lines of `text`.
std::string Tail(const std::string& text, int lines) {
  size_t at = text.size();
  for (int n = 0; n <= lines && at != std::string::npos && at > 0; ++n) {
    at = text.rfind('\n', at - 1);
  }
  return at == std::string::npos ? text : text.substr(at + 1);
}

}  // namespace

void DriverTest::CheckDriverAvailable(Driver driver) {
  const std::string install = "; run scripts/install-deps";
  switch (driver) {
    case Driver::kPsycopg: {
      CommandResult r = RunCommand({"/usr/bin/python3", "-c", "import psycopg"});
      ASSERT_EQ(r.exit_code, 0) << "psycopg is missing (Debian python3-psycopg)" << install << "\n"
                                << r.output;
      break;
    }
    case Driver::kNodePg:
      ASSERT_TRUE(std::filesystem::exists(Cat(DRIVERS_DIR, "/node_modules/pg/package.json")))
          << "node-postgres is missing from " << DRIVERS_DIR << "/node_modules" << install;
      ASSERT_EQ(RunCommand({"node", "--version"}).exit_code, 0) << "node is missing" << install;
      break;
    case Driver::kJdbc:
      ASSERT_TRUE(std::filesystem::exists(JDBC_JAR))
          << JDBC_JAR << " is missing (Debian libpostgresql-jdbc-java)" << install;
      ASSERT_TRUE(std::filesystem::exists(Cat(JDBC_CLASSES_DIR, "/JdbcDriverTest.class")))
          << "JdbcDriverTest.class was not built into " << JDBC_CLASSES_DIR
          << " (javac missing at configure time?)" << install << ", then re-run cmake";
      break;
  }
}

std::vector<std::string> DriverTest::Command(Driver driver, const std::string& scenario) const {
  // A backstop: each program also stops itself, with a stack dump, after 90 s.
  std::vector<std::string> argv = {"timeout", "-k", "5", "110"};
  switch (driver) {
    case Driver::kPsycopg:
      argv.insert(argv.end(), {"/usr/bin/python3", Cat(DRIVERS_DIR, "/psycopg_driver.py")});
      break;
    case Driver::kNodePg:
      argv.insert(argv.end(), {"node", "--no-deprecation", Cat(DRIVERS_DIR, "/node_pg_driver.js")});
      break;
    case Driver::kJdbc:
      // The JVM's zone is what pgjdbc sends as TimeZone; the session scenario relies on it.
      argv.insert(argv.end(), {"java", "-Duser.timezone=America/Sao_Paulo", "-XX:+UseSerialGC",
                               "-XX:TieredStopAtLevel=1", "-cp",
                               Cat(JDBC_CLASSES_DIR, ":", JDBC_JAR), "JdbcDriverTest"});
      break;
  }
  argv.push_back(scenario);
  return argv;
}

bool DriverTest::StartPostgres(Driver driver) {
  CheckDriverAvailable(driver);
  if (HasFatalFailure()) return false;
  auto pg = StartAppServer();
  EXPECT_TRUE(pg.ok()) << pg.status();
  if (!pg.ok()) return false;
  pg_ = *std::move(pg);
  return true;
}

std::string DriverTest::RunScenario(Driver driver, const std::string& scenario,
                                    const Stack& stack) {
  if (!StartPostgres(driver)) return "";
  ConfigOptions options;
  if (stack.more_users) {
    for (const auto& [user, password] : {std::pair{"md5user", "md5pw"}, {"trustuser", "trustpw"}}) {
      absl::Status st = pg_->CreateUser(user, password);
      EXPECT_TRUE(st.ok()) << st;
      if (!st.ok()) return "";
    }
    options.users =
        "  - {name: app, password: secret}\n"
        "  - {name: md5user, password: md5pw, auth_type: md5}\n"
        "  - {name: trustuser, password: trustpw, auth_type: trust}\n";
  }
  options.pool =
      Cat("  size: ", stack.size, "\n  mode: ", stack.mode, "\n", stack.extra_pool_lines);
  auto sy = Shardyard::Start(MakeConfig(*pg_, options));
  EXPECT_TRUE(sy.ok()) << sy.status();
  if (!sy.ok()) return "";
  sy_ = *std::move(sy);

  std::map<std::string, std::string> env = {
      {"PGHOST", "127.0.0.1"},
      {"PGPORT", std::to_string(sy_->port())},
      {"PGUSER", "app"},
      {"PGPASSWORD", "secret"},
      {"PGDATABASE", "app"},
      {"PGCONNECT_TIMEOUT", "10"},
      {"SY_MODE", stack.mode},
      {"SY_POOL_SIZE", std::to_string(stack.size)},
      {"PYTHONDONTWRITEBYTECODE", "1"},
  };
  auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand(Command(driver, scenario), env);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string log = sy_->Log();
  std::string context =
      Cat("\n--- ", DriverName(driver), " ", scenario, " (", seconds, "s) output:\n", r.output,
          "\n--- shardyard log (tail):\n", Tail(log, 40));
  if (r.exit_code != 0 || r.output.find(Cat("PASS ", scenario)) == std::string::npos) {
    ADD_FAILURE() << DriverName(driver) << " scenario " << scenario << " failed (exit code "
                  << r.exit_code << ")" << context;
  } else {
    std::printf("%s %s: %.2fs\n%s", DriverName(driver), scenario.c_str(), seconds,
                Tail(r.output, 5).c_str());
  }
  EXPECT_THAT(log, Not(HasSubstr("protocol violation"))) << context;
  if (stack.mode == "transaction") {
    EXPECT_LE(CountBackends(*pg_, "app"), stack.size) << "server connections after the run";
  }
  return r.output;
}

std::string DriverTest::RunDirect(Driver driver, const std::string& scenario, const Stack& stack) {
  if (!StartPostgres(driver)) return "";
  std::map<std::string, std::string> env = {
      {"PGHOST", "127.0.0.1"}, {"PGPORT", std::to_string(pg_->port())},
      {"PGUSER", "app"},       {"PGPASSWORD", "secret"},
      {"PGDATABASE", "app"},   {"PGCONNECT_TIMEOUT", "10"},
      {"SY_MODE", stack.mode}, {"SY_POOL_SIZE", std::to_string(stack.size)},
      {"SY_DIRECT", "1"},      {"PYTHONDONTWRITEBYTECODE", "1"},
  };
  auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand(Command(driver, scenario), env);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (r.exit_code != 0 || r.output.find(Cat("PASS ", scenario)) == std::string::npos) {
    ADD_FAILURE() << DriverName(driver) << " scenario " << scenario
                  << " failed against PostgreSQL itself (exit code " << r.exit_code << ")\n--- "
                  << DriverName(driver) << " " << scenario << " (" << seconds << "s) output:\n"
                  << r.output;
  } else {
    std::printf("%s %s (PostgreSQL itself): %.2fs\n%s", DriverName(driver), scenario.c_str(),
                seconds, Tail(r.output, 5).c_str());
  }
  return r.output;
}

void DriverTest::ExpectPooledServersClean(const Stack& stack) {
  ASSERT_TRUE(sy_ != nullptr) << "Shardyard is not running";
  ::shardyard::testing::ExpectPooledServersClean(sy_->ConnInfo("app", "app", "secret"), stack.size);
}

}  // namespace shardyard::testing
