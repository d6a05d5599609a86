//! WSS (`ws_tls`): the fan-out's WebSocket listener speaking TLS, with certificates
//! made here (rcgen: a CA and a server certificate for localhost/127.0.0.1 signed by
//! it), real clients (python `websockets`, and tungstenite over rustls), records
//! ingested over raw TCP and checked offset by offset.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{ws::*, *};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::{ClientConfig, ClientConnection, StreamOwned, pki_types::ServerName};
use tungstenite::{Message, WebSocket};

/// A WebSocket over a rustls client session.
type Wss = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A CA and the server certificate files the server is started with.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, and a first server certificate (`cn`, `serial`) written to the files.
    fn new(cn: &str, serial: u64) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringstash test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki.issue(cn, serial);
        pki
    }

    /// Writes a new server certificate for localhost and 127.0.0.1, signed by the CA,
    /// and its key over the files the server reads; returns the certificate (DER).
    fn issue(&self, cn: &str, serial: u64) -> Vec<u8> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.cert_file(), cert.pem()).unwrap();
        std::fs::write(self.key_file(), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The server flags for WSS with these files, then `more`.
    fn flags(&self, more: &[&str]) -> Vec<String> {
        let mut f: Vec<String> = [
            "--ws-tls",
            "true",
            "--tls-cert-file",
            self.cert_file().to_str().unwrap(),
            "--tls-key-file",
            self.key_file().to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        f.extend(more.iter().map(|s| (*s).to_owned()));
        f
    }

    fn start(&self, more: &[&str]) -> (tempfile::TempDir, Server) {
        let flags = self.flags(more);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_in_tempdir(&flags)
    }

    /// A rustls client configuration trusting the CA alone.
    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A TLS session to `addr` as `localhost`, over `tcp`.
    fn tls_on(&self, tcp: TcpStream) -> StreamOwned<ClientConnection, TcpStream> {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let conn = ClientConnection::new(
            self.client_config(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        StreamOwned::new(conn, tcp)
    }

    /// A subscription over WSS (tungstenite over rustls); panics on a refusal.
    fn subscribe(&self, addr: SocketAddr, query: &str) -> Wss {
        self.subscribe_on(TcpStream::connect(addr).unwrap(), addr, query)
    }

    fn subscribe_on(&self, tcp: TcpStream, addr: SocketAddr, query: &str) -> Wss {
        let url = format!("wss://localhost:{}/v1/stream?{query}", addr.port());
        let (ws, resp) = tungstenite::client::client(url.as_str(), self.tls_on(tcp))
            .unwrap_or_else(|e| panic!("subscribe {url}: {e:?}"));
        assert_eq!(resp.status(), 101);
        ws
    }
}

/// JSON records from a WSS subscription until `n` arrived (or panics after `within`).
fn read_wss(ws: &mut Wss, n: usize, within: Duration) -> Vec<Rec> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        match ws.read() {
            Ok(Message::Text(t)) => out.extend(parse_message(&t).0),
            Ok(_) => {}
            Err(e) => panic!("subscription failed after {} records: {e}", out.len()),
        }
    }
    out
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:06}")).collect()
}

/// Whether python3 and its `websockets` are there: under CI they must be (`.ci/run`
/// installs them), elsewhere their absence is a SKIP.
fn python_websockets() -> bool {
    if require_tool("python3", "python3").is_none() {
        return false;
    }
    let probe = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .expect("run python3");
    if !probe.status.success() {
        let why = "python3 cannot import websockets (Debian package python3-websockets)";
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        println!("SKIP: {why}");
        return false;
    }
    true
}

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wss_client.py");

