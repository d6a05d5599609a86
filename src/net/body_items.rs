//! How many items a `POST /v1/logs` body would decode to, counted on its bytes before
//! it is decoded (`logs_body_items_max`).
//!
//! Why: the body's bytes are bounded (`http_body_bytes_max`, and
//! `http_body_decompressed_bytes_max` after gzip), but what they decode to is not in
//! proportion to them. An empty OTLP `LogRecord` is 2 bytes of protobuf and about 180
//! bytes decoded; an empty JSON object (`{},`) is 3 bytes and a `serde_json::Value`
//! plus, enriched, a record of about 90 bytes. A 16 MiB body, a few KiB of gzip, would
//! hold gigabytes on its reactor's thread for the length of one request. Counting is
//! one pass over bytes already in memory, and it stops as soon as the bound is passed.
//!
//! An item is a JSON object or array, or any other JSON value that is an element of an
//! array, or a length-delimited protobuf field (an embedded message, a string, bytes):
//! each is an allocation of its own once decoded.
//! Bytes that are not valid JSON or protobuf are counted as far as they go; the decoder
//! that follows refuses them with its own error.

use prost::encoding::decode_varint;

/// The body holds more than `logs_body_items_max` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyItems;

/// Counts the items of a JSON (or NDJSON) body: every object and array (`{` and `[`
/// outside strings), and every other value that is an element of an array (a string,
/// number, `true`, `false` or `null` there): each decodes to a `serde_json::Value` of
/// its own, so a body of `[1,1,1,...]` is bounded as a body of objects is. Values of
/// object members are not counted: an object's members are bounded by its bytes and
/// the object is counted once.
///
/// # Errors
/// [`TooManyItems`] as soon as there are more than `max`.
pub fn json(body: &[u8], max: usize) -> Result<usize, TooManyItems> {
    let (mut count, mut in_string, mut escaped) = (0usize, false, false);
    // Per open container, whether it is an array; bounded by `max` (each counted).
    let mut arrays: Vec<bool> = Vec::new();
    // An array element may start at the next value byte (after `[` or `,` in an array).
    let mut element_next = false;
    let add = |count: &mut usize| {
        *count += 1;
        if *count > max {
            Err(TooManyItems)
        } else {
            Ok(())
        }
    };
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        let scalar_element = element_next && !matches!(b, b'{' | b'[' | b']');
        element_next = false;
        if scalar_element {
            add(&mut count)?;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                add(&mut count)?;
                arrays.push(b == b'[');
                element_next = b == b'[';
            }
            b'}' | b']' => {
                arrays.pop();
            }
            b',' => element_next = arrays.last() == Some(&true),
            _ => {}
        }
    }
    Ok(count)
}

/// Past this depth nested values are counted but not entered: prost refuses to
/// decode messages nested deeper than 100, and the walk must not recurse without end.
const DEPTH_MAX: u32 = 100;

/// Counts the length-delimited fields of an OTLP `ExportLogsServiceRequest`, entering
/// the embedded messages of the logs schema (`opentelemetry/proto/logs/v1`,
/// `common/v1`, `resource/v1`): resource logs, resources, scope logs, scopes, log
/// records, attributes, values, arrays and key-value lists. The walk is linear in the
/// body: each message's bytes are read by the walk of that message alone.
///
/// # Errors
/// [`TooManyItems`] as soon as there are more than `max`.
pub fn otlp_protobuf(body: &[u8], max: usize) -> Result<usize, TooManyItems> {
    let mut count = 0;
    walk(body, Msg::Request, 0, &mut count, max)?;
    Ok(count)
}

/// The messages of the OTLP logs schema that hold other messages.
#[derive(Debug, Clone, Copy)]
enum Msg {
    Request,
    ResourceLogs,
    Resource,
    ScopeLogs,
    Scope,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    /// Any other message, or a string or bytes: counted, not entered.
    Leaf,
}

