// Encoders and decoders for the protocol messages declared in messages.h.
#include "wire/messages.h"

namespace shardyard::wire {
namespace {

void EncodeNullable(Writer& w, const NullableBytes& v) {
  if (!v) {
    w.Int32(-1);
    return;
  }
  w.Int32(static_cast<int32_t>(v->size()));
  w.Bytes(*v);
}

NullableBytes DecodeNullable(Reader& r) {
  int32_t len = r.Int32();
  if (len == -1) return std::nullopt;
  if (len < 0 || static_cast<size_t>(len) > r.remaining()) {
    r.Fail();
    return std::nullopt;
  }
  return std::string(r.Bytes(static_cast<size_t>(len)));
}

void EncodeInt16List(Writer& w, const std::vector<int16_t>& v) {
  w.Int16(static_cast<int16_t>(v.size()));
  for (int16_t x : v) w.Int16(x);
}

std::vector<int16_t> DecodeInt16List(Reader& r) {
  std::vector<int16_t> v;
  int32_t n = r.Count16(2);
  v.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) v.push_back(r.Int16());
  return v;
}

// Describe and Close: 'S' (statement) or 'P' (portal), then a name.
void EncodeTargetName(Writer& w, char target, const std::string& name) {
  w.Byte(static_cast<uint8_t>(target));
  w.CString(name);
}

void DecodeTargetName(Reader& r, char* target, std::string* name) {
  *target = static_cast<char>(r.Byte());
  if (*target != 'S' && *target != 'P') r.Fail();
  *name = std::string(r.CString());
}

}  // namespace

namespace fe {

void StartupMessage::EncodeBody(Writer& w) const {
  w.Int32(protocol_version);
  for (const auto& [name, value] : parameters) {
    w.CString(name);
    w.CString(value);
  }
  w.Byte(0);
}

StartupMessage StartupMessage::DecodeBody(Reader& r) {
  StartupMessage m;
  m.protocol_version = r.Int32();
  m.parameters.reserve(8);  // drivers send 2 to 8 (user, database, application_name, ...)
  while (r.ok()) {
    std::string_view name = r.CString();
    if (name.empty()) break;  // the terminating NUL
    std::string_view value = r.CString();
    m.parameters.emplace_back(std::string(name), std::string(value));
  }
  return m;
}

const std::string* StartupMessage::Find(std::string_view name) const {
  for (const auto& [n, v] : parameters) {
    if (n == name) return &v;
  }
  return nullptr;
}

SslRequest SslRequest::DecodeBody(Reader& r) {
  if (r.Int32() != kSslRequestCode) r.Fail();
  return {};
}

GssEncRequest GssEncRequest::DecodeBody(Reader& r) {
  if (r.Int32() != kGssEncRequestCode) r.Fail();
  return {};
}

void CancelRequest::EncodeBody(Writer& w) const {
  w.Int32(kCancelRequestCode);
  w.Int32(process_id);
  w.Int32(secret_key);
}

CancelRequest CancelRequest::DecodeBody(Reader& r) {
  if (r.Int32() != kCancelRequestCode) r.Fail();
  CancelRequest m;
  m.process_id = r.Int32();
  m.secret_key = r.Int32();
  return m;
}

PasswordMessage PasswordMessage::DecodeBody(Reader& r) { return {std::string(r.CString())}; }

void SaslInitialResponse::EncodeBody(Writer& w) const {
  w.CString(mechanism);
  EncodeNullable(w, data);
}

SaslInitialResponse SaslInitialResponse::DecodeBody(Reader& r) {
  SaslInitialResponse m;
  m.mechanism = std::string(r.CString());
  m.data = DecodeNullable(r);
  return m;
}

void Parse::EncodeBody(Writer& w) const {
  w.CString(statement);
  w.CString(query);
  w.Int16(static_cast<int16_t>(parameter_types.size()));
  for (int32_t t : parameter_types) w.Int32(t);
}

Parse Parse::DecodeBody(Reader& r) {
  Parse m;
  m.statement = std::string(r.CString());
  m.query = std::string(r.CString());
  int32_t n = r.Count16(4);
  for (int32_t i = 0; i < n; ++i) m.parameter_types.push_back(r.Int32());
  return m;
}

void Bind::EncodeBody(Writer& w) const {
  w.CString(portal);
  w.CString(statement);
  EncodeInt16List(w, parameter_formats);
  w.Int16(static_cast<int16_t>(parameters.size()));
  for (const auto& p : parameters) EncodeNullable(w, p);
  EncodeInt16List(w, result_formats);
}

Bind Bind::DecodeBody(Reader& r) {
  Bind m;
  m.portal = std::string(r.CString());
  m.statement = std::string(r.CString());
  m.parameter_formats = DecodeInt16List(r);
  int32_t n = r.Count16(4);
  for (int32_t i = 0; i < n && r.ok(); ++i) m.parameters.push_back(DecodeNullable(r));
  m.result_formats = DecodeInt16List(r);
  return m;
}

void Describe::EncodeBody(Writer& w) const { EncodeTargetName(w, target, name); }

Describe Describe::DecodeBody(Reader& r) {
  Describe m;
  DecodeTargetName(r, &m.target, &m.name);
  return m;
}

void Execute::EncodeBody(Writer& w) const {
  w.CString(portal);
  w.Int32(max_rows);
}

Execute Execute::DecodeBody(Reader& r) {
  Execute m;
  m.portal = std::string(r.CString());
  m.max_rows = r.Int32();
  return m;
}

void Close::EncodeBody(Writer& w) const { EncodeTargetName(w, target, name); }

Close Close::DecodeBody(Reader& r) {
  Close m;
  DecodeTargetName(r, &m.target, &m.name);
  return m;
}

void FunctionCall::EncodeBody(Writer& w) const {
  w.Int32(function_oid);
  EncodeInt16List(w, argument_formats);
  w.Int16(static_cast<int16_t>(arguments.size()));
  for (const auto& a : arguments) EncodeNullable(w, a);
  w.Int16(result_format);
}

FunctionCall FunctionCall::DecodeBody(Reader& r) {
  FunctionCall m;
  m.function_oid = r.Int32();
  m.argument_formats = DecodeInt16List(r);
  int32_t n = r.Count16(4);
  for (int32_t i = 0; i < n && r.ok(); ++i) m.arguments.push_back(DecodeNullable(r));
  m.result_format = r.Int16();
  return m;
}

}  // namespace fe

