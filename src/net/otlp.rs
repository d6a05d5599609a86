//! OpenTelemetry logs over HTTP (OTLP/HTTP) on `POST /v1/logs`, without I/O: decoding
//! an `ExportLogsServiceRequest`, mapping each `LogRecord` to one stored JSON record,
//! and encoding the responses. The connection driver ([`super::http`]) only dispatches
//! to it and writes what it returns.
//!
//! The message types come from the `opentelemetry-proto` crate: prost code generated
//! from the official `.proto` files, with serde implementing OTLP/JSON (lowerCamelCase
//! keys, hex trace and span ids, 64-bit integers as numbers or strings, enums as
//! integers). Nothing here parses protobuf by hand.
//!
//! A record is the JSON object described in `docs/protocol.md` ("OTLP → record"):
//! `service`, `level`, `message` and `timestamp` sit where the JSON path puts them, so
//! the read filters (`?service=`, `?level=`, `?q=`) and the dashboard see OTLP records
//! like any other; the enrichment and validation of [`JsonPolicy`] apply to each.

use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    common::v1::{KeyValue, any_value::Value as Any},
    logs::v1::LogRecord,
};
use prost::Message;
use serde_json::{Map, Value, json};

use super::enrich::{JsonPolicy, RequestInfo};

/// The encoding of an OTLP request, which is also that of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf, `application/x-protobuf`.
    Protobuf,
    /// OTLP/JSON, `application/json`.
    Json,
}

impl Encoding {
    /// The media type of a response in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// A body that is not an `ExportLogsServiceRequest` (answered 400 with a `Status`).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The protobuf did not decode.
    #[error("undecodable ExportLogsServiceRequest (protobuf): {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON object carries `resourceLogs` but is not OTLP/JSON.
    #[error("undecodable ExportLogsServiceRequest (OTLP/JSON): {0}")]
    Json(#[from] serde_json::Error),
    /// The body holds more items than the bound, counted before decoding (answered
    /// 413).
    #[error(
        "the request holds more than logs_body_items_max ({max}) items (log records, attributes, values); nothing was stored, send smaller batches"
    )]
    TooManyItems {
        /// `logs_body_items_max`.
        max: usize,
    },
    /// The records would render to more than the bound (answered 413).
    #[error(
        "the request's log records render to more than otlp_records_bytes_max ({max} bytes) of JSON (each repeats its resource's attributes); nothing was stored, send smaller batches"
    )]
    RecordsTooLarge {
        /// `otlp_records_bytes_max`.
        max: usize,
    },
}

/// Decodes a binary protobuf request.
///
/// # Errors
/// [`OtlpError::Protobuf`] when the bytes are not an `ExportLogsServiceRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<ExportLogsServiceRequest, OtlpError> {
    Ok(ExportLogsServiceRequest::decode(body)?)
}

/// Whether a parsed `application/json` body is OTLP/JSON: an object carrying
/// `resourceLogs`. Anything else (an array, an object without it) is a plain log
/// object and keeps the JSON path's meaning.
pub fn is_otlp_json(body: &Value) -> bool {
    body.as_object()
        .is_some_and(|o| o.contains_key("resourceLogs"))
}

/// Decodes an OTLP/JSON request already parsed as JSON (the body is parsed once, to
/// tell OTLP/JSON from a plain log object).
///
/// # Errors
/// [`OtlpError::Json`] naming the field that does not fit the OTLP/JSON schema.
pub fn decode_json(body: Value) -> Result<ExportLogsServiceRequest, OtlpError> {
    Ok(serde_json::from_value(body)?)
}

/// The records of one request, ready to store, and those refused.
#[derive(Debug, Default)]
pub struct Mapped {
    /// One compact JSON record per accepted `LogRecord`, in request order.
    pub records: Vec<Vec<u8>>,
    /// `LogRecord`s refused (validation, or over `record_bytes_max`).
    pub rejected: u64,
    /// Why the first refused record was refused.
    pub first_rejection: Option<String>,
}

impl Mapped {
    /// The `error_message` of the partial success: empty when nothing was refused.
    pub fn error_message(&self) -> String {
        match &self.first_rejection {
            None => String::new(),
            Some(first) => format!(
                "{} of {} log records rejected (not stored, do not retry them); first: {first}",
                self.rejected,
                self.rejected + self.records.len() as u64
            ),
        }
    }
}

