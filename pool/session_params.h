// Session parameters (ParameterStatus values and startup settings) per client and per server, and
// the SQL that makes a server connection match a client before it serves that client.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shardyard::pool {

// The canonical spelling of a parameter name ("datestyle" → "DateStyle"); GUC names are
// case-insensitive but ParameterStatus uses these spellings.
std::string CanonicalParamName(std::string_view name);

// True for reported parameters no session can change (server_version, ...), which are never
// applied to a server connection.
bool IsReadOnlyParam(std::string_view canonical_name);

// A small name → value map, sorted by canonical name. Shared immutably between a client and
// the server connections that already match it, so the common "nothing to apply" check is a
// pointer comparison.
class ParamSet {
 public:
  using Entry = std::pair<std::string, std::string>;

  const std::string* Get(std::string_view name) const;
  void Set(std::string_view name, std::string_view value);  // `name` must be canonical
  bool Erase(std::string_view name);
  const std::vector<Entry>& entries() const { return entries_; }
  bool operator==(const ParamSet&) const = default;

 private:
  std::vector<Entry> entries_;
};

using SharedParams = std::shared_ptr<const ParamSet>;

// What to run on a server whose parameters are `server` so that they become `client`.
struct ParamPlan {
  // Sent as its own Query first, because the rest of the text is read in the new encoding.
  std::string client_encoding_sql;
  std::string sql;  // set_config(...) calls and RESETs; empty if nothing else differs
  bool empty() const { return client_encoding_sql.empty() && sql.empty(); }
  int queries() const { return (client_encoding_sql.empty() ? 0 : 1) + (sql.empty() ? 0 : 1); }
};

// Plans the statements that change `server` into `client`: set_config() (which takes a value
// exactly as a startup packet does) for each differing value, RESET for each parameter the
// server has and the client lacks. Read-only parameters are skipped; a role ("role", as SET ROLE
// sets it) the server has is reset first and the client's is set last.
ParamPlan PlanParams(const ParamSet& client, const ParamSet& server);

// The query that reads back a session's settings after SQL that may have changed them beyond
// its transaction. Its rows are (name, value): every setting whose source is the session (from
// pg_settings), the role, and each custom (dotted) setting, which PostgreSQL lists nowhere, so
// they are asked for by name (NULL when one does not exist): those the SQL named
// (`custom_names`) and those already in the session's parameters (`current`: from its startup
// packet or an earlier read-back).
std::string ReadBackSql(const ParamSet& current, const std::vector<std::string>& custom_names);

// A cheaper read-back, for SQL that only SET settings it named (`names`, lower-cased): their
// values, as rows (name, value), NULL for a custom setting that does not exist. (pg_settings,
// which the full read-back needs to find every session-level setting, costs the server about
// 0.4 ms a query; this costs what a trivial SELECT does.)
std::string ReadBackNamedSql(const std::vector<std::string>& names);

// The session's parameter set after a read-back: the values of the parameters the server
// reports (`reported`: the set it reported at login) are kept from `current`, where its
// ParameterStatus messages put them; every other setting is what the read-back found.
using ReadBackRow = std::pair<std::string, std::optional<std::string>>;
ParamSet ParamsAfterReadBack(const ParamSet& current, const ParamSet& reported,
                             const std::vector<ReadBackRow>& rows);

// After a named read-back: `current`, with each named setting the server does not report set to
// what was read (or removed: a custom setting that does not exist, a role of "none").
ParamSet ParamsAfterNamedReadBack(const ParamSet& current, const ParamSet& reported,
                                  const std::vector<ReadBackRow>& rows);

// Splits a startup "options" value ("-c name=value --name=value", backslash escapes) into
// settings, as PostgreSQL's pg_split_opts and the backend's option parser do.
bool ParseStartupOptions(std::string_view options,
                         std::vector<std::pair<std::string, std::string>>* out);

// A SQL string literal that means `value` whatever standard_conforming_strings is.
std::string QuoteLiteral(std::string_view value);

}  // namespace shardyard::pool
