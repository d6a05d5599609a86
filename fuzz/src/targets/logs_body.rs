//! `logs_body`: a `POST /v1/logs` body ([`LogsBody::read`]) of each media type (JSON,
//! NDJSON, OTLP protobuf, OTLP/JSON), then its records as the HTTP listener makes them
//! ([`logs_body::json_records`], [`otlp::map_request`]).

use std::time::{Duration, UNIX_EPOCH};

use ringstash::net::{
    enrich::{JsonPolicy, RequestInfo},
    logs_body::{self, LogsBody, Media},
    otlp,
};

/// Parameters: the media type (protobuf, JSON or NDJSON), `logs_body_items_max`
/// 1..=256, whether records are validated, `record_bytes_max` 64..=16384. Then the body.
///
/// Asserts: no body yields more items than `logs_body_items_max` (JSON objects and
/// arrays, or OTLP log records); every stored record is a JSON object within `record_bytes_max`;
/// OTLP records stored plus refused are the request's log records, and their rendered
/// total is within `rendered_bytes_max`.
pub fn logs_body(data: &[u8]) {
    let ([a, b, c, d], body) = crate::params::<4>(data);
    let media = match a % 3 {
        0 => Media::Protobuf,
        1 => Media::Json,
        _ => Media::Ndjson,
    };
    let items_max = 1 + usize::from(b);
    let policy = JsonPolicy {
        enrich: true,
        validate: c & 1 == 1,
        timestamp_skew_max: Duration::from_secs(7 * 86_400),
        node_id: "n1".into(),
    };
    let info = RequestInfo {
        received_at: "2026-12-06T00:00:00.000000Z".into(),
        client_ip: "192.0.2.1".into(),
        now: UNIX_EPOCH + Duration::from_secs(1_796_515_200), // 2026-12-06T00:00:00Z, as received_at
    };
    let bounds = otlp::Bounds {
        record_bytes_max: 64 * (1 + usize::from(d)),
        rendered_bytes_max: 65_536,
    };
    match LogsBody::read(media, body, items_max) {
        Err(_) => {}
        Ok(LogsBody::Objects(values)) => {
            // The outer array, if any, is one more: the sum is a lower bound of the count.
            let items: usize = values.iter().map(objects_and_arrays).sum();
            assert!(
                items <= items_max,
                "more JSON objects and arrays than logs_body_items_max"
            );
            if let Ok(records) = logs_body::json_records(values, &policy, &info) {
                for r in &records {
                    check_record(r, usize::MAX);
                }
            }
        }
        Ok(LogsBody::Otlp(_, Err(_))) => {}
        Ok(LogsBody::Otlp(_, Ok(req))) => {
            let log_records: usize = req
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum();
            assert!(
                log_records <= items_max,
                "more log records than logs_body_items_max"
            );
            if let Ok(m) = otlp::map_request(req, &policy, &info, bounds) {
                assert_eq!(m.records.len() as u64 + m.rejected, log_records as u64);
                assert_eq!(m.rejected > 0, m.first_rejection.is_some());
                let mut rendered = 0;
                for r in &m.records {
                    check_record(r, bounds.record_bytes_max);
                    rendered += r.len();
                }
                assert!(rendered <= bounds.rendered_bytes_max);
            }
        }
    }
}

/// The objects and arrays in `v`, itself included: what `logs_body_items_max` counts in
/// a JSON body (`net::body_items::json`). Scalars are not counted, by that contract:
/// `[1,"a",null]` is one item however many elements it has (see docs/reliability.md,
/// "Fuzzing", on what that leaves unbounded).
fn objects_and_arrays(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(objects_and_arrays).sum::<usize>(),
        serde_json::Value::Object(o) => 1 + o.values().map(objects_and_arrays).sum::<usize>(),
        _ => 0,
    }
}

fn check_record(r: &[u8], record_bytes_max: usize) {
    assert!(r.len() <= record_bytes_max, "record over record_bytes_max");
    let v: serde_json::Value = serde_json::from_slice(r).expect("a record is JSON");
    assert!(v.is_object(), "a record is a JSON object");
}
