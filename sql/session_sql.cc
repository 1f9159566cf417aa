// Implements the lexical scan for session-changing statements: a tokenizer that knows
// PostgreSQL's comments, quoting and dollar quoting, and looks at each statement's first words.
#include "sql/session_sql.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

#include "common/strings.h"
#include "sql/lexical.h"

namespace shardyard::sql {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }

bool IdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool IdentChar(char c) { return IdentStart(c) || (c >= '0' && c <= '9') || c == '$'; }

bool EqualsLower(std::string_view word, std::string_view lower) {
  return word.size() == lower.size() && std::equal(word.begin(), word.end(), lower.begin(),
                                                   [](char a, char b) { return Lower(a) == b; });
}

// Whether `lower` (lower-case letters and '_') is at `at`, in any case. `| 0x20` lower-cases an
// ASCII letter and maps no other byte onto one, nor any byte onto '_'.
bool HasAt(std::string_view sql, size_t at, std::string_view lower) {
  if (at > sql.size() || sql.size() - at < lower.size()) return false;
  for (size_t k = 0; k < lower.size(); ++k) {
    const char c = sql[at + k];
    if (c != lower[k] && static_cast<char>(c | 0x20) != lower[k]) return false;
  }
  return true;
}

// Whether a statement may start at `i`: what comes before it is nothing, spaces, a ';', or
// perhaps the end of a comment (a '/', or a line break that may end a -- comment).
bool StatementMayStartAt(std::string_view sql, size_t i) {
  if (i > 0 && IdentChar(sql[i - 1])) return false;  // inside a word ("asset", "todo")
  for (; i > 0; --i) {
    const char c = sql[i - 1];
    if (c == '\n') return true;
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return c == ';' || c == '/';
  }
  return true;
}

// Whether the word `lower` is at `at` and ends there ("prepare", not "prepared_at").
bool WordAt(std::string_view sql, size_t at, std::string_view lower) {
  return HasAt(sql, at, lower) &&
         (at + lower.size() == sql.size() || !IdentChar(sql[at + lower.size()]));
}

// Whether PREPARE is the first word of a statement that starts at `i` (after spaces and
// comments). A letter other than 'p' there settles it at once: the usual case.
bool PrepareAfter(std::string_view sql, size_t i) {
  if (i >= sql.size()) return false;
  const char c = static_cast<char>(sql[i] | 0x20);
  if (c >= 'a' && c <= 'z' && c != 'p') return false;
  return WordAt(sql, SkipSpaceAndComments(sql, i), "prepare");
}

// Whether what the scan looks for may begin at `i`: "set_config", or SET, RESET, DISCARD, DO or
// DECLARE where a statement may start.
bool MentionAt(std::string_view sql, size_t i) {
  // `| 0x20` lower-cases ASCII letters and maps no other byte onto one.
  const char c = static_cast<char>(sql[i] | 0x20);
  if (c == 's') {
    if (!HasAt(sql, i, "set")) return false;
    if (HasAt(sql, i + 3, "_config")) return true;
    return StatementMayStartAt(sql, i >= 2 && HasAt(sql, i - 2, "re") ? i - 2 : i);
  }
  if (c == 'd') {
    return (HasAt(sql, i, "do") || HasAt(sql, i, "discard") || WordAt(sql, i, "declare")) &&
           StatementMayStartAt(sql, i);
  }
  return false;
}

}  // namespace

// Every statement and function the scan looks for starts with 's' (SET, set_config()), 'r'
// (RESET, found from its "set") or 'd' (DISCARD, DO, DECLARE), and all but set_config() only
// where a statement may start. Eight bytes at a time, only words holding an 's' or a 'd' are
// looked at byte by byte.
bool MayChangeSettings(std::string_view sql) {
  static_assert(std::endian::native == std::endian::little, "byte i of a word is bits 8i..8i+7");
  constexpr uint64_t kOnes = 0x0101010101010101;
  constexpr uint64_t kHigh = 0x8080808080808080;
  size_t i = 0;
  for (; i + 8 <= sql.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, sql.data() + i, sizeof(word));
    word |= kOnes * 0x20;
    const uint64_t s = word ^ (kOnes * 's');
    const uint64_t d = word ^ (kOnes * 'd');
    // The high bit of each byte of s or d that is zero (the classic test; a byte after a real
    // zero may be flagged too, which MentionAt then rejects).
    uint64_t candidates = (((s - kOnes) & ~s) | ((d - kOnes) & ~d)) & kHigh;
    while (candidates != 0) {
      if (MentionAt(sql, i + static_cast<size_t>(std::countr_zero(candidates)) / 8)) return true;
      candidates &= candidates - 1;
    }
  }
  for (; i < sql.size(); ++i) {
    if (MentionAt(sql, i)) return true;
  }
  return false;
}