/// How much a request's records may cost.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest record (`record_bytes_max`): a larger one is refused alone.
    pub record_bytes_max: usize,
    /// Most bytes of JSON one request may render (`otlp_records_bytes_max`; records
    /// refused for their own size count, those refused by validation do not). Every record repeats its resource's attributes, so
    /// without it a few KiB of resource and a body of empty `LogRecord`s (2 bytes each)
    /// would make a reactor render and hold gigabytes.
    pub rendered_bytes_max: usize,
}

/// Maps every `LogRecord` of `req` to a record; a record that fails `policy`'s
/// validation or renders over `record_bytes_max` is refused alone, so that one bad
/// record does not make an exporter drop (a 400) or resend (a 5xx) its whole batch:
/// OTLP's partial success reports it instead.
///
/// # Errors
/// [`OtlpError::RecordsTooLarge`] past `rendered_bytes_max`: the whole request is
/// refused (the exporter must split it, and nothing of it was stored).
pub fn map_request(
    req: ExportLogsServiceRequest,
    policy: &JsonPolicy,
    info: &RequestInfo,
    bounds: Bounds,
) -> Result<Mapped, OtlpError> {
    let mut out = Mapped::default();
    let mut index = 0usize;
    let mut rendered = 0usize;
    let refuse = |out: &mut Mapped, why: String| {
        out.rejected += 1;
        out.first_rejection.get_or_insert(why);
    };
    for rl in req.resource_logs {
        let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            });
        let resource = (!resource.is_empty()).then(|| Value::Object(attributes(resource)));
        for sl in rl.scope_logs {
            let scope = sl.scope.filter(|s| !s.name.is_empty()).map(|s| {
                let mut o = Map::new();
                o.insert("name".into(), s.name.into());
                if !s.version.is_empty() {
                    o.insert("version".into(), s.version.into());
                }
                Value::Object(o)
            });
            for lr in sl.log_records {
                let i = index;
                index += 1;
                let mut obj = record(lr, service.as_deref());
                // The resource and the scope join the record after validation, which
                // does not read them, so that a refused record costs no copy of them;
                // they go before the enrichment fields `apply` appends.
                let mut at = obj.len();
                if let Err(why) = policy.apply(i, &mut obj, info) {
                    refuse(&mut out, why);
                    continue;
                }
                if let Some(r) = &resource {
                    obj.shift_insert(at, "resource".into(), r.clone());
                    at += 1;
                }
                if let Some(sc) = &scope {
                    obj.shift_insert(at, "scope".into(), sc.clone());
                }
                // One allocation per record, as on the JSON path: the object is
                // serialised once, compactly, and that text is what is stored.
                let bytes = serde_json::to_vec(&obj).expect("json");
                rendered += bytes.len();
                if rendered > bounds.rendered_bytes_max {
                    return Err(OtlpError::RecordsTooLarge {
                        max: bounds.rendered_bytes_max,
                    });
                }
                if bytes.len() > bounds.record_bytes_max {
                    let why = format!(
                        "log record {i} is {} bytes as JSON, over record_bytes_max ({})",
                        bytes.len(),
                        bounds.record_bytes_max
                    );
                    refuse(&mut out, why);
                    continue;
                }
                out.records.push(bytes);
            }
        }
    }
    Ok(out)
}

/// The short name of the OpenTelemetry data model for a severity number (1..=24); an
/// unspecified (0) or unknown number falls back to `severity_text` when that names a
/// level (the data model's names, and the syslog and .NET/Java ones senders use:
/// `notice` and `information` are `info`, `critical`, `emergency` and `alert` are
/// `fatal`), and otherwise there is no level (the text is kept as `severity_text`), so
/// that `json_validate` never refuses a record for a name it does not know.
pub fn level(severity_number: i32, severity_text: &str) -> Option<String> {
    let name = match severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => level_of_text(severity_text)?,
    };
    Some(name.to_owned())
}

fn level_of_text(text: &str) -> Option<&'static str> {
    const NAMES: [(&str, &str); 16] = [
        ("trace", "trace"),
        ("verbose", "trace"),
        ("debug", "debug"),
        ("info", "info"),
        ("information", "info"),
        ("notice", "info"),
        ("warn", "warn"),
        ("warning", "warn"),
        ("error", "error"),
        ("err", "error"),
        ("fatal", "fatal"),
        ("critical", "fatal"),
        ("crit", "fatal"),
        ("emergency", "fatal"),
        ("emerg", "fatal"),
        ("alert", "fatal"),
    ];
    let text = text.trim();
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
        .map(|&(_, level)| level)
}

