//! OpenTelemetry logs over HTTP (`POST /v1/logs`) end to end, against the real binary:
//! the real OpenTelemetry Python SDK exporting (protobuf, plain and gzip), OTLP/JSON and
//! protobuf requests built here with the official generated types, the responses'
//! exact bodies, the refusals, and the unchanged plain JSON path.

mod common;

use std::{io::Write, process::Command, time::Duration};

use common::{
    otlp::{PROTOBUF, kv, otlp_request, partial_success, post_otlp},
    *,
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceResponse, common::v1::any_value::Value as Any,
    logs::v1::LogRecord,
};
use prost::Message;
use ringstash::net::otlp::Status;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Whether the Python SDK and its OTLP/HTTP exporter are importable: under CI they
/// must be (`.ci/run` installs them), elsewhere their absence is a SKIP.
fn python_sdk() -> bool {
    if require_tool("python3", "python3").is_none() {
        return false;
    }
    let probe = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http",
        ])
        .output()
        .expect("run python3");
    if !probe.status.success() {
        let why = "the OpenTelemetry Python SDK is not installed \
                   (python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)";
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        println!("SKIP: {why}");
        return false;
    }
    true
}

/// Runs tests/otlp_send.py; returns the hex trace id its logs were emitted under.
fn python_send(s: &Server, service: &str, count: usize, gzip: bool) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_send.py");
    let endpoint = format!("http://{}/v1/logs", s.http);
    let count = count.to_string();
    let mut args = vec![script, &endpoint, service, &count];
    if gzip {
        args.push("gzip");
    }
    let out = Command::new("python3")
        .args(&args)
        .output()
        .expect("run otlp_send.py");
    assert!(
        out.status.success(),
        "otlp_send.py failed: {}\n{}\nserver: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.stderr_text()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    v["trace_id"].as_str().unwrap().to_owned()
}

#[test]
fn python_sdk_logs_are_stored_mapped_and_filterable() {
    if !python_sdk() {
        return;
    }
    let (_dir, s) = Server::start_in_tempdir(&[]);
    const CHECKOUT: usize = 50;
    const BILLING: usize = 10;
    let trace_checkout = python_send(&s, "checkout", CHECKOUT, false);
    let trace_billing = python_send(&s, "billing", BILLING, true);
    let records = wait_records(&s, CHECKOUT + BILLING, Duration::from_secs(30), || {
        s.stderr_text()
    });
    // What the SDK sends for each standard level: the severity number of the data
    // model, its own severity text, and so the short name stored as `level`.
    let expect = |i: usize| match i % 5 {
        0 => ("DEBUG", 5, "DEBUG", "debug"),
        1 => ("INFO", 9, "INFO", "info"),
        2 => ("WARNING", 13, "WARN", "warn"),
        3 => ("ERROR", 17, "ERROR", "error"),
        _ => ("CRITICAL", 21, "FATAL", "fatal"),
    };
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        let service = r["service"].as_str().unwrap();
        let trace = if service == "checkout" {
            &trace_checkout
        } else {
            assert_eq!(service, "billing", "{r}");
            &trace_billing
        };
        let i = r["attributes"]["order_id"].as_u64().unwrap() as usize;
        let (py_level, number, text, level) = expect(i);
        assert_eq!(r["message"], format!("order {i} {py_level}"), "{r}");
        assert_eq!(r["level"], level, "{r}");
        assert_eq!(r["severity_number"], number, "{r}");
        assert_eq!(r["severity_text"], text, "{r}");
        assert_eq!(r["attributes"]["user"], format!("u{i}"), "{r}");
        assert_eq!(r["trace_id"], trace.as_str(), "{r}");
        let span = r["span_id"].as_str().unwrap();
        assert!(
            span.len() == 16
                && span.bytes().all(|b| b.is_ascii_hexdigit())
                && span != "0000000000000000",
            "{r}"
        );
        assert_eq!(r["resource"]["service.name"], service, "{r}");
        assert_eq!(r["resource"]["host.name"], "test-host", "{r}");
        assert_eq!(r["scope"]["name"], "shop.orders", "{r}");
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
        assert_eq!(r["client_ip"], "127.0.0.1", "{r}");
        assert!(
            r["received_at"].is_string() && r["node_id"].is_string(),
            "{r}"
        );
        assert!(seen.insert((service.to_owned(), i)), "stored twice: {r}");
    }
    assert_eq!(seen.len(), CHECKOUT + BILLING);

    // The read API's filters see OTLP records as they see any JSON record.
    let read = |query: &str| -> Vec<serde_json::Value> {
        let v = http(
            s.http,
            "GET",
            &format!("/v1/logs?limit=1000&{query}"),
            &[],
            b"",
        )
        .json();
        v["records"].as_array().unwrap().clone()
    };
    let warn_or_error = read("service=checkout&level=warn,ERROR");
    assert_eq!(warn_or_error.len(), CHECKOUT * 2 / 5);
    for r in &warn_or_error {
        assert_eq!(r["service"], "checkout");
        assert!(r["level"] == "warn" || r["level"] == "error", "{r}");
    }
    assert_eq!(read("service=billing").len(), BILLING);
    assert_eq!(read("service=billing&level=fatal").len(), BILLING / 5);
    let text = read("q=order+42+");
    assert_eq!(text.len(), 1);
    assert_eq!(text[0]["level"], "warn");
    let m = metrics(s.http);
    assert!(
        m.contains(&format!(
            "ringstash_otlp_records_total {}",
            CHECKOUT + BILLING
        )),
        "{m}"
    );
    assert!(m.contains("ringstash_otlp_rejected_records_total 0"), "{m}");
}

