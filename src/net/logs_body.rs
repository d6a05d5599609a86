//! What a `POST /v1/logs` body is, without I/O: its media type, OTLP (handed to
//! [`super::otlp`]) or plain JSON log objects, and those objects as records.
//!
//! A plain `application/json` body and an OTLP/JSON one share a media type; they are
//! told apart by the parsed document (an object carrying `resourceLogs` is OTLP), so
//! the body is parsed once either way.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::{
    body_items,
    enrich::{JsonPolicy, RequestInfo},
    otlp,
};

/// The error code of a plain JSON body refused by `logs_body_items_max` (counted in
/// `logs_body_items_refused_total`).
const TOO_MANY_ITEMS: &str = "too_many_items";
use crate::http_proto::HttpError;

/// A decoded `/v1/logs` body.
pub enum LogsBody {
    /// An OTLP export, in this encoding; `Err` if it does not decode (answered with a
    /// `Status` in that encoding).
    Otlp(
        otlp::Encoding,
        Result<ExportLogsServiceRequest, otlp::OtlpError>,
    ),
    /// Plain log objects (not yet checked to be objects).
    Objects(Vec<serde_json::Value>),
}

impl LogsBody {
    /// Reads a body of this media type (its `Content-Encoding` already undone).
    ///
    /// # Errors
    /// 400 for JSON that does not parse, or is neither an array nor an object.
    pub fn read(media: Media, body: &[u8], items_max: usize) -> Result<LogsBody, HttpError> {
        let too_many = |enc| {
            Ok(LogsBody::Otlp(
                enc,
                Err(otlp::OtlpError::TooManyItems { max: items_max }),
            ))
        };
        let counted = match media {
            Media::Protobuf => body_items::otlp_protobuf(body, items_max),
            Media::Json | Media::Ndjson => body_items::json(body, items_max),
        };
        if counted.is_err() {
            // Not parsed, so whether JSON is OTLP/JSON is told by its key alone.
            return match media {
                Media::Protobuf => too_many(otlp::Encoding::Protobuf),
                Media::Json if memchr::memmem::find(body, b"\"resourceLogs\"").is_some() => {
                    too_many(otlp::Encoding::Json)
                }
                Media::Json | Media::Ndjson => Err(HttpError::new(
                    413,
                    TOO_MANY_ITEMS,
                    format!(
                        "the body holds more than logs_body_items_max ({items_max}) JSON objects, arrays and array elements; nothing was stored, send smaller batches"
                    ),
                )),
            };
        }
        match media {
            Media::Protobuf => Ok(LogsBody::Otlp(
                otlp::Encoding::Protobuf,
                otlp::decode_protobuf(body),
            )),
            Media::Json => {
                let v = parse_json(body)?;
                if otlp::is_otlp_json(&v) {
                    Ok(LogsBody::Otlp(otlp::Encoding::Json, otlp::decode_json(v)))
                } else {
                    array_values(v).map(LogsBody::Objects)
                }
            }
            Media::Ndjson => ndjson_values(body).map(LogsBody::Objects),
        }
    }
}

/// Whether [`LogsBody::read`] refused the body for `logs_body_items_max`, in either
/// protocol's words (counted once, by the caller, whatever the body was).
pub fn refused_for_items(read: &Result<LogsBody, HttpError>) -> bool {
    match read {
        Ok(LogsBody::Otlp(_, Err(otlp::OtlpError::TooManyItems { .. }))) => true,
        Err(e) => e.code == TOO_MANY_ITEMS,
        Ok(_) => false,
    }
}

/// Validates and enriches plain `/v1/logs` log objects into compact JSON records.
pub fn json_records(
    values: Vec<serde_json::Value>,
    policy: &JsonPolicy,
    info: &RequestInfo,
) -> Result<Vec<Vec<u8>>, HttpError> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            let Some(obj) = v.as_object_mut() else {
                return Err(HttpError::new(
                    400,
                    "bad_request",
                    format!("element {i} is not a JSON object; nothing was stored"),
                ));
            };
            policy.apply(i, obj, info).map_err(|why| {
                HttpError::new(400, "invalid_log", format!("{why}; nothing was stored"))
            })?;
            // One allocation per JSON record: the object is re-serialised compactly.
            Ok(serde_json::to_vec(&v).expect("json"))
        })
        .collect()
}