/// One `LogRecord` as a JSON object; fields the sender left at their default (empty,
/// zero) are omitted, as protobuf cannot tell them from absent.
fn record(lr: LogRecord, service: Option<&str>) -> Map<String, Value> {
    let mut o = Map::new();
    let time = if lr.time_unix_nano != 0 {
        lr.time_unix_nano
    } else {
        lr.observed_time_unix_nano
    };
    if time != 0 {
        o.insert(
            "timestamp".into(),
            crate::query::render::format_ts(time).into(),
        );
    }
    if let Some(s) = service {
        o.insert("service".into(), s.into());
    }
    if let Some(l) = level(lr.severity_number, &lr.severity_text) {
        o.insert("level".into(), l.into());
    }
    if lr.severity_number != 0 {
        o.insert("severity_number".into(), lr.severity_number.into());
    }
    if !lr.severity_text.is_empty() {
        o.insert("severity_text".into(), lr.severity_text.into());
    }
    match lr.body.and_then(|b| b.value) {
        Some(Any::StringValue(s)) => {
            o.insert("message".into(), s.into());
        }
        // Other kinds are rendered as JSON text: `message` stays a string, which the
        // dashboard, `?q=` and validation expect.
        Some(other) => {
            o.insert("message".into(), any(other).to_string().into());
        }
        None => {}
    }
    if !lr.event_name.is_empty() {
        o.insert("event_name".into(), lr.event_name.into());
    }
    if !lr.attributes.is_empty() {
        o.insert(
            "attributes".into(),
            Value::Object(attributes(lr.attributes)),
        );
    }
    if lr.dropped_attributes_count != 0 {
        o.insert(
            "dropped_attributes_count".into(),
            lr.dropped_attributes_count.into(),
        );
    }
    if !lr.trace_id.is_empty() {
        o.insert("trace_id".into(), hex(&lr.trace_id).into());
    }
    if !lr.span_id.is_empty() {
        o.insert("span_id".into(), hex(&lr.span_id).into());
    }
    if lr.flags != 0 {
        o.insert("flags".into(), lr.flags.into());
    }
    o
}

/// Attributes as a JSON object; a repeated key keeps its last value.
fn attributes(kvs: Vec<KeyValue>) -> Map<String, Value> {
    kvs.into_iter()
        .map(|kv| {
            (
                kv.key,
                kv.value.and_then(|v| v.value).map_or(Value::Null, any),
            )
        })
        .collect()
}

/// An `AnyValue` as JSON: bytes as base64 (as in OTLP/JSON), a double that JSON cannot
/// hold (NaN, ±∞) as its name, and the profiles-only string-table index as null.
fn any(v: Any) -> Value {
    match v {
        Any::StringValue(s) => s.into(),
        Any::BoolValue(b) => b.into(),
        Any::IntValue(i) => i.into(),
        Any::DoubleValue(d) => {
            serde_json::Number::from_f64(d).map_or_else(|| d.to_string().into(), Value::Number)
        }
        Any::ArrayValue(a) => a
            .values
            .into_iter()
            .map(|v| v.value.map_or(Value::Null, any))
            .collect(),
        Any::KvlistValue(kvs) => Value::Object(attributes(kvs.values)),
        Any::BytesValue(b) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b).into()
        }
        Any::StringValueStrindex(_) => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            write!(s, "{b:02x}").expect("write to String");
            s
        })
}

