// Finds, by a lexical scan of SQL text (no parse), the statements that may change a session's
// state beyond the current transaction: SET, RESET, DISCARD, set_config() and DO blocks change
// settings; PREPARE and DECLARE ... WITH HOLD leave objects on the server.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace shardyard::sql {

// What a run of SQL may do to the session's settings.
struct SessionChanges {
  // True when the text may change a setting for the rest of the session (a superset: SET
  // TRANSACTION or set_config(..., true) also count, and a DO block always does).
  bool settings = false;
  // Every setting it sets or resets with a plain SET or RESET, lower-cased ("timezone" for SET
  // TIME ZONE; "role" for SET ROLE; "all" for RESET ALL).
  std::vector<std::string> set_names;
  // True when it has a RESET (which may return a setting to a default, not to a value).
  bool reset = false;
  // True when it may change settings that no name above tells: DISCARD, DO, set_config(), SET
  // SESSION AUTHORIZATION (or session_authorization) or CHARACTERISTICS, or a SET this scan
  // cannot read a name from.
  bool unnamed = false;
  // Dotted (custom, "placeholder") setting names it sets or resets by name, lower-cased:
  // PostgreSQL lists those nowhere, so whoever wants to read them back must know their names.
  std::vector<std::string> custom_names;
  // True when it may leave objects on the server that outlive the transaction and belong to
  // this client alone: a prepared statement (PREPARE), a cursor WITH HOLD, or a DO block
  // (which may create either).
  bool objects = false;
};

// One pass over the bytes, no tokenizing: false when `sql` certainly changes no setting and
// declares no cursor, which is the usual case (no "set_config", and no SET, RESET, DISCARD, DO
// or DECLARE where a statement may start: UPDATE ... SET is not looked at further). Callers
// scan only what passes it or MayPrepare.
bool MayChangeSettings(std::string_view sql);

// False when no statement of `sql` starts with PREPARE (looked for at the start and after each
// ';', past spaces and comments); with MayChangeSettings, what the scan may find a reason in.
bool MayPrepare(std::string_view sql);

// Whether `sql` is one plain data statement that a server may run while the next client's request
// already waits behind it: a single SELECT, INSERT, UPDATE, DELETE, VALUES, TABLE or WITH (no
// ';' before its end, so no second statement: a ';' inside a literal makes it false too), and
// nothing MayChangeSettings flags. Run alone, outside a transaction block, such a statement ends
// in its own implicit transaction (the session is idle after it), and if it is cancelled it
// leaves nothing behind, so it may be run again. A cheap check (no tokenizing) that errs towards
// false: a leading comment, for one, makes it false.
bool IsPlainDataStatement(std::string_view sql);

// Scans `sql` (one or more statements, as in a simple Query or a Parse). Statements inside
// string literals, comments and dollar-quoted bodies are not seen: a function that changes
// settings when called is invisible here. `standard_conforming_strings` is the session's
// setting, which decides whether a backslash escapes a quote in '...'.
SessionChanges ScanSessionChanges(std::string_view sql, bool standard_conforming_strings = true);

}  // namespace shardyard::sql
