// Big-endian readers and writers for PostgreSQL message bodies; every read is bounds-checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace shardyard::wire {

// Appends protocol-encoded values to a string.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Byte(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Int16(int16_t v) {
    uint16_t u = static_cast<uint16_t>(v);
    char b[2] = {static_cast<char>(u >> 8), static_cast<char>(u)};
    out_->append(b, 2);
  }
  void Int32(int32_t v) {
    uint32_t u = static_cast<uint32_t>(v);
    char b[4] = {static_cast<char>(u >> 24), static_cast<char>(u >> 16), static_cast<char>(u >> 8),
                 static_cast<char>(u)};
    out_->append(b, 4);
  }
  void Bytes(std::string_view v) { out_->append(v); }
  void CString(std::string_view v) {
    out_->append(v);
    out_->push_back('\0');
  }

  // Writes a message header (type byte, placeholder length); EndMessage fills in the length.
  size_t BeginMessage(char type) {
    out_->push_back(type);
    size_t at = out_->size();
    out_->append(4, '\0');
    return at;
  }
  // For the untyped startup-phase packets: only the placeholder length.
  size_t BeginUntyped() {
    size_t at = out_->size();
    out_->append(4, '\0');
    return at;
  }
  void EndMessage(size_t length_at) {
    uint32_t len = static_cast<uint32_t>(out_->size() - length_at);
    char* p = out_->data() + length_at;
    p[0] = static_cast<char>(len >> 24);
    p[1] = static_cast<char>(len >> 16);
    p[2] = static_cast<char>(len >> 8);
    p[3] = static_cast<char>(len);
  }

 private:
  std::string* out_;
};

inline uint32_t LoadBigEndian32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

// Reads protocol-encoded values from a message body. A read past the end, or a string without
// its terminator, sets a sticky failure and yields zero values; check ok() once at the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  uint8_t Byte() {
    if (!Need(1)) return 0;
    return static_cast<uint8_t>(data_[pos_++]);
  }
  int16_t Int16() {
    if (!Need(2)) return 0;
    uint16_t v = static_cast<uint16_t>((static_cast<uint8_t>(data_[pos_]) << 8) |
                                       static_cast<uint8_t>(data_[pos_ + 1]));
    pos_ += 2;
    return static_cast<int16_t>(v);
  }
  int32_t Int32() {
    if (!Need(4)) return 0;
    uint32_t v = LoadBigEndian32(data_.data() + pos_);
    pos_ += 4;
    return static_cast<int32_t>(v);
  }
  std::string_view Bytes(size_t n) {
    if (!Need(n)) return {};
    std::string_view v = data_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string_view CString() {
    if (!ok_) return {};
    size_t end = data_.find('\0', pos_);
    if (end == std::string_view::npos) {
      ok_ = false;
      return {};
    }
    std::string_view v = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return v;
  }
  std::string_view Rest() {
    std::string_view v = ok_ ? data_.substr(pos_) : std::string_view();
    pos_ = data_.size();
    return v;
  }
  // A count read from the wire, rejected if negative or larger than what could possibly follow.
  int32_t Count16(size_t min_bytes_each) { return CheckCount(Int16(), min_bytes_each); }
  int32_t Count32(size_t min_bytes_each) { return CheckCount(Int32(), min_bytes_each); }

  bool ok() const { return ok_; }
  bool AtEnd() const { return pos_ == data_.size(); }
  size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  void Fail() { ok_ = false; }

 private:
  int32_t CheckCount(int32_t n, size_t min_bytes_each) {
    if (n < 0 || static_cast<size_t>(n) * min_bytes_each > remaining()) {
      ok_ = false;
      return 0;
    }
    return n;
  }

  bool Need(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }

  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace shardyard::wire
