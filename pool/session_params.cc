// Implements parameter-name canonicalisation, ParamSet and the plan that restores a client's
// parameters on a server connection.
#include "pool/session_params.h"

#include <algorithm>
#include <array>

#include "common/strings.h"

namespace shardyard::pool {
namespace {

// Parameters PostgreSQL (15–18) marks GUC_REPORT; their spelling in ParameterStatus is the
// canonical one.
constexpr std::array<std::string_view, 15> kReported = {
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "scram_iterations",
    "search_path",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
};

constexpr std::array<std::string_view, 5> kReadOnly = {
    "in_hot_standby", "integer_datetimes", "is_superuser", "server_encoding", "server_version",
};

}  // namespace

std::string CanonicalParamName(std::string_view name) {
  for (std::string_view r : kReported) {
    if (EqualsIgnoreCase(r, name)) return std::string(r);
  }
  return ToLowerAscii(name);
}

bool IsReadOnlyParam(std::string_view name) {
  return std::find(kReadOnly.begin(), kReadOnly.end(), name) != kReadOnly.end();
}

const std::string* ParamSet::Get(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, std::string_view n) { return e.first < n; });
  if (it == entries_.end() || it->first != name) return nullptr;
  return &it->second;
}

void ParamSet::Set(std::string_view name, std::string_view value) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, std::string_view n) { return e.first < n; });
  if (it != entries_.end() && it->first == name) {
    it->second = std::string(value);
  } else {
    entries_.insert(it, Entry(std::string(name), std::string(value)));
  }
}

bool ParamSet::Erase(std::string_view name) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const Entry& e, std::string_view n) { return e.first < n; });
  if (it == entries_.end() || it->first != name) return false;
  entries_.erase(it);
  return true;
}

