//! OTLP requests for the tests, built with the official generated types.

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

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
