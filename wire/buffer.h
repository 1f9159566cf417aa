// A growable byte buffer for socket I/O that gives its memory back when empty, so idle
// connections hold no buffer at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace shardyard::wire {

class ByteBuffer {
 public:
  // Most reads and writes fit a block of this size; such blocks are recycled per thread.
  static constexpr size_t kBlockSize = 16 * 1024;

  ByteBuffer() = default;
  ~ByteBuffer() { Release(); }
  ByteBuffer(ByteBuffer&& other) noexcept { *this = std::move(other); }
  ByteBuffer& operator=(ByteBuffer&& other) noexcept;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;

  // Unconsumed bytes.
  std::string_view data() const { return {data_ + begin_, end_ - begin_}; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }

  // Writable space of at least `min` bytes after the data (compacting or growing as needed).
  std::span<char> PrepareWrite(size_t min);
  void CommitWrite(size_t n) { end_ += static_cast<uint32_t>(n); }
  void Append(std::string_view bytes);

  void Consume(size_t n);
  void Clear() { begin_ = end_ = 0; }
  // Frees the storage if no bytes are held.
  void ReleaseIfEmpty() {
    if (empty()) Release();
  }
  // Moves a few held bytes out of a standard block into storage of about their size (a client
  // queued for a server keeps its query, not 16 kB, while it waits).
  void ShrinkToFit();
  size_t capacity() const { return cap_; }

 private:
  void Release();

  // 32-bit offsets keep the buffer at 24 bytes (every client has two); messages are bounded by
  // max_message_size (at most 1 GB).
  char* data_ = nullptr;
  uint32_t cap_ = 0;
  uint32_t begin_ = 0;
  uint32_t end_ = 0;
};

}  // namespace shardyard::wire
