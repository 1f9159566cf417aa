// Follows message boundaries through the server→client byte stream without holding whole
// messages, so rows are forwarded as they arrive; surfaces only the message types the proxy acts
// on.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "common/pg_error.h"
#include "common/strings.h"
#include "wire/bytes.h"

namespace shardyard::wire {

class BackendScanner {
 public:
  // Bodies of interesting messages are assembled when split across chunks, up to this size.
  static constexpr size_t kMaxCapturedBody = 1 << 20;

  // `interesting_types` must outlive the scanner (a string literal).
  explicit BackendScanner(std::string_view interesting_types) : interesting_(interesting_types) {}

  // Scans the next chunk of the stream, calling on_message(type, body, end) for each complete
  // interesting message in order; `end` is the offset in `chunk` just past the message. `body`
  // is valid only during the call. A callback taking only (type, body) works too.
  template <typename OnMessage>
  absl::Status Scan(std::string_view chunk, OnMessage&& on_message);

  // Called from on_message: Scan returns right after this message (the rest is not scanned);
  // scanned() then tells how far it got.
  void Stop() { stop_ = true; }
  size_t scanned() const { return scanned_; }

  // True when the bytes scanned so far end exactly at a message boundary.
  bool AtBoundary() const { return header_len_ == 0 && remaining_ == 0; }
  // The message the bytes scanned so far end inside: how many of its bytes were scanned, and
  // its type (0 while its header is incomplete). Meaningful only when !AtBoundary().
  size_t PartialBytes() const { return header_len_ > 0 ? header_len_ : 1 + len_ - remaining_; }
  char PartialType() const { return header_len_ > 0 ? 0 : type_; }
  void Reset() {
    header_len_ = 0;
    remaining_ = 0;
    capturing_ = false;
    capture_.clear();
  }

 private:
  // Begins a message whose header is complete; returns an error for an impossible length.
  absl::Status StartMessage(char type, uint32_t len) {
    if (len < 4) {
      return PgFatalStatus(absl::StatusCode::kDataLoss, sqlstate::kProtocolViolation,
                           Cat("server sent an invalid message length ", len));
    }
    type_ = type;
    len_ = len;
    remaining_ = len - 4;
    capturing_ = interesting_.find(type) != std::string_view::npos;
    if (capturing_ && remaining_ > kMaxCapturedBody) {
      return PgFatalStatus(
          absl::StatusCode::kDataLoss, sqlstate::kProtocolViolation,
          Cat("server message of type '", type, "' is too long (", remaining_, " bytes)"));
    }
    capture_.clear();
    return absl::OkStatus();
  }

  template <typename OnMessage>
  static void Deliver(OnMessage& on_message, char type, std::string_view body, size_t end) {
    if constexpr (std::is_invocable_v<OnMessage&, char, std::string_view, size_t>) {
      on_message(type, body, end);
    } else {
      on_message(type, body);
    }
  }

  std::string_view interesting_;  // a handful of types: a short scan beats a 32-byte bitset
  std::string capture_;
  uint32_t remaining_ = 0;  // body bytes of the current message not yet scanned
  uint32_t len_ = 0;        // the current message's length field (its body, plus 4)
  char header_[5] = {};
  uint8_t header_len_ = 0;  // header bytes held while a header is split across chunks
  char type_ = 0;
  bool capturing_ = false;
  bool stop_ = false;
  size_t scanned_ = 0;
};

template <typename OnMessage>
absl::Status BackendScanner::Scan(std::string_view chunk, OnMessage&& on_message) {
  size_t i = 0;
  const size_t n = chunk.size();
  stop_ = false;
  while (i < n) {
    if (remaining_ > 0) {
      // Inside a body.
      size_t take = std::min(size_t{remaining_}, n - i);
      if (capturing_) capture_.append(chunk.data() + i, take);
      i += take;
      remaining_ -= take;
      if (remaining_ == 0 && capturing_) {
        capturing_ = false;
        Deliver(on_message, type_, std::string_view(capture_), i);
        if (stop_) break;
      }
      continue;
    }
    if (header_len_ == 0 && n - i >= 5) {
      // Fast path: the whole header is here.
      char type = chunk[i];
      uint32_t len = LoadBigEndian32(chunk.data() + i + 1);
      i += 5;
      if (auto st = StartMessage(type, len); !st.ok()) return st;
      if (capturing_ && n - i >= remaining_) {
        // The whole interesting body is in this chunk: no copy.
        std::string_view body = chunk.substr(i, remaining_);
        i += remaining_;
        remaining_ = 0;
        capturing_ = false;
        Deliver(on_message, type, body, i);
        if (stop_) break;
      } else if (remaining_ == 0 && capturing_) {
        capturing_ = false;
        Deliver(on_message, type, std::string_view(), i);
        if (stop_) break;
      }
      continue;
    }
    // Slow path: collect a header split across chunks.
    size_t take = std::min(size_t{5} - header_len_, n - i);
    std::memcpy(header_ + header_len_, chunk.data() + i, take);
    header_len_ = static_cast<uint8_t>(header_len_ + take);
    i += take;
    if (header_len_ < 5) break;
    header_len_ = 0;
    if (auto st = StartMessage(header_[0], LoadBigEndian32(header_ + 1)); !st.ok()) return st;
    if (remaining_ == 0 && capturing_) {
      capturing_ = false;
      Deliver(on_message, type_, std::string_view(), i);
      if (stop_) break;
    }
  }
  scanned_ = i;
  stop_ = false;
  return absl::OkStatus();
}

}  // namespace shardyard::wire
