// Adapts OpenSSL's libcrypto to the small interface authentication uses.
#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace shardyard::crypto {

namespace {

// Fetched once: OpenSSL 3 otherwise looks each algorithm up in its provider tables (string
// comparisons under a lock) on every call, which dominated the cost of a login.
const EVP_MD* FetchedMd5() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  return md;
}
const EVP_MD* FetchedSha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// One digest context per thread, reused for every digest.
EVP_MD_CTX* ThreadDigestContext() {
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           EVP_MD_CTX_free);
  return ctx.get();
}

// Digest of the concatenation of `parts`; `out` must hold the digest size.
void Digest(const EVP_MD* md, std::initializer_list<std::span<const uint8_t>> parts,
            unsigned char* out) {
  EVP_MD_CTX* ctx = ThreadDigestContext();
  unsigned int len = 0;
  if (md == nullptr || EVP_DigestInit_ex2(ctx, md, nullptr) != 1) std::abort();
  for (auto part : parts) EVP_DigestUpdate(ctx, part.data(), part.size());
  EVP_DigestFinal_ex(ctx, out, &len);
}

}  // namespace

Sha256Digest Sha256(std::span<const uint8_t> data) {
  Sha256Digest out;
  Digest(FetchedSha256(), {data}, out.data());
  return out;
}

Sha256Digest HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  // RFC 2104 on top of the cached digest (OpenSSL's HMAC() fetches its MAC on every call).
  constexpr size_t kBlock = 64;
  std::array<uint8_t, kBlock> k{};
  if (key.size() > kBlock) {
    Sha256Digest hashed = Sha256(key);
    std::copy(hashed.begin(), hashed.end(), k.begin());
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<uint8_t, kBlock> ipad, opad;
  for (size_t i = 0; i < kBlock; ++i) {
    ipad[i] = k[i] ^ 0x36;
    opad[i] = k[i] ^ 0x5c;
  }
  Sha256Digest inner, out;
  Digest(FetchedSha256(), {ipad, data}, inner.data());
  Digest(FetchedSha256(), {opad, inner}, out.data());
  return out;
}

Sha256Digest Pbkdf2HmacSha256(std::string_view password, std::span<const uint8_t> salt,
                              int iterations) {
  Sha256Digest out;
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                    static_cast<int>(salt.size()), iterations, EVP_sha256(),
                    static_cast<int>(out.size()), out.data());
  return out;
}

void Md5Hex(std::string_view first, std::string_view second, std::span<char, 32> out) {
  unsigned char digest[16];
  Digest(FetchedMd5(), {AsBytes(first), AsBytes(second)}, digest);
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
}

void Md5Prefixed(std::string_view first, std::string_view second, std::span<char, 35> out) {
  out[0] = 'm';
  out[1] = 'd';
  out[2] = '5';
  Md5Hex(first, second, out.subspan<3, 32>());
}

std::string Md5Secret(std::string_view user, std::string_view password) {
  std::string secret(35, '\0');
  Md5Prefixed(password, user, std::span<char, 35>(secret.data(), 35));
  return secret;
}

std::string Md5Hex(std::string_view data) {
  std::string out(32, '\0');
  Md5Hex(data, {}, std::span<char, 32>(out.data(), 32));
  return out;
}

void RandomBytes(std::span<uint8_t> out) {
  // OpenSSL's generator costs thousands of instructions per call (it re-keys a cipher each
  // time), and every login needs a few random bytes: draw them from a per-thread buffer that
  // RAND_bytes refills 4 kB at a time. Bytes are handed out once and never reused.
  struct Pool {
    std::array<uint8_t, 4096> bytes;
    size_t used = 4096;
  };
  thread_local Pool pool;
  size_t done = 0;
  while (done < out.size()) {
    if (pool.used == pool.bytes.size()) {
      if (RAND_bytes(pool.bytes.data(), static_cast<int>(pool.bytes.size())) != 1) {
        // Without randomness no nonce or cancel key is safe; this cannot be recovered from.
        std::abort();
      }
      pool.used = 0;
    }
    size_t take = std::min(out.size() - done, pool.bytes.size() - pool.used);
    std::memcpy(out.data() + done, pool.bytes.data() + pool.used, take);
    OPENSSL_cleanse(pool.bytes.data() + pool.used, take);
    pool.used += take;
    done += take;
  }
}

uint32_t RandomUint32() {
  uint32_t v = 0;
  RandomBytes({reinterpret_cast<uint8_t*>(&v), sizeof(v)});
  return v;
}

std::string Base64Encode(std::span<const uint8_t> data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return absl::InvalidArgumentError("invalid base64 length");
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return absl::InvalidArgumentError("invalid base64");
  // EVP_DecodeBlock counts padding as zero bytes; drop them.
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace shardyard::crypto