/// The server certificate's (commonName, serialNumber in hex) as python's ssl module
/// sees it on a new connection.
fn python_peercert(addr: SocketAddr, ca: &Path) -> (String, String) {
    let out = run_ok(
        Command::new("python3").args([
            CLIENT_PY,
            "peercert",
            "localhost",
            &addr.port().to_string(),
            ca.to_str().unwrap(),
        ]),
        "wss_client.py peercert",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON line");
    (
        v["cn"].as_str().unwrap().to_owned(),
        v["serial"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn python_websockets_over_wss_receives_exactly_what_was_ingested() {
    if !python_websockets() {
        return;
    }
    let pki = Pki::new("ringstash wss", 1);
    let (_dir, s) = pki.start(&[]);
    let before = lines("before", 300);
    assert_eq!(ingest_lines(&s, &before), (300, 299));
    let url = format!(
        "wss://localhost:{}/v1/stream?from=earliest",
        ws_addr(&s).port()
    );
    let mut client = Command::new("python3")
        .args([
            CLIENT_PY,
            "subscribe",
            &url,
            pki.ca_file().to_str().unwrap(),
            "800",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wss_client.py");
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    if first.trim() != "subscribed" {
        let mut err = String::new();
        client
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!(
            "wss_client.py did not subscribe: {first:?} {err}\nserver: {}",
            s.stderr_text()
        );
    }
    // Records committed while it is subscribed come live, from the window.
    let after = lines("after", 500);
    assert_eq!(ingest_lines(&s, &after), (500, 799));
    let status = wait_timeout(&mut client, Duration::from_secs(60)).expect("client finished");
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "wss_client.py: {err}");
    let got: Vec<Rec> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            Rec {
                offset: v["offset"].as_u64().unwrap(),
                data: v["data"].as_str().unwrap().to_owned(),
                service: None,
                level: None,
            }
        })
        .collect();
    assert_exact(&got, 0, &[before, after].concat());
    assert_eq!(metric(s.http, "ringstash_tls_handshakes_total"), 1);
    assert_eq!(
        metric(
            s.http,
            "ringstash_tls_handshake_failures_total{reason=\"error\"}"
        ),
        0
    );
    assert_eq!(stats(&s)["server"]["ws_subscribers_total"], 1);
    assert!(s.stop().success());
}

#[test]
fn a_plaintext_client_on_the_wss_port_is_told_to_use_wss() {
    let pki = Pki::new("ringstash wss", 1);
    let (_dir, s) = pki.start(&[]);
    let at = ws_addr(&s);
    // A real WebSocket client pointed at ws:// gets the 400, with why.
    let (status, body) = refused(at, "/v1/stream?from=earliest", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "tls_required");
    assert_contains(body["detail"].as_str().unwrap(), "wss://");
    // A bare request line gets it too, and then the end of the connection (no hang).
    let mut raw = TcpStream::connect(at).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut said = Vec::new();
    raw.read_to_end(&mut said).expect("the server closes");
    let (status, body) = status_and_body(&said);
    assert_eq!(status, 400);
    assert_eq!(body["error"], "tls_required");
    assert_eq!(
        metric(
            s.http,
            "ringstash_tls_handshake_failures_total{reason=\"plaintext\"}"
        ),
        2
    );
    // The dashboard subscribes with the scheme /v1/config names.
    let cfg = http(s.http, "GET", "/v1/config", &[], b"").json();
    assert_eq!(cfg["ws_scheme"], "wss");
    assert_eq!(metric(s.http, "ringstash_tls_handshakes_total"), 0);
    assert!(s.stop().success());
}

#[test]
fn handshake_deadlines_and_bad_tls_cost_only_their_own_connection() {
    let pki = Pki::new("ringstash wss", 1);
    let (_dir, s) = pki.start(&[
        "--tls-handshake-timeout-ms",
        "400",
        "--ws-handshake-timeout-ms",
        "1500",
    ]);
    let at = ws_addr(&s);
    // A subscriber opened first keeps working through all of this.
    let mut healthy = pki.subscribe(at, "from=earliest");

    // Connects and sends nothing: closed at the TLS deadline.
    let mut silent = TcpStream::connect(at).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut said = Vec::new();
    let _ = silent.read_to_end(&mut said);
    let after = started.elapsed();
    assert!(said.is_empty(), "{said:?}");
    assert!(
        after >= Duration::from_millis(360) && after < Duration::from_secs(3),
        "closed {after:?} after the connect; tls_handshake_timeout_ms is 400"
    );
    assert_eq!(
        metric(
            s.http,
            "ringstash_tls_handshake_failures_total{reason=\"timeout\"}"
        ),
        1
    );

    // A handshake record of garbage: an alert and the end, counted as a failure.
    let mut garbage = TcpStream::connect(at).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0, 0, 4, 1, 2, 3, 4])
        .unwrap();
    let mut said = Vec::new();
    let _ = garbage.read_to_end(&mut said);
    assert_eq!(said.first(), Some(&0x15), "a TLS alert record: {said:?}");
    assert_eq!(
        metric(
            s.http,
            "ringstash_tls_handshake_failures_total{reason=\"error\"}"
        ),
        1
    );

    // TLS done, but no upgrade request: the WebSocket deadline answers 408, through TLS.
    let mut quiet = pki.tls_on(TcpStream::connect(at).unwrap());
    let started = Instant::now();
    let mut said = Vec::new();
    let _ = quiet.read_to_end(&mut said);
    let after = started.elapsed();
    let (status, body) = status_and_body(&said);
    assert_eq!(status, 408, "{body}");
    assert_contains(body["detail"].as_str().unwrap(), "ws_handshake_timeout_ms");
    assert!(
        after >= Duration::from_millis(1300) && after < Duration::from_secs(5),
        "answered {after:?} after the connect"
    );
    assert_eq!(stats(&s)["server"]["ws_handshake_timeouts_total"], 1);

    let sent = lines("still", 50);
    assert_eq!(ingest_lines(&s, &sent), (50, 49));
    assert_exact(
        &read_wss(&mut healthy, 50, Duration::from_secs(20)),
        0,
        &sent,
    );
    // One completed handshake each for the subscriber and the quiet client.
    assert_eq!(metric(s.http, "ringstash_tls_handshakes_total"), 2);
    assert!(s.stop().success());
}

#[test]
fn sighup_serves_the_new_certificate_to_new_clients_while_open_subscribers_keep_receiving() {
    let pki = Pki::new("ringstash wss one", 1);
    let (_dir, s) = pki.start(&[]);
    let at = ws_addr(&s);
    let mut open = pki.subscribe(at, "from=earliest");
    let first_cert = open
        .get_ref()
        .conn
        .peer_certificates()
        .unwrap()
        .first()
        .unwrap()
        .to_vec();
    let one = lines("one", 100);
    assert_eq!(ingest_lines(&s, &one), (100, 99));
    assert_exact(&read_wss(&mut open, 100, Duration::from_secs(20)), 0, &one);

    let second_cert = pki.issue("ringstash wss two", 2);
    assert_ne!(first_cert, second_cert);
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        s.http,
        "ringstash_reloads_total{subject=\"tls\",result=\"ok\"}",
    ) != 1
    {
        assert!(Instant::now() < deadline, "no reload: {}", s.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }

    // A new client sees the new certificate...
    let mut fresh = pki.subscribe(at, "from=earliest");
    let seen = fresh.get_ref().conn.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(seen, second_cert, "a new connection after SIGHUP");
    if python_websockets() {
        let (cn, serial) = python_peercert(at, &pki.ca_file());
        assert_eq!(cn, "ringstash wss two");
        assert_eq!(u64::from_str_radix(&serial, 16).unwrap(), 2);
    }
    // ...and the subscriber from before keeps its session and its records.
    let two = lines("two", 100);
    assert_eq!(ingest_lines(&s, &two), (100, 199));
    assert_exact(
        &read_wss(&mut open, 100, Duration::from_secs(20)),
        100,
        &two,
    );
    assert_exact(
        &read_wss(&mut fresh, 200, Duration::from_secs(20)),
        0,
        &[one, two].concat(),
    );
    assert!(s.stop().success());
}

#[test]
fn a_stalled_wss_subscriber_is_closed_with_4008_and_a_healthy_one_gets_everything() {
    let pki = Pki::new("ringstash wss", 1);
    let (_dir, s) = pki.start(&[
        "--subscriber-stall-ms-max",
        "300",
        "--subscriber-send-buffer-bytes",
        "16384",
    ]);
    let at = ws_addr(&s);
    // Reads nothing, with a small receive buffer: the ciphertext backs up.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    sock.connect(&at.into()).unwrap();
    let mut stalled = pki.subscribe_on(sock.into(), at, "from=earliest");
    // The healthy one is read from the start: left unread while the records go in it
    // would stall too (a debug build's TLS can take longer than the stall limit) and
    // be closed with 4008 as well.
    let mut healthy = pki.subscribe(at, "from=earliest");
    let healthy =
        std::thread::spawn(move || read_wss(&mut healthy, 20_000, Duration::from_secs(60)));
    let sent: Vec<String> = (0..20_000)
        .map(|i| format!("{i:08} {}", "p".repeat(91)))
        .collect();
    for chunk in sent.chunks(5_000) {
        ingest_lines(&s, chunk);
    }
    assert_exact(&healthy.join().unwrap(), 0, &sent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&s)["server"]["ws_stalled_closed_total"].as_u64() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was not closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It reads what it was sent, in order, then the close frame.
    let mut got: Vec<Rec> = Vec::new();
    loop {
        match stalled.read() {
            Ok(Message::Text(t)) => got.extend(parse_message(&t).0),
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4008);
                assert_eq!(f.reason.as_str(), "stalled");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("expected the 4008 close frame, got {e}"),
        }
    }
    assert!(got.len() < sent.len(), "it stalled before the end");
    assert_exact(&got, 0, &sent[..got.len()]);
    assert!(s.stop().success());
}
