// Implements ByteBuffer with a small per-thread cache of standard-size blocks.
#include "wire/buffer.h"

#include <cstdlib>
#include <utility>
#include <vector>

namespace shardyard::wire {
namespace {

// Blocks freed on this thread, reused before asking malloc again.
struct BlockCache {
  std::vector<char*> blocks;
  ~BlockCache() {
    for (char* b : blocks) std::free(b);
  }
};

// Enough for the connections a thread keeps busy at once; more would only pin idle memory.
constexpr size_t kMaxCachedBlocks = 8;

thread_local BlockCache t_cache;

char* AllocateBlock(size_t size) {
  if (size == ByteBuffer::kBlockSize && !t_cache.blocks.empty()) {
    char* b = t_cache.blocks.back();
    t_cache.blocks.pop_back();
    return b;
  }
  char* p = static_cast<char*>(std::malloc(size));
  if (p == nullptr) std::abort();
  return p;
}

void FreeBlock(char* p, size_t size) {
  if (size == ByteBuffer::kBlockSize && t_cache.blocks.size() < kMaxCachedBlocks) {
    t_cache.blocks.push_back(p);
    return;
  }
  std::free(p);
}

}  // namespace

ByteBuffer& ByteBuffer::operator=(ByteBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    cap_ = std::exchange(other.cap_, 0);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
  }
  return *this;
}

std::span<char> ByteBuffer::PrepareWrite(size_t min) {
  if (cap_ - end_ >= min) return {data_ + end_, size_t{cap_} - end_};
  uint32_t used = end_ - begin_;
  if (begin_ > 0 && cap_ - used >= min) {
    std::memmove(data_, data_ + begin_, used);
    begin_ = 0;
    end_ = used;
    return {data_ + end_, size_t{cap_} - end_};
  }
  size_t want = used + min;
  size_t cap = kBlockSize;
  while (cap < want) cap *= 2;
  char* fresh = AllocateBlock(cap);
  if (used > 0) std::memcpy(fresh, data_ + begin_, used);
  if (data_ != nullptr) FreeBlock(data_, cap_);
  data_ = fresh;
  cap_ = static_cast<uint32_t>(cap);
  begin_ = 0;
  end_ = used;
  return {data_ + end_, size_t{cap_} - end_};
}

void ByteBuffer::Append(std::string_view bytes) {
  std::span<char> space = PrepareWrite(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  CommitWrite(bytes.size());
}

void ByteBuffer::ShrinkToFit() {
  uint32_t used = end_ - begin_;
  if (used == 0) {
    Release();
    return;
  }
  uint32_t cap = (used + 63) & ~uint32_t{63};
  if (cap >= cap_) return;
  char* fresh = AllocateBlock(cap);
  std::memcpy(fresh, data_ + begin_, used);
  FreeBlock(data_, cap_);
  data_ = fresh;
  cap_ = cap;
  begin_ = 0;
  end_ = used;
}

void ByteBuffer::Consume(size_t n) {
  begin_ += static_cast<uint32_t>(n);
  if (begin_ == end_) begin_ = end_ = 0;
}

void ByteBuffer::Release() {
  if (data_ != nullptr) FreeBlock(data_, cap_);
  data_ = nullptr;
  cap_ = begin_ = end_ = 0;
}

}  // namespace shardyard::wire