#[test]
fn otlp_responses_refusals_and_the_plain_json_path() {
    let (_dir, s) = Server::start_in_tempdir(&[
        "--record-bytes-max",
        "1024",
        "--http-body-decompressed-bytes-max",
        "100000",
        "--otlp-records-bytes-max",
        "65536",
    ]);
    let post =
        |headers: &[(&str, &str)], body: &[u8]| http(s.http, "POST", "/v1/logs", headers, body);

    // OTLP/JSON: 200 with exactly `{}` once stored.
    let json = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
        "scopeLogs":[{"scope":{"name":"s","version":"1"},"logRecords":[
          {"timeUnixNano":"1795305600000000000","severityNumber":9,"body":{"stringValue":"hello"},
           "attributes":[{"key":"n","value":{"intValue":"7"}}],"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
          {"observedTimeUnixNano":1795305600000000000,"severityText":"Notice","body":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}}}]}]}]}"#;
    let r = post(&[JSON], json);
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (200, Some("application/json"))
    );
    assert_eq!(r.body, b"{}");

    // Protobuf: 200 with an empty ExportLogsServiceResponse (no partial success).
    let r = post(
        &[PROTOBUF],
        &otlp_request("web", &["one", "two"]).encode_to_vec(),
    );
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (200, Some("application/x-protobuf"))
    );
    assert_eq!(
        ExportLogsServiceResponse::decode(r.body.as_slice()).unwrap(),
        ExportLogsServiceResponse::default()
    );

    // A record over record_bytes_max is refused alone: a partial success, the rest stored.
    let big = "x".repeat(2000);
    let partial = partial_success(&post_otlp(
        s.http,
        &otlp_request("web", &["three", &big, "four"]),
    ));
    assert_eq!(partial.rejected_log_records, 1);
    assert_contains(&partial.error_message, "record_bytes_max (1024)");
    let json_req = serde_json::to_vec(&otlp_request("web", &[&big])).unwrap();
    let r = post(&[JSON], &json_req);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("1 of 1 log records rejected"),
        "{v}"
    );

    // gzip, as exporters send it when configured.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&otlp_request("web", &["five"]).encode_to_vec())
        .unwrap();
    let r = post(
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!((r.status, r.body.len()), (200, 0));

    let records = wait_records(&s, 7, Duration::from_secs(10), || s.stderr_text());
    let messages: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "hello",
            r#"{"k":true}"#,
            "one",
            "two",
            "three",
            "four",
            "five"
        ]
    );
    let first = &records[0];
    assert_eq!(
        (first["service"].as_str(), first["level"].as_str()),
        (Some("api"), Some("info"))
    );
    assert_eq!(first["timestamp"], "2026-11-22T00:00:00.000000Z");
    assert_eq!(first["attributes"]["n"], 7);
    assert_eq!(first["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(
        first["scope"],
        serde_json::json!({"name": "s", "version": "1"})
    );
    // No severity number: the level comes from a text that names one (notice is info).
    assert_eq!(records[1]["level"], "info");
    assert_eq!(records[1]["severity_text"], "Notice");
    assert_eq!(records[2]["trace_id"], "5b".repeat(16));

    // Undecodable bodies: 400 with a google.rpc.Status in the request's encoding.
    let r = post(&[PROTOBUF], b"\x0a\xff\xff\xff\xff\x0f");
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (400, Some("application/x-protobuf"))
    );
    let status = Status::decode(r.body.as_slice()).unwrap();
    assert_eq!(status.code, 3);
    assert_contains(
        &status.message,
        "undecodable ExportLogsServiceRequest (protobuf)",
    );
    let r = post(
        &[JSON],
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"not hex"}]}]}]}"#,
    );
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (400, Some("application/json"))
    );
    let v = r.json();
    assert_eq!(v["code"], 3);
    assert!(v["message"].as_str().unwrap().contains("OTLP/JSON"), "{v}");

    // Unsupported media type and content coding; a gzip bomb past its bound.
    let r = post(&[("Content-Type", "application/grpc")], b"x");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let r = post(&[PROTOBUF, ("Content-Encoding", "br")], b"x");
    assert_eq!(r.status, 415);
    assert_contains(
        &Status::decode(r.body.as_slice()).unwrap().message,
        "Content-Encoding \"br\"",
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&[0; 200_000]).unwrap();
    let r = post(
        &[PROTOBUF, ("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 413);
    assert_contains(
        &Status::decode(r.body.as_slice()).unwrap().message,
        "http_body_decompressed_bytes_max",
    );

    // Records that would render past otlp_records_bytes_max: 413, nothing stored.
    let mut req = otlp_request("web", &[""; 100]);
    let resource = req.resource_logs[0].resource.as_mut().unwrap();
    resource
        .attributes
        .push(kv("big", Any::StringValue("r".repeat(2048))));
    let r = post_otlp(s.http, &req);
    assert_eq!(r.status, 413);
    let status = Status::decode(r.body.as_slice()).unwrap();
    assert_contains(&status.message, "otlp_records_bytes_max (65536 bytes)");

    // The plain JSON path is unchanged: an array, an object without resourceLogs.
    let r = post(
        &[JSON],
        br#"[{"service":"a","message":"m1"},{"service":"a","message":"m2"}]"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"count": 2, "first_offset": 7, "last_offset": 8})
    );
    let r = post(
        &[JSON],
        br#"{"service":"a","message":"m3","resource_logs":1}"#,
    );
    assert_eq!(r.json()["count"], 1);
    let records = wait_records(&s, 10, Duration::from_secs(10), || s.stderr_text());
    assert_eq!(records[9]["resource_logs"], 1);
    assert!(records[9].get("received_at").is_some());

    assert_metrics(
        s.http,
        &[
            "ringstash_otlp_requests_total 6",
            "ringstash_otlp_records_total 7",
            "ringstash_otlp_rejected_records_total 2",
        ],
    );
}

#[test]
fn otlp_validation_refuses_records_alone() {
    let (_dir, s) = Server::start_in_tempdir(&["--json-validate", "true"]);
    // The second record has no body, so no `message`: validation refuses it alone.
    let mut req = otlp_request("api", &["kept"]);
    req.resource_logs[0].scope_logs[0]
        .log_records
        .push(LogRecord {
            time_unix_nano: 1_795_305_600_000_000_000,
            severity_number: 9,
            ..Default::default()
        });
    // json_validate checks `timestamp` against the clock: send a current one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for r in &mut req.resource_logs[0].scope_logs[0].log_records {
        r.time_unix_nano = now;
    }
    let partial = partial_success(&post_otlp(s.http, &req));
    assert_eq!(partial.rejected_log_records, 1);
    assert_contains(&partial.error_message, "log object 1: `message` is missing");
    let records = wait_records(&s, 1, Duration::from_secs(10), || s.stderr_text());
    assert_eq!(records[0]["message"], "kept");
}

/// A small body that would decode to millions of values is refused before decoding
/// (`logs_body_items_max`), in each body's own words, counted, and the server serves on.
#[test]
fn bodies_that_decode_to_too_many_items_are_refused_before_decoding() {
    let (_dir, s) = Server::start_in_tempdir(&["--logs-body-items-max", "1000"]);
    let post =
        |headers: &[(&str, &str)], body: &[u8]| http(s.http, "POST", "/v1/logs", headers, body);
    // resource_logs { scope_logs { 2,000,000 empty log_records } }, gzip: about 4 KiB
    // on the wire, 4 MB inflated, and about 360 MB once decoded.
    let records = [0x12u8, 0x00].repeat(2_000_000);
    let mut scope = vec![0x12];
    prost::encoding::encode_varint(records.len() as u64, &mut scope);
    scope.extend(records);
    let mut resource = vec![0x0a];
    prost::encoding::encode_varint(scope.len() as u64, &mut resource);
    resource.extend(scope);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&resource).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 16 << 10, "{}", bomb.len());
    let r = post(&[PROTOBUF, ("Content-Encoding", "gzip")], &bomb);
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (413, Some("application/x-protobuf"))
    );
    let status = Status::decode(r.body.as_slice()).unwrap();
    assert_contains(&status.message, "logs_body_items_max (1000)");
    // Plain JSON and NDJSON: the JSON error body.
    let many = format!("[{}{{}}]", "{},".repeat(1000));
    let r = post(&[("Content-Type", "application/json")], many.as_bytes());
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (413, Some("too_many_items"))
    );
    assert_metrics(s.http, &["ringstash_logs_body_items_refused_total 2"]);
    // Nothing was stored, and a batch within the bound is.
    let r = post_otlp(s.http, &otlp_request("web", &["a", "b"]));
    assert_eq!(r.status, 200);
    let stored = wait_records(&s, 2, Duration::from_secs(10), || s.stderr_text());
    assert_eq!(columns(&stored, &["message"]), ["a", "b"]);
}