/// The body of a `200`: an `ExportLogsServiceResponse`, with a partial success when
/// records were refused. Protobuf: empty when nothing was refused. JSON: `{}`, or
/// `{"partialSuccess":{"rejectedLogRecords":"N","errorMessage":"..."}}` (an int64 is a
/// string in the proto3 JSON mapping).
pub fn response_body(enc: Encoding, rejected: u64, error_message: &str) -> Vec<u8> {
    let partial = (rejected != 0 || !error_message.is_empty()).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: error_message.to_owned(),
    });
    match (enc, partial) {
        (Encoding::Protobuf, partial_success) => {
            ExportLogsServiceResponse { partial_success }.encode_to_vec()
        }
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(p)) => serde_json::to_vec(&json!({"partialSuccess": {
            "rejectedLogRecords": p.rejected_log_records.to_string(),
            "errorMessage": p.error_message,
        }}))
        .expect("json"),
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), the body of an OTLP/HTTP refusal.
/// Fields 1 and 2 only: `details` (3, repeated `Any`) is never sent, so it is not
/// declared, and a decoder skips it as an unknown field.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message in English.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The body of a refusal with HTTP `status`: a `Status` in the request's encoding
/// (JSON `{"code":3,"message":"..."}`), its code the gRPC code closest to `status`.
pub fn status_body(enc: Encoding, status: u16, message: &str) -> Vec<u8> {
    let code = match status {
        400 | 411 | 413 | 415 | 431 => 3, // INVALID_ARGUMENT
        404 | 405 => 12,                  // UNIMPLEMENTED
        429 => 8,                         // RESOURCE_EXHAUSTED
        500 => 13,                        // INTERNAL
        503 => 14,                        // UNAVAILABLE
        _ => 2,                           // UNKNOWN
    };
    match enc {
        Encoding::Protobuf => Status {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&json!({"code": code, "message": message})).expect("json")
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, ArrayValue, InstrumentationScope},
        logs::v1::{ResourceLogs, ScopeLogs},
        resource::v1::Resource,
    };

    use super::*;
    use crate::net::enrich::fixtures::{policy, req as info};

    const BOUNDS: Bounds = Bounds {
        record_bytes_max: 1 << 20,
        rendered_bytes_max: 1 << 24,
    };

    fn kv(key: &str, v: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Any::StringValue("checkout".into())),
                        kv("host.name", Any::StringValue("h1".into())),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.orders".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn maps_a_record_field_by_field() {
        let lr = LogRecord {
            time_unix_nano: 1_795_305_600_123_456_789,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: Some(AnyValue {
                value: Some(Any::StringValue("card declined".into())),
            }),
            attributes: vec![
                kv("order.id", Any::IntValue(42)),
                kv("retry", Any::BoolValue(true)),
                kv(
                    "tags",
                    Any::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Any::DoubleValue(0.5)),
                        }],
                    }),
                ),
                kv("raw", Any::BytesValue(vec![0xff, 0])),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            flags: 1,
            ..Default::default()
        };
        let m = map_request(request(vec![lr]), &policy(true), &info(), BOUNDS).unwrap();
        assert_eq!((m.records.len(), m.rejected), (1, 0));
        assert_eq!(m.error_message(), "");
        let got = std::str::from_utf8(&m.records[0]).unwrap();
        let want = concat!(
            r#"{"timestamp":"2026-11-22T00:00:00.123456Z","service":"checkout","level":"warn","#,
            r#""severity_number":13,"severity_text":"WARN","message":"card declined","#,
            r#""attributes":{"order.id":42,"retry":true,"tags":[0.5],"raw":"/wA="},"#,
            r#""trace_id":"abababababababababababababababab","span_id":"0102030405060708","flags":1,"#,
            r#""resource":{"service.name":"checkout","host.name":"h1"},"#,
            r#""scope":{"name":"app.orders","version":"1.2"},"#,
            r#""received_at":"2026-11-22T00:00:00.000000Z","client_ip":"127.0.0.1","node_id":"n1"}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    #[rustfmt::skip] // a table, several cases to a line
    fn levels_follow_the_data_model_then_the_text() {
        // (severity_number, severity_text, level): the number decides when it is one
        // of the data model's; else the text, when it names a level.
        let cases = [
            (1, "", Some("trace")), (4, "", Some("trace")), (5, "", Some("debug")),
            (9, "INFO", Some("info")), (12, "", Some("info")), (16, "", Some("warn")),
            (17, "", Some("error")), (21, "", Some("fatal")), (24, "", Some("fatal")),
            (0, "Notice", Some("info")), (0, "Information", Some("info")),
            (0, " critical ", Some("fatal")), (0, "WARNING", Some("warn")),
            (0, "chatty", None), (25, "", None), (0, "", None),
        ];
        for (n, text, want) in cases {
            assert_eq!(level(n, text).as_deref(), want, "{n} {text:?}");
        }
    }

    #[test]
    fn observed_time_and_structured_bodies() {
        let lr = LogRecord {
            observed_time_unix_nano: 1_000_000_000,
            body: Some(AnyValue {
                value: Some(Any::KvlistValue(
                    opentelemetry_proto::tonic::common::v1::KeyValueList {
                        values: vec![kv("a", Any::IntValue(1))],
                    },
                )),
            }),
            ..Default::default()
        };
        let m = map_request(request(vec![lr]), &policy(false), &info(), BOUNDS).unwrap();
        let v = parse(&m.records[0]);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(v["message"], r#"{"a":1}"#);
        assert!(v.get("level").is_none() && v.get("trace_id").is_none());
    }

    #[test]
    fn refuses_records_alone() {
        let ok = |msg: &str| LogRecord {
            time_unix_nano: 1_795_305_600_000_000_000,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Any::StringValue(msg.into())),
            }),
            ..Default::default()
        };
        let no_body = LogRecord {
            severity_number: 9,
            ..Default::default()
        };
        let huge = ok(&"x".repeat(2000));
        let bounds = Bounds {
            record_bytes_max: 1000,
            ..BOUNDS
        };
        let m = map_request(
            request(vec![ok("a"), no_body, huge, ok("b")]),
            &policy(true),
            &info(),
            bounds,
        )
        .unwrap();
        assert_eq!((m.records.len(), m.rejected), (2, 2));
        let msg = m.error_message();
        assert!(
            msg.starts_with("2 of 4 log records rejected")
                && msg.contains("log object 1: `message` is missing"),
            "{msg}"
        );
        let body = response_body(Encoding::Json, m.rejected, &msg);
        let v = parse(&body);
        assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "2");
        let pb = ExportLogsServiceResponse::decode(
            response_body(Encoding::Protobuf, m.rejected, &msg).as_slice(),
        )
        .unwrap();
        assert_eq!(pb.partial_success.unwrap().rejected_log_records, 2);
    }

    #[test]
    fn a_request_renders_a_bounded_number_of_bytes() {
        // 10,000 empty records (2 bytes each on the wire) under a 1 KiB resource.
        let mut req = request(vec![LogRecord::default(); 10_000]);
        let attrs = &mut req.resource_logs[0].resource.as_mut().unwrap().attributes;
        attrs.push(kv("big", Any::StringValue("r".repeat(1024))));
        let bounds = Bounds {
            record_bytes_max: 1 << 20,
            rendered_bytes_max: 1 << 20,
        };
        let err = map_request(req.clone(), &policy(false), &info(), bounds).unwrap_err();
        assert!(
            matches!(err, OtlpError::RecordsTooLarge { max: 1_048_576 }),
            "{err}"
        );
        // Records refused by validation (no body, so no message) render nothing.
        let m = map_request(req, &policy(true), &info(), bounds).unwrap();
        assert_eq!((m.records.len(), m.rejected), (0, 10_000));
    }

    #[test]
    fn responses_and_statuses_in_both_encodings() {
        assert_eq!(response_body(Encoding::Json, 0, ""), b"{}");
        assert!(response_body(Encoding::Protobuf, 0, "").is_empty());
        assert_eq!(
            status_body(Encoding::Json, 400, "bad"),
            br#"{"code":3,"message":"bad"}"#
        );
        let s = Status::decode(status_body(Encoding::Protobuf, 503, "full").as_slice()).unwrap();
        assert_eq!((s.code, s.message.as_str()), (14, "full"));
    }

    #[test]
    fn decodes_both_encodings_and_refuses_garbage() {
        let req = request(vec![LogRecord {
            severity_number: 17,
            trace_id: vec![1; 16],
            ..Default::default()
        }]);
        assert_eq!(decode_protobuf(&req.encode_to_vec()).unwrap(), req);
        assert!(matches!(
            decode_protobuf(b"\xff\xff\xff"),
            Err(OtlpError::Protobuf(_))
        ));
        let json = serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeLogs": [{"logRecords": [{
                "timeUnixNano": "1795305600000000000",
                "severityNumber": 17,
                "body": {"stringValue": "boom"},
                "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174"
            }]}]
        }]});
        assert!(is_otlp_json(&json));
        assert!(!is_otlp_json(&serde_json::json!({"message": "m"})));
        let m = map_request(decode_json(json).unwrap(), &policy(false), &info(), BOUNDS).unwrap();
        let v = parse(&m.records[0]);
        assert_eq!(v["service"], "api");
        assert_eq!(v["level"], "error");
        assert_eq!(v["attributes"]["n"], 7);
        assert_eq!(v["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(v["span_id"], "eee19b7ec3c1b174");
        let bad = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]});
        assert!(matches!(decode_json(bad), Err(OtlpError::Json(_))));
    }
}