impl Msg {
    /// What field `tag` of this message holds, as the `.proto` files declare it.
    fn field(self, tag: u64) -> Msg {
        use Msg::*;
        match (self, tag) {
            (Request, 1) => ResourceLogs,
            (ResourceLogs, 1) => Resource,
            (ResourceLogs, 2) => ScopeLogs,
            (Resource, 1) | (Scope, 3) | (LogRecord, 6) | (KeyValueList, 1) => KeyValue,
            (ScopeLogs, 1) => Scope,
            (ScopeLogs, 2) => LogRecord,
            (LogRecord, 5) | (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            _ => Leaf,
        }
    }
}

fn walk(
    mut b: &[u8],
    msg: Msg,
    depth: u32,
    count: &mut usize,
    max: usize,
) -> Result<(), TooManyItems> {
    while !b.is_empty() {
        let Ok(key) = decode_varint(&mut b) else {
            return Ok(()); // not protobuf: the decoder says so
        };
        let skip = match key & 7 {
            0 => decode_varint(&mut b).map(|_| 0).ok(),
            1 => Some(8),
            5 => Some(4),
            2 => decode_varint(&mut b)
                .ok()
                .and_then(|len| usize::try_from(len).ok()),
            _ => None, // groups, or no wire type at all: the decoder refuses them
        };
        let Some(len) = skip.filter(|&n| n <= b.len()) else {
            return Ok(());
        };
        let (inner, rest) = b.split_at(len);
        b = rest;
        if key & 7 != 2 {
            continue;
        }
        *count += 1;
        if *count > max {
            return Err(TooManyItems);
        }
        let child = msg.field(key >> 3);
        if !matches!(child, Msg::Leaf) && depth < DEPTH_MAX {
            walk(inner, child, depth + 1, count, max)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value::Value},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    };
    use prost::Message;

    use super::*;

    #[test]
    fn json_counts_objects_arrays_and_array_elements_outside_strings() {
        // 5 objects and arrays, and the 1 in [1,{}]: 6.
        assert_eq!(json(br#"[{"a":"{[\"{"},{"b":[1,{}]}]"#, 100), Ok(6));
        // A body of scalars is bounded as a body of objects is (found by fuzzing).
        assert_eq!(json(b"[1, \"x\", null, true, -2.5e3]", 100), Ok(6));
        assert_eq!(json(b"[1,1,1,1]", 4), Err(TooManyItems));
        assert_eq!(json(b"[ ]", 100), Ok(1));
        assert_eq!(json(b"[[],[[]]]", 100), Ok(4));
        // Members' values are not items: the object is.
        assert_eq!(json(br#"{"a":1,"b":"2","c":null}"#, 100), Ok(1));
        assert_eq!(json(b"{}\n{}\n{}", 100), Ok(3));
        assert_eq!(json(b"[{},{},{}]", 3), Err(TooManyItems));
        assert_eq!(json(b"not json {", 100), Ok(1));
    }

    fn kv(key: &str, v: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn protobuf_counts_every_nested_item_of_the_logs_schema() {
        let record = LogRecord {
            body: Some(AnyValue {
                value: Some(Value::StringValue("hello".into())),
            }),
            attributes: vec![kv("a", "1"), kv("b", "2")],
            severity_text: "INFO".into(),
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record.clone(), record],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let wire = req.encode_to_vec();
        // resource_logs 1, scope_logs 1; per record: the record, severity_text, body
        // and its string, two attributes each with key, value and its string.
        let per_record = 1 + 1 + 2 + 2 * 4;
        assert_eq!(otlp_protobuf(&wire, 1000), Ok(2 + 2 * per_record));
        assert_eq!(otlp_protobuf(&wire, 10), Err(TooManyItems));
        // Two-byte empty records are counted one by one, and the count stops early.
        // An empty ResourceLogs, then a million empty fields 2 (unknown to the request,
        // so leaves: counted, not entered).
        let mut bomb = vec![0x0a, 0x00];
        bomb.extend([0x12u8, 0x00].repeat(1 << 20));
        assert_eq!(otlp_protobuf(&bomb, usize::MAX), Ok(1 + (1 << 20)));
        assert_eq!(otlp_protobuf(&bomb, 1000), Err(TooManyItems));
        // Garbage is left to the decoder.
        assert_eq!(otlp_protobuf(&[0xff; 20], 10), Ok(0));
    }

    #[test]
    fn protobuf_deep_nesting_stops_entering_but_counts() {
        // AnyValue{array_value: ArrayValue{values: [AnyValue{...}]}} 300 levels deep,
        // as the body of one record.
        let mut v = AnyValue {
            value: Some(Value::StringValue("x".into())),
        };
        for _ in 0..300 {
            v = AnyValue {
                value: Some(Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue { values: vec![v] },
                )),
            };
        }
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(v),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let n = otlp_protobuf(&req.encode_to_vec(), usize::MAX).unwrap();
        assert!(n > DEPTH_MAX as usize && n < 700, "{n}");
    }
}
