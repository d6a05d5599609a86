//! Writes the corpus seeds that need an encoder: an OTLP protobuf export (prost, from
//! the repo's `opentelemetry-proto` types), gzip request bodies, and segment bytes made
//! by ringstash's own on-disk encoders. Text seeds are committed as written; these are
//! committed too, and this program says how they were made:
//!
//! ```sh
//! cargo run -p fuzz --example make_seeds
//! ```

use std::{io::Write, path::Path};

use bytes::BytesMut;
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;
use ringstash::wal::format;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::write(corpus.join(target).join(name), bytes)
    };

    // logs_body: parameters (protobuf, 256 items, validate, 16 KiB records), then the export.
    let export = otlp_export().encode_to_vec();
    write(
        "logs_body",
        "otlp.pb",
        &[[0, 0xff, 0, 0xff].as_slice(), &export].concat(),
    )?;
    write(
        "logs_body",
        "otlp-validated.pb",
        &[[0, 0xff, 1, 0xff].as_slice(), &export].concat(),
    )?;

    // http_head: a gzip'd JSON POST and a gzip'd chunked one (parameters: the largest bounds).
    let json = br#"[{"service":"api","level":"info","message":"hello"}]"#;
    let gz = gzip(json);
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    );
    write(
        "http_head",
        "gzip-length.http",
        &[[0xff; 4].as_slice(), head.as_bytes(), &gz].concat(),
    )?;
    let chunked = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        gz.len()
    );
    write(
        "http_head",
        "gzip-chunked.http",
        &[
            [0xff, 7, 0xff, 0xff].as_slice(),
            chunked.as_bytes(),
            &gz,
            b"\r\n0\r\n\r\n",
        ]
        .concat(),
    )?;

    // record_decode: a segment header and three records as the writer lays them out,
    // and the same records as a batch (no header); record_bytes_max 4096.
    let mut frames = BytesMut::new();
    for (ts, payload) in [
        (1_796_515_200_000_000_000u64, &b"plain line"[..]),
        (
            1_796_515_200_000_000_001,
            br#"{"service":"api","level":"error","message":"disk full"}"#,
        ),
        (1_796_515_200_000_000_002, b""),
    ] {
        format::encode_record(&mut frames, ts, payload);
    }
    format::stamp_offsets(&mut frames, 42, |_, _| {});
    let header = format::encode_segment_header(42, format::InFlightWindow::bytes(16 << 20));
    let max = 4096u16.to_le_bytes();
    write(
        "record_decode",
        "segment.bin",
        &[max.as_slice(), &header, &frames].concat(),
    )?;
    write(
        "record_decode",
        "batch.bin",
        &[max.as_slice(), &frames].concat(),
    )?;
    // A torn tail: the last record cut short, then zeros of unwritten space.
    let torn = &frames[..frames.len() - 3];
    write(
        "record_decode",
        "torn.bin",
        &[max.as_slice(), &header, torn, &[0; 24]].concat(),
    )?;
    Ok(())
}

/// One resource with `service.name`, one scope, three log records of different shapes.
fn otlp_export() -> ExportLogsServiceRequest {
    let s = |v: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        })
    };
    let kv = |k: &str, v: Option<AnyValue>| KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("checkout")), kv("host.name", s("vm1"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.logger".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_796_515_200_000_000_000,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: s("payment failed"),
                        attributes: vec![
                            kv(
                                "order",
                                Some(AnyValue {
                                    value: Some(Value::IntValue(42)),
                                }),
                            ),
                            kv(
                                "retry",
                                Some(AnyValue {
                                    value: Some(Value::BoolValue(true)),
                                }),
                            ),
                        ],
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Default::default()
                    },
                    LogRecord {
                        severity_number: 9,
                        body: s("ok"),
                        ..Default::default()
                    },
                    LogRecord::default(),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}