std::string QuoteLiteral(std::string_view value) {
  // An E'' literal reads backslashes as escapes regardless of standard_conforming_strings.
  std::string out = "E'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back(c);
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

namespace {

// A parameter name as SQL text inside RESET: each dotted part as a quoted identifier, since a
// custom name's parts may be keywords ("app.user"); setting names ignore case, quoted or not.
std::string QuoteName(std::string_view name) {
  std::string out;
  for (size_t start = 0;;) {
    size_t dot = name.find('.', start);
    std::string_view part = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    out.push_back('"');
    for (char c : part) {
      if (c == '"') out.push_back('"');
      out.push_back(c);
    }
    out.push_back('"');
    if (dot == std::string_view::npos) return out;
    out.push_back('.');
    start = dot + 1;
  }
}

}  // namespace

ParamPlan PlanParams(const ParamSet& client, const ParamSet& server) {
  ParamPlan plan;
  std::vector<std::string> statements;
  std::vector<std::string> sets;
  std::vector<std::string> resets;
  auto set_call = [](std::string_view name, std::string_view value) {
    return Cat("pg_catalog.set_config(", QuoteLiteral(name), ", ", QuoteLiteral(value), ", false)");
  };
  // The role (SET ROLE) decides what the other changes may do: a role the server has is dropped
  // first, and the client's is taken last.
  const std::string* client_role = client.Get("role");
  const std::string* server_role = server.Get("role");
  const bool role_differs = client_role == nullptr || server_role == nullptr
                                ? client_role != server_role
                                : *client_role != *server_role;
  if (role_differs && server_role != nullptr) statements.push_back("RESET role");
  for (const auto& [name, value] : client.entries()) {
    if (IsReadOnlyParam(name) || name == "role") continue;
    const std::string* current = server.Get(name);
    if (current != nullptr && *current == value) continue;
    if (name == "client_encoding") {
      plan.client_encoding_sql = Cat("SELECT ", set_call(name, value));
    } else {
      sets.push_back(set_call(name, value));
    }
  }
  for (const auto& [name, value] : server.entries()) {
    if (IsReadOnlyParam(name) || name == "role" || client.Get(name) != nullptr) continue;
    resets.push_back(Cat("RESET ", QuoteName(name)));
  }
  if (!sets.empty()) statements.push_back(Cat("SELECT ", Join(sets, ", ")));
  for (auto& r : resets) statements.push_back(std::move(r));
  if (role_differs && client_role != nullptr) {
    statements.push_back(Cat("SELECT ", set_call("role", *client_role)));
  }
  plan.sql = Join(statements, "; ");
  return plan;
}

namespace {

// The rows (name, current_setting(name, true)) for each of `names`: NULL where a custom setting
// does not exist.
template <typename Names>
std::string CurrentSettingsSql(const Names& names) {
  std::vector<std::string> values;
  for (std::string_view name : names) values.push_back(Cat("(", QuoteLiteral(name), ")"));
  return Cat("SELECT n, pg_catalog.current_setting(n, true) FROM (VALUES ", Join(values, ", "),
             ") AS v(n)");
}

}  // namespace

std::string ReadBackSql(const ParamSet& current, const std::vector<std::string>& custom_names) {
  std::string sql =
      "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
      "UNION ALL SELECT 'role', pg_catalog.current_setting('role')";
  std::vector<std::string_view> names(custom_names.begin(), custom_names.end());
  for (const auto& [name, value] : current.entries()) {
    if (name.find('.') != std::string::npos) AppendIfAbsent(&names, std::string_view(name));
  }
  if (!names.empty()) Append(&sql, " UNION ALL ", CurrentSettingsSql(names));
  return sql;
}

std::string ReadBackNamedSql(const std::vector<std::string>& names) {
  return CurrentSettingsSql(names);
}

namespace {

// Whether a read-back row names a setting the client's parameters keep from a read-back: not
// one the server reports (its ParameterStatus messages keep the client's value), nor a
// read-only one, nor those SET TRANSACTION leaves with the source "session" for one transaction.
bool TakenFromReadBack(const std::string& name, const ParamSet& reported) {
  return reported.Get(name) == nullptr && !IsReadOnlyParam(name) &&
         name != "transaction_isolation" && name != "transaction_read_only" &&
         name != "transaction_deferrable";
}

// A value that means "not set": a custom setting that does not exist, no SET ROLE in effect.
bool Unset(const std::string& name, const std::optional<std::string>& value) {
  return !value.has_value() || (name == "role" && *value == "none");
}

}  // namespace

ParamSet ParamsAfterReadBack(const ParamSet& current, const ParamSet& reported,
                             const std::vector<ReadBackRow>& rows) {
  ParamSet out;
  for (const auto& [name, value] : current.entries()) {
    if (reported.Get(name) != nullptr) out.Set(name, value);
  }
  for (const auto& [raw_name, value] : rows) {
    std::string name = CanonicalParamName(raw_name);
    if (TakenFromReadBack(name, reported) && !Unset(name, value)) out.Set(name, *value);
  }
  return out;
}

ParamSet ParamsAfterNamedReadBack(const ParamSet& current, const ParamSet& reported,
                                  const std::vector<ReadBackRow>& rows) {
  ParamSet out = current;
  for (const auto& [raw_name, value] : rows) {
    std::string name = CanonicalParamName(raw_name);
    if (!TakenFromReadBack(name, reported)) continue;
    if (Unset(name, value)) {
      out.Erase(name);
    } else {
      out.Set(name, *value);
    }
  }
  return out;
}

bool ParseStartupOptions(std::string_view options,
                         std::vector<std::pair<std::string, std::string>>* out) {
  // Split on unescaped whitespace; a backslash makes the next character literal.
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < options.size(); ++i) {
    char c = options[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    if (c == '\\' && i + 1 < options.size()) c = options[++i];
    word.push_back(c);
    in_word = true;
  }
  if (in_word) words.push_back(std::move(word));

  for (size_t i = 0; i < words.size(); ++i) {
    std::string_view setting;
    if (words[i] == "-c") {
      if (++i >= words.size()) return false;
      setting = words[i];
    } else if (words[i].starts_with("-c")) {
      setting = std::string_view(words[i]).substr(2);
    } else if (words[i].starts_with("--")) {
      setting = std::string_view(words[i]).substr(2);
    } else {
      return false;  // other postgres command-line switches are not session settings
    }
    size_t eq = setting.find('=');
    if (eq == std::string_view::npos || eq == 0) return false;
    std::string name(setting.substr(0, eq));
    std::replace(name.begin(), name.end(), '-', '_');
    out->emplace_back(std::move(name), std::string(setting.substr(eq + 1)));
  }
  return true;
}

}  // namespace shardyard::pool
