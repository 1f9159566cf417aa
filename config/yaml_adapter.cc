// Converts yaml-cpp's node graph into YamlNode, catching yaml-cpp's exceptions at this boundary.
#include "config/yaml_adapter.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"

namespace shardyard::config {
namespace {

YamlNode Convert(const YAML::Node& node) {
  YamlNode out;
  out.line = node.Mark().line + 1;
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out.kind = YamlNode::Kind::kNull;
      break;
    case YAML::NodeType::Scalar:
      out.kind = YamlNode::Kind::kScalar;
      out.scalar = node.Scalar();
      // yaml-cpp tags plain scalars "?" and quoted ones "!".
      out.quoted = node.Tag() == "!";
      break;
    case YAML::NodeType::Sequence:
      out.kind = YamlNode::Kind::kSequence;
      for (const auto& item : node) out.items.push_back(Convert(item));
      break;
    case YAML::NodeType::Map:
      out.kind = YamlNode::Kind::kMap;
      for (const auto& kv : node) {
        std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("<non-scalar key>");
        out.entry_lines.push_back(kv.first.Mark().line + 1);
        out.entries.emplace_back(std::move(key), Convert(kv.second));
      }
      break;
  }
  return out;
}

}  // namespace

absl::StatusOr<YamlNode> ParseYaml(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return Convert(root);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("line ", e.mark.line + 1, ": ", e.msg));
  }
}

}  // namespace shardyard::config