// A statement starts at the beginning and after a ';' (memchr finds those fast): looking only
// there keeps 'p', a common letter in names, out of the eight-byte scan above.
bool MayPrepare(std::string_view sql) {
  for (size_t at = 0;;) {
    if (PrepareAfter(sql, at)) return true;
    const size_t semicolon = sql.find(';', at);
    if (semicolon == std::string_view::npos) return false;
    at = semicolon + 1;
  }
}

bool IsPlainDataStatement(std::string_view sql) {
  constexpr std::string_view kSpace = " \t\r\n\f\v";
  constexpr std::string_view kSpaceOrSemicolon = " \t\r\n\f\v;";
  const size_t start = sql.find_first_not_of(kSpace);
  if (start == std::string_view::npos) return false;
  // One statement: any ';' must be the start of a trailing run of ';' and spaces.
  if (const size_t semi = sql.find(';', start); semi != std::string_view::npos) {
    if (sql.find_first_not_of(kSpaceOrSemicolon, semi) != std::string_view::npos) return false;
  }
  size_t end = start;
  while (end < sql.size() && IdentChar(sql[end])) ++end;
  const std::string_view word = sql.substr(start, end - start);
  static constexpr std::string_view kFirstWords[] = {"select", "insert", "update", "delete",
                                                     "values", "table",  "with"};
  return std::any_of(std::begin(kFirstWords), std::end(kFirstWords),
                     [word](std::string_view w) { return EqualsLower(word, w); }) &&
         !MayChangeSettings(sql);
}

namespace {

struct Token {
  enum class Kind { kEnd, kWord, kQuotedIdent, kString, kPunct };
  Kind kind = Kind::kEnd;
  std::string_view raw;  // a word as written; a punctuation character
  std::string value;     // the decoded text of a quoted identifier or string literal
  bool IsWord(std::string_view lower) const {
    return kind == Kind::kWord && EqualsLower(raw, lower);
  }
  bool IsPunct(char c) const { return kind == Kind::kPunct && raw.size() == 1 && raw[0] == c; }
  bool IsName() const { return kind == Kind::kWord || kind == Kind::kQuotedIdent; }
  // A name's text as PostgreSQL folds it for a setting (setting names ignore case).
  std::string NameText() const {
    std::string out(kind == Kind::kWord ? std::string(raw) : value);
    std::transform(out.begin(), out.end(), out.begin(), Lower);
    return out;
  }
};

class Lexer {
 public:
  Lexer(std::string_view sql, bool standard_strings) : s_(sql), standard_(standard_strings) {}

  Token Next() {
    if (has_peeked_) {
      has_peeked_ = false;
      return std::move(peeked_);
    }
    return Lex();
  }
  const Token& Peek() {
    if (!has_peeked_) {
      peeked_ = Lex();
      has_peeked_ = true;
    }
    return peeked_;
  }

 private:
  Token Lex() {
    i_ = SkipSpaceAndComments(s_, i_);
    Token t;
    if (i_ >= s_.size()) return t;
    const char c = s_[i_];
    if (c == '\'') return Quoted(Token::Kind::kString, /*escapes=*/!standard_);
    if (c == '"') return Quoted(Token::Kind::kQuotedIdent, /*escapes=*/false);
    if (c == '$') {
      if (std::optional<Token> quoted = DollarQuoted()) return *std::move(quoted);
    }
    if (IdentStart(c)) {
      size_t start = i_;
      while (i_ < s_.size() && IdentChar(s_[i_])) ++i_;
      t.raw = s_.substr(start, i_ - start);
      if (i_ < s_.size() && s_[i_] == '\'' && (t.raw == "e" || t.raw == "E")) {
        return Quoted(Token::Kind::kString, /*escapes=*/true);  // E'...'
      }
      t.kind = Token::Kind::kWord;
      return t;
    }
    t.kind = Token::Kind::kPunct;
    t.raw = s_.substr(i_++, 1);
    return t;
  }

  // At a quote (' or "): the text up to the matching closing quote, where a doubled quote
  // stands for one and, with `escapes` (E'...'), a backslash takes the next character literally.
  Token Quoted(Token::Kind kind, bool escapes) {
    Token t;
    t.kind = kind;
    const char quote = s_[i_++];
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (escapes && c == '\\' && i_ < s_.size()) {
        t.value.push_back(s_[i_++]);
      } else if (c == quote) {
        if (i_ < s_.size() && s_[i_] == quote) {
          t.value.push_back(quote);
          ++i_;
        } else {
          break;
        }
      } else {
        t.value.push_back(c);
      }
    }
    return t;
  }

