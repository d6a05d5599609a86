//! What the HTTP side serves besides ingest: the read API `/v1/logs` and `/v1/config`
//! (the dashboard in headless Chromium is in `tests/dashboard.rs`).

mod common;

use common::{ws::*, *};

#[test]
fn read_api_returns_committed_records_and_post_still_ingests() {
    let (_dir, s) = Server::start_in_tempdir(&["--read-records-max", "50"]);
    let lines: Vec<String> = (0..120).map(|i| format!("rec {i}")).collect();
    ingest_lines(&s, &lines);
    let r = http(s.http, "GET", "/v1/logs", &[], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        50,
        "default 100 capped at read_records_max"
    );
    let r = http(s.http, "GET", "/v1/logs?from=100&limit=50", &[], b"").json();
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs.len(), 20);
    assert_eq!(recs[0]["offset"], 100);
    assert_eq!(recs[0]["data"], "rec 100");
    assert_eq!(
        (r["next"].as_u64(), r["committed_end"].as_u64()),
        (Some(120), Some(120))
    );
    let r = http(s.http, "GET", "/v1/logs?from=latest", &[], b"").json();
    assert_eq!(r["records"].as_array().unwrap().len(), 0);
    assert_eq!(
        http(s.http, "GET", "/v1/logs?limit=51", &[], b"").status,
        400
    );
    // POST /v1/logs still ingests; other methods get 405 with Allow.
    let r = http(
        s.http,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"[{"service":"x","message":"y"}]"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["first_offset"], 120);
    let r = http(s.http, "PUT", "/v1/logs", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, POST"));
    // The dashboard and its settings.
    let page = http(s.http, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("/v1/config") && !html.contains("https://"),
        "self-contained"
    );
    let cfg = http(s.http, "GET", "/v1/config", &[], b"").json();
    assert_eq!(cfg["ws_port"].as_u64(), Some(u64::from(ws_addr(&s).port())));
    assert_eq!(cfg["ws_path"], "/v1/stream");
    assert_eq!(cfg["ws_scheme"], "ws");
    assert!(s.stop().success());
}
