// The generic parse tree and the small JSON reader that builds it from the
// parser's output.
#include "sql/tree.h"

#include "common/strings.h"

namespace shardyard::sql {

Node Node::Bool(bool value) {
  Node n;
  n.kind_ = Kind::kBool;
  n.bool_ = value;
  return n;
}

Node Node::Number(std::string text) {
  Node n;
  n.kind_ = Kind::kNumber;
  n.text_ = std::move(text);
  return n;
}

Node Node::String(std::string text) {
  Node n;
  n.kind_ = Kind::kString;
  n.text_ = std::move(text);
  return n;
}

Node Node::List(std::vector<Node> items) {
  Node n;
  n.kind_ = Kind::kList;
  n.items_ = std::move(items);
  return n;
}

Node Node::Object(std::vector<std::string> names, std::vector<Node> values) {
  Node n;
  n.kind_ = Kind::kObject;
  n.names_ = std::move(names);
  n.items_ = std::move(values);
  return n;
}

int64_t Node::Int() const {
  int64_t v = 0;
  if (kind_ != Kind::kNumber || !ParseInt(text_, &v)) return 0;
  return v;
}

std::string_view Node::Str() const {
  return kind_ == Kind::kString || kind_ == Kind::kNumber ? std::string_view(text_)
                                                          : std::string_view();
}

const Node& Node::operator[](std::string_view key) const {
  static const Node kNull;
  if (kind_ != Kind::kObject) return kNull;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == key) return items_[i];
  }
  return kNull;
}

std::string_view Node::Tag() const {
  if (kind_ != Kind::kObject || names_.size() != 1 || items_[0].kind_ != Kind::kObject) return {};
  const std::string& name = names_[0];
  // Node type names start with an upper-case letter; plain fields are
  // lower-case.
  if (name.empty() || name[0] < 'A' || name[0] > 'Z') return {};
  return name;
}

const Node& Node::Body() const {
  static const Node kNull;
  return Tag().empty() ? kNull : items_[0];
}

void Node::ForEachNode(
    const std::function<void(std::string_view tag, const Node& body)>& visit) const {
  std::string_view tag = Tag();
  if (!tag.empty()) visit(tag, items_[0]);
  for (const Node& child : items_) child.ForEachNode(visit);
}

namespace {

// A recursive-descent JSON reader bounded in depth so hostile input cannot
// exhaust the stack.
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  absl::StatusOr<Node> Document() {
    auto value = Value(0);
    if (!value.ok()) return value;
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing characters");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 1000;

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(Cat("JSON: ", what, " at offset ", pos_));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  bool Consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::StatusOr<Node> Value(int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end");
    char c = text_[pos_];
    if (c == '{') return ObjectValue(depth);
    if (c == '[') return ListValue(depth);
    if (c == '"') {
      auto s = StringValue();
      if (!s.ok()) return s.status();
      return Node::String(std::move(*s));
    }
    if (Consume("true")) return Node::Bool(true);
    if (Consume("false")) return Node::Bool(false);
    if (Consume("null")) return Node::Null();
    if (c == '-' || (c >= '0' && c <= '9')) return NumberValue();
    return Error("unexpected character");
  }

  absl::StatusOr<Node> NumberValue() {
    size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        ++pos_;
      } else {
        break;
      }
    }
    if (pos_ == start + (text_[start] == '-' ? 1 : 0)) return Error("bad number");
    return Node::Number(std::string(text_.substr(start, pos_ - start)));
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (pos_ + 4 > text_.size()) return Error("short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Error("bad \\u escape");
      }
    }
    return v;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  absl::StatusOr<std::string> StringValue() {
    ++pos_;  // the opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          auto cp = Hex4();
          if (!cp.ok()) return cp.status();
          uint32_t code = *cp;
          if (code >= 0xD800 && code <= 0xDBFF && Consume("\\u")) {
            auto low = Hex4();
            if (!low.ok()) return low.status();
            if (*low >= 0xDC00 && *low <= 0xDFFF) {
              code = 0x10000 + ((code - 0xD800) << 10) + (*low - 0xDC00);
            }
          }
          AppendUtf8(code, &out);
          break;
        }
        default:
          return Error("bad escape");
      }
    }
  }

  absl::StatusOr<Node> ListValue(int depth) {
    ++pos_;
    std::vector<Node> items;
    SkipSpace();
    if (Consume("]")) return Node::List(std::move(items));
    while (true) {
      auto item = Value(depth + 1);
      if (!item.ok()) return item;
      items.push_back(std::move(*item));
      SkipSpace();
      if (Consume("]")) return Node::List(std::move(items));
      if (!Consume(",")) return Error("expected , or ]");
    }
  }

  absl::StatusOr<Node> ObjectValue(int depth) {
    ++pos_;
    std::vector<std::string> names;
    std::vector<Node> values;
    SkipSpace();
    if (Consume("}")) return Node::Object(std::move(names), std::move(values));
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a field name");
      auto name = StringValue();
      if (!name.ok()) return name.status();
      SkipSpace();
      if (!Consume(":")) return Error("expected :");
      auto value = Value(depth + 1);
      if (!value.ok()) return value;
      names.push_back(std::move(*name));
      values.push_back(std::move(*value));
      SkipSpace();
      if (Consume("}")) return Node::Object(std::move(names), std::move(values));
      if (!Consume(",")) return Error("expected , or }");
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Node> ParseJson(std::string_view text) { return JsonReader(text).Document(); }

}  // namespace shardyard::sql
