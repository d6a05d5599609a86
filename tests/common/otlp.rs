//! OTLP requests for the tests, built with the official generated types.

use std::net::SocketAddr;

use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

use prost::Message;
use ringstash::net::otlp::Status;

use super::{HttpResponse, http};

/// The `Content-Type` header of an OTLP protobuf request.
pub const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

/// An attribute.
pub fn kv(key: &str, v: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A request of one resource (`service.name` = `service`) with a record per body.
pub fn otlp_request(service: &str, bodies: &[&str]) -> ExportLogsServiceRequest {
    let log_records = bodies
        .iter()
        .map(|b| LogRecord {
            time_unix_nano: 1_795_305_600_000_000_000,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(Any::StringValue((*b).into())),
            }),
            trace_id: vec![0x5b; 16],
            span_id: vec![0xee; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Any::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Posts `req` as protobuf to `/v1/logs`.
pub fn post_otlp(addr: SocketAddr, req: &ExportLogsServiceRequest) -> HttpResponse {
    http(addr, "POST", "/v1/logs", &[PROTOBUF], &req.encode_to_vec())
}

/// The partial success of a `200` protobuf response (panics if there is none).
#[track_caller]
pub fn partial_success(r: &HttpResponse) -> ExportLogsPartialSuccess {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    ExportLogsServiceResponse::decode(r.body.as_slice())
        .expect("an ExportLogsServiceResponse")
        .partial_success
        .expect("a partial success")
}

/// Asserts a retryable OTLP refusal: 503, this `Retry-After`, a protobuf
/// `google.rpc.Status` UNAVAILABLE (14) whose message starts with `code: `.
#[track_caller]
pub fn assert_otlp_retry(r: &HttpResponse, retry_after: &str, code: &str) {
    assert_eq!(
        (r.status, r.header("retry-after")),
        (503, Some(retry_after))
    );
    let status = Status::decode(r.body.as_slice()).expect("a google.rpc.Status");
    assert!(
        status.code == 14 && status.message.starts_with(&format!("{code}: ")),
        "{status:?}"
    );
}
