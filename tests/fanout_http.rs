//! What the HTTP side serves besides ingest: the read API `/v1/logs`, `/v1/config`, and
//! the dashboard in headless Chromium.

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::{ws::*, *};
use tungstenite::Message;

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

/// Flags of every Chromium this test starts: headless, and quiet (no sandbox, GPU,
/// updates, sync or first-run work).
const CHROMIUM_HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A headless Chromium driven over the DevTools protocol (flattened sessions).
struct Browser {
    child: std::process::Child,
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Browser {
    fn open(chromium: &std::path::Path, profile: &std::path::Path, url: &str) -> Browser {
        use std::io::BufRead;
        let mut child = std::process::Command::new(chromium)
            .args(CHROMIUM_HEADLESS)
            .args(["--remote-debugging-port=0", "--window-size=1280,900"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run chromium");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let endpoint = loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("chromium exited without a DevTools endpoint");
            }
            if let Some(i) = line.find("ws://") {
                break line[i..].trim().to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let host = endpoint
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        let (ws, _) = tungstenite::client::client(
            endpoint.as_str(),
            TcpStream::connect(host).expect("DevTools port"),
        )
        .expect("DevTools WebSocket");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": url }),
        );
        let id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": id, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let Message::Text(t) = self.ws.read().expect("DevTools message") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page; returns its value.
    fn eval(&mut self, js: &str) -> serde_json::Value {
        let s = self.session.clone();
        let r = self.call(
            Some(&s),
            "Runtime.evaluate",
            serde_json::json!({ "expression": js, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to true.
    fn wait_for(&mut self, js: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(js) == serde_json::Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never satisfied {js}; tail:\n{}",
                self.eval("document.getElementById('tail').innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({"service": if i % 2 == 0 {"checkout"} else {"search"},
                               "level": if i % 4 == 0 {"error"} else {"info"},
                               "message": format!("{tag}-{i}")})
            .to_string()
        })
        .collect()
}

fn send_lines(tcp: SocketAddr, lines: &[String]) {
    let mut payload = lines.join("\n");
    payload.push('\n');
    let acks = tcp_send_all(tcp, payload.as_bytes());
    assert_eq!(common::last_ack(&acks).unwrap().0, lines.len() as u64);
}

/// The dashboard in headless Chromium against the real server: history on load, live
/// records, pause/resume, a level filter, and resuming after a server restart with
/// nothing lost or repeated. Keeps a screenshot in target/tmp/fanout-dashboard/.
#[test]
fn dashboard_shows_ingested_records_in_headless_chromium() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Ports the server bound itself (port 0); the restart below takes the same ones, so
    // the page reconnects where it was. (Picking free ports first and passing them on
    // would race anyone binding in between.)
    let server = Server::start(dir.path(), &[]);
    let (http_at, ws_at) = (server.http, ws_addr(&server));
    let (http_flag, ws_flag) = (http_at.to_string(), ws_at.to_string());
    let fixed = ["--http-addr", &http_flag, "--ws-addr", &ws_flag];
    let tcp = server.tcp_acked;
    send_lines(tcp, &json_lines("history", 10));
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http_at}/");
    let mut b = Browser::open(&chromium, profile.path(), &url);
    let count = "document.querySelectorAll('#tail .rec').length";
    let has = |m: &str| format!("document.getElementById('tail').innerText.includes('\"{m}\"')");
    // History, then live records.
    b.wait_for(&has("history-9"), Duration::from_secs(20));
    b.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        Duration::from_secs(10),
    );
    send_lines(tcp, &json_lines("live", 10));
    b.wait_for(&has("live-9"), Duration::from_secs(10));
    assert_eq!(b.eval(count), 20);
    // Pause holds records back; resume shows them.
    b.eval("document.getElementById('pause').click()");
    send_lines(tcp, &json_lines("paused", 4));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(b.eval(&has("paused-3")), false, "paused tail must not grow");
    b.eval("document.getElementById('pause').click()");
    b.wait_for(&has("paused-3"), Duration::from_secs(10));
    // The server restarts; the page reconnects and resumes from its last offset.
    assert!(server.stop().success());
    let server = Server::restart_after_kill(dir.path(), &fixed);
    let tcp = server.tcp_acked;
    send_lines(tcp, &json_lines("restarted", 6));
    b.wait_for(&has("restarted-5"), Duration::from_secs(30));
    let offsets =
        b.eval("[...document.querySelectorAll('#tail .rec')].map(d => Number(d.dataset.offset))");
    let offsets: Vec<u64> = serde_json::from_value(offsets).unwrap();
    assert_eq!(
        offsets,
        (0..30).collect::<Vec<_>>(),
        "every record once, in order"
    );
    // Levels and services are shown; a level filter keeps only that level.
    assert!(b.eval("document.getElementById('levels').innerText.includes('error')") == true);
    b.eval("document.getElementById('level').value = 'error'; document.getElementById('level').onchange()");
    b.wait_for(
        &format!("{count} > 0 && [...document.querySelectorAll('#tail .rec')].every(d => d.innerText.includes(' error '))"),
        Duration::from_secs(10),
    );
    assert_eq!(b.eval(count), 9, "the 9 error records of 30");
    drop(b);
    // A screenshot for people to look at.
    let out_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fanout-dashboard");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(chromium)
        .args(CHROMIUM_HEADLESS)
        .args([
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("dashboard screenshot: {}", shot.display());
    assert!(server.stop().success());
}

/// Waits until the series `name` reaches `at_least`.
fn wait_scraped(http_at: SocketAddr, token: &str, name: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::metric_with_token(http_at, token, name) < at_least {
        assert!(Instant::now() < deadline, "{name} stayed below {at_least}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The dashboard in headless Chromium against a server that asks for tokens. Opened as
/// `/?access_token=<read token>`, it takes the token out of the address bar, keeps it
/// in sessionStorage, and shows history and live records: its `/v1/config` fetch
/// carried the token as Bearer and its WebSocket as `access_token` (the server refuses
/// both without). Its `/stats` polls carry the token too: they are refused 403 for want
/// of the metrics scope, never 401 for want of a token. Opened without a token, it
/// says so, refuses a wrong one typed in, and works once the right one is.
#[test]
fn dashboard_sends_its_token_in_headless_chromium() {
    let Some(chromium) = common::require_tool("chromium", "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let common::Token {
        token: read_token,
        line: read_line,
    } = common::make_token("read", "dashboard");
    let common::Token {
        token: scrape_token,
        line: scrape_line,
    } = common::make_token("metrics", "scrape");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{read_line}\n{scrape_line}\n")).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth-token-file", file.to_str().unwrap()],
    );
    let http_at = server.http;
    send_lines(server.tcp_acked, &json_lines("history", 5));
    let has = |m: &str| format!("document.getElementById('tail').innerText.includes('\"{m}\"')");
    let conn_is = |t: &str| format!("document.getElementById('conn').textContent === '{t}'");

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http_at}/?access_token={read_token}");
    let mut b = Browser::open(&chromium, profile.path(), &url);
    b.wait_for(&has("history-4"), Duration::from_secs(20));
    b.wait_for(&conn_is("live"), Duration::from_secs(10));
    send_lines(server.tcp_acked, &json_lines("live", 3));
    b.wait_for(&has("live-2"), Duration::from_secs(10));
    assert_eq!(
        b.eval("location.search"),
        "",
        "the token left the address bar"
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('ringstash.access_token')"),
        serde_json::Value::String(read_token.clone())
    );
    wait_scraped(
        http_at,
        &scrape_token,
        "ringstash_auth_refused_total{listener=\"http\",reason=\"forbidden\"}",
        1,
    );
    for refused in [
        "ringstash_auth_refused_total{listener=\"http\",reason=\"missing\"}",
        "ringstash_auth_refused_total{listener=\"http\",reason=\"invalid\"}",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"missing\"}",
        "ringstash_auth_refused_total{listener=\"ws\",reason=\"invalid\"}",
    ] {
        assert_eq!(
            common::metric_with_token(http_at, &scrape_token, refused),
            0,
            "{refused}"
        );
    }
    assert_eq!(
        common::metric_with_token(http_at, &scrape_token, "ringstash_ws_subscribers_total"),
        1
    );
    drop(b);

    // Without a token: asked for, a wrong one refused, the right one works.
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&chromium, profile.path(), &format!("http://{http_at}/"));
    b.wait_for(&conn_is("access token required"), Duration::from_secs(20));
    assert_eq!(b.eval("document.getElementById('auth').hidden"), false);
    assert_eq!(b.eval("document.querySelectorAll('#tail .rec').length"), 0);
    let submit = |t: &str| {
        format!(
            "document.getElementById('token').value = '{t}'; document.getElementById('auth').requestSubmit()"
        )
    };
    b.eval(&submit("rst_not-this-servers"));
    b.wait_for(&conn_is("token refused"), Duration::from_secs(10));
    b.eval(&submit(&read_token));
    b.wait_for(&has("live-2"), Duration::from_secs(20));
    b.wait_for(&conn_is("live"), Duration::from_secs(10));
    assert!(
        common::metric_with_token(
            http_at,
            &scrape_token,
            "ringstash_auth_refused_total{listener=\"http\",reason=\"missing\"}"
        ) >= 1
    );
    assert!(
        common::metric_with_token(
            http_at,
            &scrape_token,
            "ringstash_auth_refused_total{listener=\"http\",reason=\"invalid\"}"
        ) >= 1
    );
    drop(b);
    assert!(server.stop().success());
}
