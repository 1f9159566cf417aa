// A library-independent SQL parse tree: PostgreSQL's raw parse nodes as a small
// generic tree.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace shardyard::sql {

// One value of a parse tree. PostgreSQL parse nodes appear as objects with a
// single field named after the node type, e.g. {"IndexStmt": {"idxname": "i",
// "concurrent": true, ...}}; fields left at their defaults (false, 0, empty)
// are absent, so reading a missing field yields a null node whose Bool() is
// false, Int() is 0 and Str() is "".
class Node {
 public:
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kList, kObject };

  static Node Null() { return Node(); }
  static Node Bool(bool value);
  static Node Number(std::string text);
  static Node String(std::string text);
  static Node List(std::vector<Node> items);
  // `names` and `values` are parallel; field order is kept.
  static Node Object(std::vector<std::string> names, std::vector<Node> values);

  Kind kind() const { return kind_; }
  bool IsNull() const { return kind_ == Kind::kNull; }

  bool Bool() const { return kind_ == Kind::kBool && bool_; }
  // The integer value of a number (0 for anything else or a number that is not
  // an integer).
  int64_t Int() const;
  // The text of a string or a number; "" for anything else.
  std::string_view Str() const;

  // List items (empty for anything else).
  const std::vector<Node>& items() const { return items_; }
  // Object fields (empty for anything else).
  const std::vector<std::string>& field_names() const { return names_; }
  const std::vector<Node>& field_values() const { return items_; }

  // The field `key` of an object, or a null node.
  const Node& operator[](std::string_view key) const;
  bool Has(std::string_view key) const { return !(*this)[key].IsNull(); }

  // For a parse node {"Tag": {...}}: the node type and its fields; "" and null
  // otherwise.
  std::string_view Tag() const;
  const Node& Body() const;

  // Calls `visit(tag, body)` for every parse node in this subtree, outermost
  // first.
  void ForEachNode(const std::function<void(std::string_view tag, const Node& body)>& visit) const;

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  std::string text_;
  std::vector<std::string> names_;
  std::vector<Node> items_;  // list items, or object field values
};

// Reads a JSON document (RFC 8259) into a Node.
absl::StatusOr<Node> ParseJson(std::string_view text);

}  // namespace shardyard::sql