/// The media types `POST /v1/logs` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// OTLP protobuf.
    Protobuf,
    /// One JSON document: OTLP/JSON if an object with `resourceLogs`, else log objects.
    Json,
    /// Newline-delimited log objects.
    Ndjson,
}

impl Media {
    /// The media type of a `Content-Type` (lower-cased, without parameters).
    ///
    /// # Errors
    /// 415 for any other.
    pub fn of(content_type: Option<&str>) -> Result<Media, HttpError> {
        match content_type {
            Some("application/x-protobuf") => Ok(Media::Protobuf),
            Some("application/json") => Ok(Media::Json),
            Some(
                "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines",
            ) => Ok(Media::Ndjson),
            other => Err(HttpError::new(
                415,
                "unsupported_media_type",
                format!(
                    "/v1/logs takes application/json (an array of objects, or OTLP/JSON), application/x-ndjson or application/x-protobuf (OTLP), not {}",
                    other.unwrap_or("a body without Content-Type")
                ),
            )),
        }
    }
}
/// One value per non-blank line (CRLF or LF).
fn ndjson_values(body: &[u8]) -> Result<Vec<serde_json::Value>, HttpError> {
    let mut v = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        v.push(serde_json::from_slice(line).map_err(|e| {
            HttpError::new(
                400,
                "bad_request",
                format!("line {}: invalid JSON: {e}", i + 1),
            )
        })?);
    }
    Ok(v)
}

/// A JSON document.
fn parse_json(body: &[u8]) -> Result<serde_json::Value, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::new(400, "bad_request", format!("invalid JSON: {e}")))
}

/// An array of values, or a single object.
fn array_values(v: serde_json::Value) -> Result<Vec<serde_json::Value>, HttpError> {
    match v {
        serde_json::Value::Array(a) => Ok(a),
        o @ serde_json::Value::Object(_) => Ok(vec![o]),
        _ => Err(HttpError::new(
            400,
            "bad_request",
            "expected an array of log objects",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_told_apart_by_resource_logs() {
        let otlp = LogsBody::read(Media::Json, br#"{"resourceLogs":[]}"#, usize::MAX).unwrap();
        assert!(matches!(otlp, LogsBody::Otlp(otlp::Encoding::Json, Ok(_))));
        let one = LogsBody::read(Media::Json, br#"{"message":"m"}"#, usize::MAX).unwrap();
        assert!(matches!(one, LogsBody::Objects(v) if v.len() == 1));
        let many = LogsBody::read(Media::Ndjson, b"{\"a\":1}\r\n\n{\"a\":2}", usize::MAX).unwrap();
        assert!(matches!(many, LogsBody::Objects(v) if v.len() == 2));
        let garbage = LogsBody::read(Media::Protobuf, b"\xff", usize::MAX).unwrap();
        assert!(matches!(
            garbage,
            LogsBody::Otlp(otlp::Encoding::Protobuf, Err(_))
        ));
        assert_eq!(Media::of(Some("text/plain")).unwrap_err().status, 415);
        assert_eq!(
            LogsBody::read(Media::Json, b"3", usize::MAX)
                .err()
                .unwrap()
                .status,
            400
        );
    }

    #[test]
    fn bodies_past_logs_body_items_max_are_refused_before_decoding() {
        let plain = LogsBody::read(Media::Json, b"[{},{},{}]", 3).err().unwrap();
        assert_eq!((plain.status, plain.code), (413, TOO_MANY_ITEMS));
        let nd = LogsBody::read(Media::Ndjson, b"{}\n{}", 1).err().unwrap();
        assert_eq!(nd.status, 413);
        let otlp_json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{}]}]}]}"#;
        assert!(LogsBody::read(Media::Json, otlp_json, 6).is_ok());
        assert!(matches!(
            LogsBody::read(Media::Json, otlp_json, 5),
            Ok(LogsBody::Otlp(
                otlp::Encoding::Json,
                Err(otlp::OtlpError::TooManyItems { max: 5 })
            ))
        ));
        // resource_logs { scope_logs { log_records {} } }
        let wire = [0x0a, 0x04, 0x12, 0x02, 0x12, 0x00];
        assert!(LogsBody::read(Media::Protobuf, &wire, 3).is_ok());
        assert!(matches!(
            LogsBody::read(Media::Protobuf, &wire, 2),
            Ok(LogsBody::Otlp(
                otlp::Encoding::Protobuf,
                Err(otlp::OtlpError::TooManyItems { max: 2 })
            ))
        ));
    }
}