namespace be {

void Authentication::EncodeBody(Writer& w) const {
  w.Int32(code);
  if (code == kSasl) {
    for (const auto& m : mechanisms) w.CString(m);
    w.Byte(0);
  } else {
    w.Bytes(data);
  }
}

Authentication Authentication::DecodeBody(Reader& r) {
  Authentication m;
  m.code = r.Int32();
  switch (m.code) {
    case kSasl:
      while (r.ok()) {
        std::string_view mech = r.CString();
        if (mech.empty()) break;
        m.mechanisms.emplace_back(mech);
      }
      break;
    case kMd5Password:
      m.data = std::string(r.Bytes(4));
      break;
    default:
      m.data = std::string(r.Rest());
      break;
  }
  return m;
}

void BackendKeyData::EncodeBody(Writer& w) const {
  w.Int32(process_id);
  w.Int32(secret_key);
}

BackendKeyData BackendKeyData::DecodeBody(Reader& r) {
  BackendKeyData m;
  m.process_id = r.Int32();
  m.secret_key = r.Int32();
  return m;
}

void ParameterStatus::EncodeBody(Writer& w) const {
  w.CString(name);
  w.CString(value);
}

ParameterStatus ParameterStatus::DecodeBody(Reader& r) {
  ParameterStatus m;
  m.name = std::string(r.CString());
  m.value = std::string(r.CString());
  return m;
}

ReadyForQuery ReadyForQuery::DecodeBody(Reader& r) {
  char s = static_cast<char>(r.Byte());
  if (s != 'I' && s != 'T' && s != 'E') r.Fail();
  return {static_cast<TxStatus>(s)};
}

std::string_view ErrorFields::Get(char code) const {
  for (const auto& [c, v] : fields) {
    if (c == code) return v;
  }
  return {};
}

void ErrorFields::EncodeBody(Writer& w) const {
  for (const auto& [code, value] : fields) {
    w.Byte(static_cast<uint8_t>(code));
    w.CString(value);
  }
  w.Byte(0);
}

bool ErrorFields::DecodeInto(Reader& r, ErrorFields* out) {
  while (r.ok()) {
    char code = static_cast<char>(r.Byte());
    if (code == 0) return true;
    out->fields.emplace_back(code, std::string(r.CString()));
  }
  return false;
}

ErrorResponse ErrorResponse::DecodeBody(Reader& r) {
  ErrorResponse m;
  DecodeInto(r, &m);
  return m;
}

NoticeResponse NoticeResponse::DecodeBody(Reader& r) {
  NoticeResponse m;
  DecodeInto(r, &m);
  return m;
}

void RowDescription::EncodeBody(Writer& w) const {
  w.Int16(static_cast<int16_t>(fields.size()));
  for (const auto& f : fields) {
    w.CString(f.name);
    w.Int32(f.table_oid);
    w.Int16(f.column);
    w.Int32(f.type_oid);
    w.Int16(f.type_size);
    w.Int32(f.type_modifier);
    w.Int16(f.format);
  }
}

RowDescription RowDescription::DecodeBody(Reader& r) {
  RowDescription m;
  int32_t n = r.Count16(19);
  for (int32_t i = 0; i < n && r.ok(); ++i) {
    FieldDescription f;
    f.name = std::string(r.CString());
    f.table_oid = r.Int32();
    f.column = r.Int16();
    f.type_oid = r.Int32();
    f.type_size = r.Int16();
    f.type_modifier = r.Int32();
    f.format = r.Int16();
    m.fields.push_back(std::move(f));
  }
  return m;
}

void DataRow::EncodeBody(Writer& w) const {
  w.Int16(static_cast<int16_t>(values.size()));
  for (const auto& v : values) EncodeNullable(w, v);
}

DataRow DataRow::DecodeBody(Reader& r) {
  DataRow m;
  int32_t n = r.Count16(4);
  for (int32_t i = 0; i < n && r.ok(); ++i) m.values.push_back(DecodeNullable(r));
  return m;
}

void ParameterDescription::EncodeBody(Writer& w) const {
  w.Int16(static_cast<int16_t>(type_oids.size()));
  for (int32_t t : type_oids) w.Int32(t);
}

ParameterDescription ParameterDescription::DecodeBody(Reader& r) {
  ParameterDescription m;
  int32_t n = r.Count16(4);
  for (int32_t i = 0; i < n; ++i) m.type_oids.push_back(r.Int32());
  return m;
}

void NotificationResponse::EncodeBody(Writer& w) const {
  w.Int32(process_id);
  w.CString(channel);
  w.CString(payload);
}

NotificationResponse NotificationResponse::DecodeBody(Reader& r) {
  NotificationResponse m;
  m.process_id = r.Int32();
  m.channel = std::string(r.CString());
  m.payload = std::string(r.CString());
  return m;
}

void FunctionCallResponse::EncodeBody(Writer& w) const { EncodeNullable(w, result); }

FunctionCallResponse FunctionCallResponse::DecodeBody(Reader& r) { return {DecodeNullable(r)}; }

void NegotiateProtocolVersion::EncodeBody(Writer& w) const {
  w.Int32(newest_minor);
  w.Int32(static_cast<int32_t>(unrecognized_options.size()));
  for (const auto& o : unrecognized_options) w.CString(o);
}

NegotiateProtocolVersion NegotiateProtocolVersion::DecodeBody(Reader& r) {
  NegotiateProtocolVersion m;
  m.newest_minor = r.Int32();
  int32_t n = r.Count32(1);
  for (int32_t i = 0; i < n && r.ok(); ++i) m.unrecognized_options.emplace_back(r.CString());
  return m;
}

}  // namespace be
}  // namespace shardyard::wire
