//! Bearer tokens with scopes (the real binary, real clients): curl on every HTTP route
//! with no token, a wrong one, one without the scope and the right one, and what was
//! stored; WebSocket subscriptions by header and by `access_token`; a SIGHUP that swaps
//! the tokens (and one that fails); tokens made by `ringstash token`; the warnings for
//! listeners reachable beyond loopback. The dashboard in a browser with a token is in
//! `tests/fanout_http.rs`.

mod common;

use std::{
    io::{BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{ws::*, *};

fn write_token_file(dir: &Path, tokens: &[&Token]) -> PathBuf {
    let path = dir.join("tokens");
    let mut text = String::from("# ringstash tokens\n\n");
    for t in tokens {
        text += &t.line;
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// What curl got: status, headers (lower-cased names) and body.
struct Curled {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curled {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request with curl; `token` goes in `Authorization: Bearer`.
fn curl(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[&str],
    body: Option<&[u8]>,
) -> Curled {
    let curl = require_tool("curl", "curl").expect("curl");
    let dir = tempfile::tempdir().unwrap();
    let (head_file, body_file) = (dir.path().join("head"), dir.path().join("body"));
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "30", "-X", method, "-D"])
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file);
    if method == "HEAD" {
        cmd.arg("-I");
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        let f = dir.path().join("req");
        std::fs::write(&f, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    cmd.arg(format!("http://{addr}{path}"));
    run_ok(&mut cmd, "curl");
    let head = std::fs::read_to_string(&head_file).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Curled {
        status,
        headers,
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

/// Asserts a refusal: status, error code, and the challenge.
#[track_caller]
fn assert_refused(r: &Curled, status: u16, code: &str, challenge: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let challenge_got = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge_got.starts_with("Bearer realm=\"ringstash\"")
            && challenge_got.contains(challenge),
        "WWW-Authenticate: {challenge_got:?}"
    );
    if !code.is_empty() {
        assert_eq!(r.json()["error"], code);
    }
}

#[test]
fn every_http_route_needs_the_scope_it_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r, m) = (
        make_token("write", "ingest"),
        make_token("read", "reader"),
        make_token("metrics", "prometheus"),
    );
    let file = write_token_file(dir.path(), &[&w, &r, &m]);
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--auth-token-file", file.to_str().unwrap()]);
    assert_contains(&s.stderr_text(), "auth: 3 tokens from");
    let a = s.http;
    let json = ["Content-Type: application/json"];
    let objects = br#"[{"service":"api","message":"stored"}]"#;

    // Ingest: only a write token stores anything.
    let ingest =
        |token: Option<&str>, body: &[u8]| curl(a, "POST", "/ingest", token, &[], Some(body));
    assert_refused(&ingest(None, b"no token"), 401, "token_missing", "");
    assert_refused(
        &ingest(Some("rst_not-a-token-of-this-server"), b"wrong token"),
        401,
        "token_invalid",
        "error=\"invalid_token\"",
    );
    let refused = ingest(Some(&m.token), b"metrics token");
    assert_refused(&refused, 403, "scope_missing", "scope=\"write\"");
    assert_contains(refused.json()["detail"].as_str().unwrap(), "prometheus");
    assert_refused(
        &ingest(Some(&r.token), b"read token"),
        403,
        "scope_missing",
        "",
    );
    let basic = curl(
        a,
        "POST",
        "/ingest",
        None,
        &["Authorization: Basic dXNlcjpwYXNz"],
        Some(b"basic"),
    );
    assert_refused(&basic, 401, "token_invalid", "invalid_token");
    let ok = ingest(Some(&w.token), b"line one\nline two");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["count"], 2);
    assert_refused(
        &curl(a, "POST", "/v1/logs", None, &json, Some(objects)),
        401,
        "token_missing",
        "",
    );
    assert_refused(
        &curl(a, "POST", "/v1/logs", Some(&r.token), &json, Some(objects)),
        403,
        "scope_missing",
        "",
    );
    // An OTLP/protobuf export is refused in its own encoding, with the same status.
    let otlp = curl(
        a,
        "POST",
        "/v1/logs",
        None,
        &["Content-Type: application/x-protobuf"],
        Some(b""),
    );
    assert_refused(&otlp, 401, "", "");
    assert_eq!(otlp.header("content-type"), Some("application/x-protobuf"));
    let ok = curl(a, "POST", "/v1/logs", Some(&w.token), &json, Some(objects));
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    // Reading records: the read scope only.
    assert_refused(
        &curl(a, "GET", "/v1/logs?from=0", None, &[], None),
        401,
        "token_missing",
        "",
    );
    assert_refused(
        &curl(a, "HEAD", "/v1/logs?from=0", None, &[], None),
        401,
        "",
        "",
    );
    assert_refused(
        &curl(a, "GET", "/v1/logs?from=0", Some(&w.token), &[], None),
        403,
        "scope_missing",
        "scope=\"read\"",
    );
    assert_refused(
        &curl(a, "GET", "/v1/logs?from=0", Some(&m.token), &[], None),
        403,
        "scope_missing",
        "",
    );
    let read = curl(a, "GET", "/v1/logs?from=0", Some(&r.token), &[], None);
    assert_eq!(read.status, 200);
    let records = read.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3, "{records:?}");
    // The dashboard's aggregates: counts of what is in the log, so the read scope too.
    assert_refused(
        &curl(a, "GET", "/v1/aggregates", None, &[], None),
        401,
        "token_missing",
        "",
    );
    assert_refused(
        &curl(a, "GET", "/v1/aggregates", Some(&m.token), &[], None),
        403,
        "scope_missing",
        "scope=\"read\"",
    );
    let agg = curl(a, "GET", "/v1/aggregates", Some(&r.token), &[], None);
    assert_eq!(agg.status, 200, "{}", String::from_utf8_lossy(&agg.body));
    assert_refused(
        &curl(a, "GET", "/v1/config", None, &[], None),
        401,
        "token_missing",
        "",
    );
    assert_eq!(
        curl(a, "GET", "/v1/config", Some(&r.token), &[], None).status,
        200
    );

    // Stats: the metrics scope only, so a scraper's token can neither ingest nor read.
    for path in ["/metrics", "/stats"] {
        assert_refused(
            &curl(a, "GET", path, None, &[], None),
            401,
            "token_missing",
            "",
        );
        assert_refused(
            &curl(a, "GET", path, Some(&r.token), &[], None),
            403,
            "scope_missing",
            "scope=\"metrics\"",
        );
        assert_eq!(curl(a, "GET", path, Some(&m.token), &[], None).status, 200);
    }
    // A refusal without a body keeps its keep-alive connection; the next request on
    // it is checked on its own.
    let mut kept = BufReader::new(TcpStream::connect(a).unwrap());
    let scrape = format!("Bearer {}", m.token);
    for (headers, want) in [
        (vec![], 401),
        (vec![("Authorization", scrape.as_str())], 200),
    ] {
        kept.get_mut()
            .write_all(&request("GET", "/metrics", &headers, b""))
            .unwrap();
        assert_eq!(read_response(&mut kept).expect("a response").status, want);
    }
    drop(kept);
    // Open: health for load balancers, and the dashboard page (no records in it).
    assert_eq!(curl(a, "GET", "/healthz", None, &[], None).status, 200);
    assert_eq!(curl(a, "GET", "/", None, &[], None).status, 200);
    assert_eq!(curl(a, "GET", "/nowhere", None, &[], None).status, 404);

    let metrics =
        String::from_utf8(curl(a, "GET", "/metrics", Some(&m.token), &[], None).body).unwrap();
    for line in [
        "ringstash_auth_refused_total{listener=\"http\",reason=\"missing\"} 10",
        "ringstash_auth_refused_total{listener=\"http\",reason=\"invalid\"} 2",
        "ringstash_auth_refused_total{listener=\"http\",reason=\"forbidden\"} 8",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"missing\"} 0",
        "ringstash_auth_tokens 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(s.stop().success());
    let stored = stored_payloads(&data);
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(&stored[..2], ["line one", "line two"]);
    assert_contains(&stored[2], "\"message\":\"stored\"");
}

/// Opens a subscription with `auth` headers and `query`; the response on success, or
/// the refusal's status, `WWW-Authenticate` and JSON body.
fn ws_connect(
    addr: SocketAddr,
    query: &str,
    authorization: Option<&str>,
) -> Result<Ws, (u16, String, serde_json::Value)> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/v1/stream?{query}"
    ))
    .unwrap();
    if let Some(a) = authorization {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {a}").parse().unwrap());
    }
    match tungstenite::client::client(req, stream) {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                challenge,
                serde_json::from_slice(&body).unwrap(),
            ))
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn websocket_subscriptions_need_a_read_token_by_header_or_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let (r, w, m) = (
        make_token("read", "viewer"),
        make_token("write", "app"),
        make_token("metrics", "scrape"),
    );
    let file = write_token_file(dir.path(), &[&r, &w, &m]);
    let s = Server::start(
        &dir.path().join("data"),
        &["--auth-token-file", file.to_str().unwrap()],
    );
    let ws = ws_addr(&s);
    ingest_lines(&s, &["first".into(), "second".into()]);

    let refused = |query: &str, header: Option<&str>| match ws_connect(ws, query, header) {
        Ok(_) => panic!("{query} {header:?} was accepted"),
        Err(e) => e,
    };
    let (status, challenge, body) = refused("from=earliest", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );
    assert_eq!(challenge, "Bearer realm=\"ringstash\"");
    let (status, challenge, body) = refused("from=earliest&access_token=rst_nope", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_invalid"))
    );
    assert_contains(&challenge, "invalid_token");
    let (status, _, body) = refused("from=earliest", Some("rst_nope"));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_invalid"))
    );
    let (status, challenge, body) =
        refused(&format!("from=earliest&access_token={}", w.token), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("scope_missing"))
    );
    assert_contains(&challenge, "scope=\"read\"");
    // Two tokens at once are refused, even if both are good (RFC 6750 section 2).
    let (status, _, body) = refused(
        &format!("from=earliest&access_token={}", r.token),
        Some(&r.token),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_invalid"))
    );

    // Accepted both ways; the records arrive, and the token is no filter parameter.
    let mut by_query = ws_connect(ws, &format!("from=earliest&access_token={}", r.token), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut by_header =
        ws_connect(ws, "from=earliest", Some(&r.token)).unwrap_or_else(|e| panic!("{e:?}"));
    for sub in [&mut by_query, &mut by_header] {
        let (recs, _) = read_records(sub, 2, Duration::from_secs(10));
        assert_exact(&recs, 0, &["first".into(), "second".into()]);
    }
    drop((by_query, by_header));
    let metrics = curl_metrics(s.http, &m.token);
    for line in [
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"missing\"} 1",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"invalid\"} 3",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"forbidden\"} 1",
        "ringstash_ws_subscribers_total 2",
        "ringstash_auth_refused_total{listener=\"http\",reason=\"missing\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(s.stop().success());
}

fn curl_metrics(addr: SocketAddr, token: &str) -> String {
    let r = curl(addr, "GET", "/metrics", Some(token), &[], None);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// With auth off (the loopback default), nothing is asked for, and a page that sends
/// `access_token` anyway still subscribes.
#[test]
fn with_auth_off_no_token_is_needed_and_access_token_is_ignored() {
    let (_dir, s) = Server::start_in_tempdir(&[]);
    assert!(!s.stderr_text().contains("auth:"), "{}", s.stderr_text());
    ingest_lines(&s, &["open".into()]);
    let mut sub = subscribe(ws_addr(&s), "from=earliest&access_token=rst_anything");
    let (recs, _) = read_records(&mut sub, 1, Duration::from_secs(10));
    assert_exact(&recs, 0, &["open".into()]);
    assert_eq!(
        curl(s.http, "GET", "/v1/logs?from=0", None, &[], None).status,
        200
    );
    assert_eq!(curl(s.http, "GET", "/metrics", None, &[], None).status, 200);
    drop(sub);
    assert!(s.stop().success());
}

/// Waits until the server's stderr has `part`, for a SIGHUP's answer.
#[track_caller]
fn sighup(s: &Server) {
    // SAFETY: signalling a child process this test started and still holds.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
}

/// One POST /ingest on an open keep-alive connection; its status.
fn post_on(conn: &mut BufReader<TcpStream>, token: &str, body: &[u8]) -> u16 {
    let auth = format!("Bearer {token}");
    conn.get_mut()
        .write_all(&request(
            "POST",
            "/ingest",
            &[("Authorization", &auth)],
            body,
        ))
        .unwrap();
    read_response(conn).expect("a response").status
}

#[test]
fn sighup_swaps_the_tokens_and_a_failed_reload_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, m) = (
        make_token("write", "old"),
        make_token("write", "new"),
        make_token("metrics", "scrape"),
    );
    let file = write_token_file(dir.path(), &[&old, &m]);
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--auth-token-file", file.to_str().unwrap()]);
    let ingest = |t: &Token, body: &[u8]| {
        curl(s.http, "POST", "/ingest", Some(&t.token), &[], Some(body)).status
    };
    assert_eq!(ingest(&old, b"before"), 200);
    assert_eq!(ingest(&new, b"new before reload"), 401);
    // A keep-alive connection made before the reload: its requests are checked one
    // by one, against the tokens in force when each arrives.
    let mut kept = BufReader::new(TcpStream::connect(s.http).unwrap());
    kept.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(post_on(&mut kept, &old.token, b"kept before"), 200);

    write_token_file(dir.path(), &[&new, &m]);
    sighup(&s);
    wait_stderr(&s, "tokens reloaded from", 1);
    assert_eq!(ingest(&old, b"old after reload"), 401);
    assert_eq!(ingest(&new, b"after"), 200);
    assert_eq!(post_on(&mut kept, &new.token, b"kept after"), 200);
    assert_eq!(post_on(&mut kept, &old.token, b"kept old after"), 401);

    // A file that does not parse: said on stderr, counted, and the tokens stay.
    std::fs::write(&file, format!("{}\nsha256:zz write broken\n", new.line)).unwrap();
    sighup(&s);
    wait_stderr(&s, "tokens NOT reloaded", 1);
    assert_contains(&s.stderr_text(), "line 2");
    assert_eq!(ingest(&new, b"after failed reload"), 200);
    assert_eq!(ingest(&old, b"old after failed reload"), 401);
    let metrics = curl_metrics(s.http, &m.token);
    for line in [
        "ringstash_reloads_total{subject=\"auth\",result=\"ok\"} 1",
        "ringstash_reloads_total{subject=\"auth\",result=\"failed\"} 1",
        "ringstash_auth_tokens 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    drop(kept);
    assert!(s.stop().success());
    assert_eq!(
        stored_payloads(&data),
        [
            "before",
            "kept before",
            "after",
            "kept after",
            "after failed reload"
        ]
    );
}

/// Tokens in the configuration itself (`auth_tokens`, `;`-separated) work as the
/// file's do; a malformed entry, in either, stops start-up naming where it is.
#[test]
fn inline_tokens_work_and_bad_entries_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = (make_token("write", "a"), make_token("read", "b"));
    let inline = format!("{}; {}", w.line, r.line);
    let s = Server::start(&dir.path().join("data"), &["--auth-tokens", &inline]);
    let post = curl(s.http, "POST", "/ingest", Some(&w.token), &[], Some(b"x"));
    assert_eq!(post.status, 200);
    assert_eq!(
        curl(s.http, "GET", "/v1/logs", Some(&r.token), &[], None).status,
        200
    );
    assert_eq!(
        curl(s.http, "GET", "/v1/logs", Some(&w.token), &[], None).status,
        403
    );
    sighup(&s);
    wait_stderr(&s, "auth_tokens is read at start only", 1);
    assert!(s.stop().success());

    let bad = format!("{}; sha256:00 write c", w.line);
    let err = Server::try_start_env(&dir.path().join("data2"), &["--auth-tokens", &bad], &[])
        .err()
        .expect("a bad auth_tokens entry stops start-up");
    assert_contains(&err, "auth_tokens, line 2");
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("{}\n{}\n", w.line, w.line.replace(" a", " other")),
    )
    .unwrap();
    let err = Server::try_start_env(
        &dir.path().join("data3"),
        &["--auth-token-file", file.to_str().unwrap()],
        &[],
    )
    .err()
    .expect("the same token twice stops start-up");
    assert_contains(&err, "same token twice");
    let out = Command::new(BIN)
        .args(["token", "--scopes", "admin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_contains(&String::from_utf8_lossy(&out.stderr), "unknown scope");
}

/// A listener bound beyond loopback with nothing to keep strangers out is named at
/// start; tokens quiet the HTTP and WebSocket warnings down to the clear-text one.
#[test]
fn listeners_reachable_beyond_loopback_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let wide = [
        "--http-addr",
        "0.0.0.0:0",
        "--ws-addr",
        "0.0.0.0:0",
        "--tcp-addr",
        "0.0.0.0:0",
    ];
    let s = Server::start(&dir.path().join("a"), &wide);
    let err = s.stderr_text();
    assert_contains(
        &err,
        "warning: http_addr = 0.0.0.0:0 is reachable beyond this host with neither http_tls nor tokens",
    );
    assert_contains(
        &err,
        "warning: ws_addr = 0.0.0.0:0 is reachable beyond this host with neither ws_tls nor tokens",
    );
    assert_contains(
        &err,
        "warning: tcp_addr = 0.0.0.0:0 is reachable beyond this host and tcp_tls is off",
    );
    for loopback in ["tcp_acked_addr", "syslog_addr", "relp_addr"] {
        assert!(!err.contains(&format!("warning: {loopback}")), "{err}");
    }
    assert!(s.stop().success());

    let w = make_token("write", "w");
    let mut flags = wide.to_vec();
    flags.extend(["--auth-tokens", &w.line]);
    let s = Server::start(&dir.path().join("b"), &flags);
    let err = s.stderr_text();
    assert!(!err.contains("nor tokens"), "{err}");
    assert_contains(
        &err,
        "warning: http_addr = 0.0.0.0:0 is reachable beyond this host and http_tls is off: tokens and records cross the network readable",
    );
    assert_contains(&err, "warning: tcp_addr");
    assert!(s.stop().success());
}
