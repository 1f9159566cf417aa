// One type per PostgreSQL protocol 3.0 message, split by direction, with symmetric encode/decode.
//
// The same type byte means different things by direction ('D' is Describe from a client and
// DataRow from a server), so frontend (client → server) messages live in `fe` and backend
// (server → client) messages in `be`. The proxy decodes only what pooling needs and forwards
// everything else as raw bytes; these types are for the messages it does look at or generates.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/strings.h"
#include "wire/bytes.h"

namespace shardyard::wire {

inline constexpr int32_t kProtocolVersion30 = 3 << 16;
inline constexpr int32_t kCancelRequestCode = (1234 << 16) | 5678;
inline constexpr int32_t kSslRequestCode = (1234 << 16) | 5679;
inline constexpr int32_t kGssEncRequestCode = (1234 << 16) | 5680;

// A value that may be SQL NULL on the wire (length -1).
using NullableBytes = std::optional<std::string>;

namespace fe {

// Startup-phase packets carry no type byte; kType is 0 for them.
struct StartupMessage {
  static constexpr char kType = 0;
  int32_t protocol_version = kProtocolVersion30;
  std::vector<std::pair<std::string, std::string>> parameters;
  void EncodeBody(Writer& w) const;
  static StartupMessage DecodeBody(Reader& r);
  const std::string* Find(std::string_view name) const;
  bool operator==(const StartupMessage&) const = default;
};

struct SslRequest {
  static constexpr char kType = 0;
  void EncodeBody(Writer& w) const { w.Int32(kSslRequestCode); }
  static SslRequest DecodeBody(Reader& r);
  bool operator==(const SslRequest&) const = default;
};

struct GssEncRequest {
  static constexpr char kType = 0;
  void EncodeBody(Writer& w) const { w.Int32(kGssEncRequestCode); }
  static GssEncRequest DecodeBody(Reader& r);
  bool operator==(const GssEncRequest&) const = default;
};

struct CancelRequest {
  static constexpr char kType = 0;
  int32_t process_id = 0;
  int32_t secret_key = 0;
  void EncodeBody(Writer& w) const;
  static CancelRequest DecodeBody(Reader& r);
  bool operator==(const CancelRequest&) const = default;
};

// 'p' is PasswordMessage, SASLInitialResponse or SASLResponse depending on the auth exchange.
struct PasswordMessage {
  static constexpr char kType = 'p';
  std::string password;
  void EncodeBody(Writer& w) const { w.CString(password); }
  static PasswordMessage DecodeBody(Reader& r);
  bool operator==(const PasswordMessage&) const = default;
};

struct SaslInitialResponse {
  static constexpr char kType = 'p';
  std::string mechanism;
  NullableBytes data;
  void EncodeBody(Writer& w) const;
  static SaslInitialResponse DecodeBody(Reader& r);
  bool operator==(const SaslInitialResponse&) const = default;
};

struct SaslResponse {
  static constexpr char kType = 'p';
  std::string data;
  void EncodeBody(Writer& w) const { w.Bytes(data); }
  static SaslResponse DecodeBody(Reader& r) { return {std::string(r.Rest())}; }
  bool operator==(const SaslResponse&) const = default;
};

struct Query {
  static constexpr char kType = 'Q';
  std::string sql;
  void EncodeBody(Writer& w) const { w.CString(sql); }
  static Query DecodeBody(Reader& r) { return {std::string(r.CString())}; }
  bool operator==(const Query&) const = default;
};

struct Parse {
  static constexpr char kType = 'P';
  std::string statement;
  std::string query;
  std::vector<int32_t> parameter_types;
  void EncodeBody(Writer& w) const;
  static Parse DecodeBody(Reader& r);
  bool operator==(const Parse&) const = default;
};

struct Bind {
  static constexpr char kType = 'B';
  std::string portal;
  std::string statement;
  std::vector<int16_t> parameter_formats;
  std::vector<NullableBytes> parameters;
  std::vector<int16_t> result_formats;
  void EncodeBody(Writer& w) const;
  static Bind DecodeBody(Reader& r);
  bool operator==(const Bind&) const = default;
};

struct Describe {
  static constexpr char kType = 'D';
  char target = 'S';  // 'S' statement or 'P' portal
  std::string name;
  void EncodeBody(Writer& w) const;
  static Describe DecodeBody(Reader& r);
  bool operator==(const Describe&) const = default;
};

struct Execute {
  static constexpr char kType = 'E';
  std::string portal;
  int32_t max_rows = 0;
  void EncodeBody(Writer& w) const;
  static Execute DecodeBody(Reader& r);
  bool operator==(const Execute&) const = default;
};

struct Close {
  static constexpr char kType = 'C';
  char target = 'S';
  std::string name;
  void EncodeBody(Writer& w) const;
  static Close DecodeBody(Reader& r);
  bool operator==(const Close&) const = default;
};

struct Sync {
  static constexpr char kType = 'S';
  void EncodeBody(Writer&) const {}
  static Sync DecodeBody(Reader&) { return {}; }
  bool operator==(const Sync&) const = default;
};

struct Flush {
  static constexpr char kType = 'H';
  void EncodeBody(Writer&) const {}
  static Flush DecodeBody(Reader&) { return {}; }
  bool operator==(const Flush&) const = default;
};

struct Terminate {
  static constexpr char kType = 'X';
  void EncodeBody(Writer&) const {}
  static Terminate DecodeBody(Reader&) { return {}; }
  bool operator==(const Terminate&) const = default;
};

struct CopyFail {
  static constexpr char kType = 'f';
  std::string message;
  void EncodeBody(Writer& w) const { w.CString(message); }
  static CopyFail DecodeBody(Reader& r) { return {std::string(r.CString())}; }
  bool operator==(const CopyFail&) const = default;
};

struct FunctionCall {
  static constexpr char kType = 'F';
  int32_t function_oid = 0;
  std::vector<int16_t> argument_formats;
  std::vector<NullableBytes> arguments;
  int16_t result_format = 0;
  void EncodeBody(Writer& w) const;
  static FunctionCall DecodeBody(Reader& r);
  bool operator==(const FunctionCall&) const = default;
};

}  // namespace fe

// CopyData and CopyDone look the same in both directions.
struct CopyData {
  static constexpr char kType = 'd';
  std::string data;
  void EncodeBody(Writer& w) const { w.Bytes(data); }
  static CopyData DecodeBody(Reader& r) { return {std::string(r.Rest())}; }
  bool operator==(const CopyData&) const = default;
};

struct CopyDone {
  static constexpr char kType = 'c';
  void EncodeBody(Writer&) const {}
  static CopyDone DecodeBody(Reader&) { return {}; }
  bool operator==(const CopyDone&) const = default;
};

namespace be {

// All 'R' messages; `code` says which. `data` holds the MD5 salt or SASL payload.
struct Authentication {
  static constexpr char kType = 'R';
  static constexpr int32_t kOk = 0;
  static constexpr int32_t kKerberosV5 = 2;
  static constexpr int32_t kCleartextPassword = 3;
  static constexpr int32_t kMd5Password = 5;
  static constexpr int32_t kGss = 7;
  static constexpr int32_t kGssContinue = 8;
  static constexpr int32_t kSspi = 9;
  static constexpr int32_t kSasl = 10;
  static constexpr int32_t kSaslContinue = 11;
  static constexpr int32_t kSaslFinal = 12;
  int32_t code = kOk;
  std::string data;                     // kMd5Password (4-byte salt), kSaslContinue, kSaslFinal
  std::vector<std::string> mechanisms;  // kSasl
  void EncodeBody(Writer& w) const;
  static Authentication DecodeBody(Reader& r);
  bool operator==(const Authentication&) const = default;
};

struct BackendKeyData {
  static constexpr char kType = 'K';
  int32_t process_id = 0;
  int32_t secret_key = 0;
  void EncodeBody(Writer& w) const;
  static BackendKeyData DecodeBody(Reader& r);
  bool operator==(const BackendKeyData&) const = default;
};

struct ParameterStatus {
  static constexpr char kType = 'S';
  std::string name;
  std::string value;
  void EncodeBody(Writer& w) const;
  static ParameterStatus DecodeBody(Reader& r);
  bool operator==(const ParameterStatus&) const = default;
};

// Transaction status as ReadyForQuery reports it.
enum class TxStatus : char { kIdle = 'I', kInTransaction = 'T', kFailed = 'E' };

struct ReadyForQuery {
  static constexpr char kType = 'Z';
  TxStatus status = TxStatus::kIdle;
  void EncodeBody(Writer& w) const { w.Byte(static_cast<uint8_t>(status)); }
  static ReadyForQuery DecodeBody(Reader& r);
  bool operator==(const ReadyForQuery&) const = default;
};

// The field list shared by ErrorResponse and NoticeResponse.
struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;
  std::string_view Get(char code) const;
  std::string_view severity() const { return Get('V').empty() ? Get('S') : Get('V'); }
  std::string_view sqlstate() const { return Get('C'); }
  std::string_view message() const { return Get('M'); }
  void EncodeBody(Writer& w) const;
  static bool DecodeInto(Reader& r, ErrorFields* out);
  bool operator==(const ErrorFields&) const = default;
};

struct ErrorResponse : ErrorFields {
  static constexpr char kType = 'E';
  static ErrorResponse DecodeBody(Reader& r);
};

struct NoticeResponse : ErrorFields {
  static constexpr char kType = 'N';
  static NoticeResponse DecodeBody(Reader& r);
};

struct CommandComplete {
  static constexpr char kType = 'C';
  std::string tag;
  void EncodeBody(Writer& w) const { w.CString(tag); }
  static CommandComplete DecodeBody(Reader& r) { return {std::string(r.CString())}; }
  bool operator==(const CommandComplete&) const = default;
};

struct EmptyQueryResponse {
  static constexpr char kType = 'I';
  void EncodeBody(Writer&) const {}
  static EmptyQueryResponse DecodeBody(Reader&) { return {}; }
  bool operator==(const EmptyQueryResponse&) const = default;
};

struct FieldDescription {
  std::string name;
  int32_t table_oid = 0;
  int16_t column = 0;
  int32_t type_oid = 0;
  int16_t type_size = 0;
  int32_t type_modifier = -1;
  int16_t format = 0;
  bool operator==(const FieldDescription&) const = default;
};

struct RowDescription {
  static constexpr char kType = 'T';
  std::vector<FieldDescription> fields;
  void EncodeBody(Writer& w) const;
  static RowDescription DecodeBody(Reader& r);
  bool operator==(const RowDescription&) const = default;
};

struct DataRow {
  static constexpr char kType = 'D';
  std::vector<NullableBytes> values;
  void EncodeBody(Writer& w) const;
  static DataRow DecodeBody(Reader& r);
  bool operator==(const DataRow&) const = default;
};

// The one-byte acknowledgements of the extended protocol.
template <char Type>
struct EmptyMessage {
  static constexpr char kType = Type;
  void EncodeBody(Writer&) const {}
  static EmptyMessage DecodeBody(Reader&) { return {}; }
  bool operator==(const EmptyMessage&) const = default;
};
using ParseComplete = EmptyMessage<'1'>;
using BindComplete = EmptyMessage<'2'>;
using CloseComplete = EmptyMessage<'3'>;
using NoData = EmptyMessage<'n'>;
using PortalSuspended = EmptyMessage<'s'>;

struct ParameterDescription {
  static constexpr char kType = 't';
  std::vector<int32_t> type_oids;
  void EncodeBody(Writer& w) const;
  static ParameterDescription DecodeBody(Reader& r);
  bool operator==(const ParameterDescription&) const = default;
};

// CopyInResponse 'G', CopyOutResponse 'H' and CopyBothResponse 'W' share one layout.
template <char Type>
struct CopyResponse {
  static constexpr char kType = Type;
  int8_t format = 0;  // 0 text, 1 binary
  std::vector<int16_t> column_formats;
  void EncodeBody(Writer& w) const {
    w.Byte(static_cast<uint8_t>(format));
    w.Int16(static_cast<int16_t>(column_formats.size()));
    for (int16_t f : column_formats) w.Int16(f);
  }
  static CopyResponse DecodeBody(Reader& r) {
    CopyResponse m;
    m.format = static_cast<int8_t>(r.Byte());
    int32_t n = r.Count16(2);
    for (int32_t i = 0; i < n; ++i) m.column_formats.push_back(r.Int16());
    return m;
  }
  bool operator==(const CopyResponse&) const = default;
};
using CopyInResponse = CopyResponse<'G'>;
using CopyOutResponse = CopyResponse<'H'>;
using CopyBothResponse = CopyResponse<'W'>;

struct NotificationResponse {
  static constexpr char kType = 'A';
  int32_t process_id = 0;
  std::string channel;
  std::string payload;
  void EncodeBody(Writer& w) const;
  static NotificationResponse DecodeBody(Reader& r);
  bool operator==(const NotificationResponse&) const = default;
};

struct FunctionCallResponse {
  static constexpr char kType = 'V';
  NullableBytes result;
  void EncodeBody(Writer& w) const;
  static FunctionCallResponse DecodeBody(Reader& r);
  bool operator==(const FunctionCallResponse&) const = default;
};

struct NegotiateProtocolVersion {
  static constexpr char kType = 'v';
  int32_t newest_minor = 0;
  std::vector<std::string> unrecognized_options;
  void EncodeBody(Writer& w) const;
  static NegotiateProtocolVersion DecodeBody(Reader& r);
  bool operator==(const NegotiateProtocolVersion&) const = default;
};

}  // namespace be

// Appends one whole message (type byte unless kType is 0, length, body) to `out`.
template <typename M>
void Encode(const M& message, std::string* out) {
  Writer w(out);
  size_t at = M::kType == 0 ? w.BeginUntyped() : w.BeginMessage(M::kType);
  message.EncodeBody(w);
  w.EndMessage(at);
}

template <typename M>
std::string Encode(const M& message) {
  std::string out;
  Encode(message, &out);
  return out;
}

// Decodes a message body (without type and length). Fails on truncation or trailing bytes.
template <typename M>
absl::StatusOr<M> Decode(std::string_view body) {
  Reader r(body);
  M m = M::DecodeBody(r);
  if (!r.ok() || !r.AtEnd()) {
    return absl::InvalidArgumentError(
        Cat("malformed message of type '", M::kType == 0 ? '?' : M::kType, "'"));
  }
  return m;
}

}  // namespace shardyard::wire