  // At a '$': a dollar-quoted string ($$...$$ or $tag$...$tag$) as a string token, or nothing
  // for anything else ($1, a lone '$').
  std::optional<Token> DollarQuoted() {
    size_t j = i_ + 1;
    if (j < s_.size() && IdentStart(s_[j])) {
      while (j < s_.size() && IdentChar(s_[j]) && s_[j] != '$') ++j;
    }
    if (j >= s_.size() || s_[j] != '$') return std::nullopt;
    std::string_view tag = s_.substr(i_, j - i_ + 1);
    size_t end = std::min(s_.find(tag, j + 1), s_.size());
    Token t;
    t.kind = Token::Kind::kString;
    t.value = std::string(s_.substr(j + 1, end - (j + 1)));
    i_ = std::min(end + tag.size(), s_.size());
    return t;
  }

  std::string_view s_;
  bool standard_;
  size_t i_ = 0;
  Token peeked_;  // valid while has_peeked_
  bool has_peeked_ = false;
};

// A custom setting's name: built-in settings are listed by the server, custom ones nowhere.
void AddCustomName(SessionChanges* out, std::string name) {
  if (name.find('.') != std::string::npos) AppendIfAbsent(&out->custom_names, std::move(name));
}

// After SET or RESET: reads a setting name (possibly dotted) and records it.
void ReadSettingName(Lexer& lex, SessionChanges* out) {
  if (!lex.Peek().IsName()) {
    out->unnamed = true;
    return;
  }
  std::string name = lex.Next().NameText();
  if (name == "time" && lex.Peek().IsWord("zone")) {
    lex.Next();
    name = "timezone";  // SET TIME ZONE
  }
  while (lex.Peek().IsPunct('.')) {
    lex.Next();
    if (!lex.Peek().IsName()) {
      out->unnamed = true;
      return;
    }
    name += '.';
    name += lex.Next().NameText();
  }
  // session_authorization also resets the role: what changes is more than the name says.
  if (name == "session_authorization") out->unnamed = true;
  AppendIfAbsent(&out->set_names, name);
  AddCustomName(out, std::move(name));
}

// Looks at a statement's first token (already read) and what follows it.
void ScanStatementStart(const Token& first, Lexer& lex, SessionChanges* out) {
  if (first.IsWord("set")) {
    const Token& next = lex.Peek();
    // Scoped to the transaction: nothing outlives it.
    if (next.IsWord("local") || next.IsWord("transaction") || next.IsWord("constraints")) return;
    out->settings = true;
    if (next.IsWord("session")) {
      lex.Next();
      if (lex.Peek().IsWord("characteristics") || lex.Peek().IsWord("authorization")) {
        out->unnamed = true;
        return;
      }
    }
    ReadSettingName(lex, out);
  } else if (first.IsWord("reset")) {
    out->settings = true;
    out->reset = true;
    ReadSettingName(lex, out);
  } else if (first.IsWord("discard") || first.IsWord("do")) {
    // DO runs code this scan cannot see into: it may PREPARE too.
    out->settings = true;
    out->unnamed = true;
    out->objects = first.IsWord("do");
  } else if (first.IsWord("prepare")) {
    // PREPARE TRANSACTION makes no statement (and a prepared transaction is not the session's).
    out->objects = !lex.Peek().IsWord("transaction");
  } else if (first.IsWord("declare")) {
    // DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [WITH HOLD] FOR:
    // only a cursor WITH HOLD outlives its transaction.
    for (Token t = lex.Peek(); t.kind != Token::Kind::kEnd && !t.IsWord("for") && !t.IsPunct(';');
         t = lex.Peek()) {
      lex.Next();
      if (t.IsWord("with") && lex.Peek().IsWord("hold")) out->objects = true;
    }
  }
}

}  // namespace

SessionChanges ScanSessionChanges(std::string_view sql, bool standard_conforming_strings) {
  SessionChanges out;
  Lexer lex(sql, standard_conforming_strings);
  bool at_start = true;
  for (Token t = lex.Next(); t.kind != Token::Kind::kEnd; t = lex.Next()) {
    if (t.IsPunct(';')) {
      at_start = true;
      continue;
    }
    if (at_start) {
      at_start = false;
      ScanStatementStart(t, lex, &out);
      continue;
    }
    const bool set_config =
        t.IsWord("set_config") || (t.kind == Token::Kind::kQuotedIdent && t.value == "set_config");
    if (set_config && lex.Peek().IsPunct('(')) {
      out.settings = true;
      out.unnamed = true;
      lex.Next();
      if (lex.Peek().kind == Token::Kind::kString) AddCustomName(&out, lex.Next().NameText());
    }
  }
  return out;
}

}  // namespace shardyard::sql
