// Finds message boundaries in a byte stream: need-more, a complete message, or a protocol error.
//
// Lengths are bounded before they are trusted: a message longer than the configured maximum is an
// error, not an allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace shardyard::wire {

// PostgreSQL's own limit for the startup packet.
inline constexpr uint32_t kMaxStartupPacketLength = 10000;

struct Frame {
  enum class Kind { kNeedMore, kMessage, kError };
  Kind kind = Kind::kNeedMore;
  char type = 0;          // 0 for startup-phase packets
  std::string_view body;  // without type and length
  size_t size = 0;        // bytes the whole message occupies (header included)
  absl::Status error;     // for kError: a PgError with SQLSTATE 08P01
};

// Examines the front of `data` for one typed message (type byte, int32 length, body).
Frame ParseFrame(std::string_view data, uint32_t max_body_length);

// The same for the untyped startup-phase packets (int32 length, body).
Frame ParseStartupFrame(std::string_view data);

// How many bytes the message starting at `data` needs in total, once its header is visible
// (0 while fewer than 5 bytes are present).
size_t FrameSizeHint(std::string_view data);

}  // namespace shardyard::wire
