// Implements the bounded, incremental message framing used on both sides of the proxy.
#include "wire/framer.h"

#include "common/pg_error.h"
#include "common/strings.h"
#include "wire/bytes.h"

namespace shardyard::wire {
namespace {

Frame Error(std::string message) {
  Frame f;
  f.kind = Frame::Kind::kError;
  f.error = PgFatalStatus(absl::StatusCode::kInvalidArgument, sqlstate::kProtocolViolation,
                          std::move(message));
  return f;
}

}  // namespace

Frame ParseFrame(std::string_view data, uint32_t max_body_length) {
  if (data.size() < 5) return {};
  uint32_t len = LoadBigEndian32(data.data() + 1);
  if (len < 4) {
    return Error(Cat("invalid message length ", len, " for message type '", data[0], "'"));
  }
  if (len - 4 > max_body_length) {
    return Error(Cat("message of type '", data[0], "' is ", len - 4,
                     " bytes long, over the limit of ", max_body_length, " (max_message_size)"));
  }
  size_t total = size_t{len} + 1;
  if (data.size() < total) return {};
  Frame f;
  f.kind = Frame::Kind::kMessage;
  f.type = data[0];
  f.body = data.substr(5, len - 4);
  f.size = total;
  return f;
}

Frame ParseStartupFrame(std::string_view data) {
  if (data.size() < 4) return {};
  uint32_t len = LoadBigEndian32(data.data());
  if (len < 8 || len > kMaxStartupPacketLength) {
    return Error("invalid length of startup packet");
  }
  if (data.size() < len) return {};
  Frame f;
  f.kind = Frame::Kind::kMessage;
  f.body = data.substr(4, len - 4);
  f.size = len;
  return f;
}

size_t FrameSizeHint(std::string_view data) {
  if (data.size() < 5) return 0;
  return size_t{LoadBigEndian32(data.data() + 1)} + 1;
}

}  // namespace shardyard::wire
