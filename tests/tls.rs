//! TLS on the reactor listeners, with real clients: `curl` over HTTPS, `openssl
//! s_client` on raw TCP, rsyslog's GnuTLS driver for syslog over TLS (RFC 5425) and
//! RELP over TLS; mutual TLS; plain text refused; the handshake deadline; SIGHUP
//! swapping the certificate for new clients while an old connection keeps working.
//! Certificates are made in the test (rcgen).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

mod common;

use common::{
    certs::{Ca, Leaf},
    rsyslog::{self, Rsyslog},
    wal::temp_data_dir,
    *,
};

/// The flags that give a server `leaf` as its certificate.
fn cert_flags(leaf: &Leaf) -> Vec<String> {
    vec![
        "--tls-cert-file".into(),
        leaf.cert.display().to_string(),
        "--tls-key-file".into(),
        leaf.key.display().to_string(),
    ]
}

fn start(dir: &Path, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(dir, &flags)
}

/// A server with TLS on what `flags` turn on, its certificate (common name `cn`, for
/// localhost) from a CA made for the test.
struct Fixture {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    ca: Ca,
    leaf: Leaf,
    s: Server,
}

impl Fixture {
    fn start(cn: &str, flags: &[&str]) -> Fixture {
        let (tmp, dir) = temp_data_dir("d");
        let ca = Ca::new(tmp.path(), "ca");
        let leaf = ca.server(tmp.path(), "server", cn);
        let mut all = cert_flags(&leaf);
        all.extend(flags.iter().map(|f| f.to_string()));
        let s = start(&dir, &all);
        Fixture {
            tmp,
            dir,
            ca,
            leaf,
            s,
        }
    }
}

/// Sends `bytes` then a close_notify over `conn`, leaving the TCP connection open.
fn send_then_close_notify(conn: &mut rustls::ClientConnection, sock: &mut TcpStream, bytes: &[u8]) {
    conn.writer().write_all(bytes).unwrap();
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(sock).unwrap();
    }
}

/// A TLS counter, read from `/metrics` on the plain HTTP listener.
fn tls_counter(s: &Server, name: &str) -> u64 {
    metric(s.http, name)
}

/// `openssl s_client` connected to `addr`, its output read line by line.
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl SClient {
    fn connect(addr: SocketAddr, ca: &Path, extra: &[&str]) -> SClient {
        require_tool("openssl", "openssl").expect("openssl");
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
            .arg(addr.to_string())
            .arg("-CAfile")
            .arg(ca)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        SClient {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// The first line (stdout or stderr) starting with `prefix` within `within`.
    fn line(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The first line that `wanted` accepts, waiting at most `within`; with what came
    /// before it if none did.
    fn find_line(&self, wanted: impl Fn(&str) -> bool, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        let mut before = String::new();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(before);
            };
            match self.lines.recv_timeout(left) {
                Ok(l) if wanted(&l) => return Ok(l),
                Ok(l) => {
                    before.push_str(&l);
                    before.push('\n');
                }
                Err(_) => return Err(before),
            }
        }
    }

    /// Every line until the client exits (or `within`).
    fn rest(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut out = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    out.push_str(&l);
                    out.push('\n');
                }
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` over HTTPS with `ca` trusted; (status, body).
fn curl(url: &str, ca: &Path, extra: &[&str]) -> (u16, String) {
    require_tool("curl", "curl").expect("curl");
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn https_ingest_and_reads_with_curl_and_plain_http_is_refused() {
    let Fixture {
        tmp,
        dir,
        ca,
        leaf: _leaf,
        s,
    } = Fixture::start("ringstash-test", &["--http-tls", "true"]);
    assert_contains(
        &s.stderr_text(),
        "tls: http (TLS 1.2+; no client certificates;",
    );
    let base = format!("https://localhost:{}", s.http.port());

    // Two requests on one kept-alive connection (curl --next reuses it).
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca.pem)
        .args([
            "-d",
            "over tls one",
            &format!("{base}/ingest"),
            "--next",
            "--cacert",
        ])
        .arg(&ca.pem)
        .args(["-d", "over tls two", &format!("{base}/ingest")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("\"first_offset\":0") && said.contains("\"first_offset\":1"),
        "{said}"
    );
    let (code, body) = curl(&format!("{base}/v1/logs?from=0"), &ca.pem, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("over tls one") && body.contains("over tls two"),
        "{body}"
    );

    // Plain HTTP on the HTTPS port: a clear 400, nothing stored.
    let r = http(s.http, "POST", "/ingest", &[], b"plain text");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "tls_required");
    // A client that trusts another CA refuses the server (and the server counts it).
    let other = Ca::new(tmp.path(), "other");
    let (code, _) = curl(&format!("{base}/healthz"), &other.pem, &[]);
    assert_eq!(
        code, 0,
        "curl must refuse a certificate from an untrusted CA"
    );
    // TLS 1.1 is refused; 1.2 and 1.3 are taken.
    assert_eq!(
        curl(&format!("{base}/healthz"), &ca.pem, &["--tls-max", "1.1"]).0,
        0
    );
    assert_eq!(
        curl(&format!("{base}/healthz"), &ca.pem, &["--tls-max", "1.2"]).0,
        200
    );
    assert_eq!(
        curl(&format!("{base}/healthz"), &ca.pem, &["--tlsv1.3"]).0,
        200
    );

    let (_, metrics) = curl(&format!("{base}/metrics"), &ca.pem, &[]);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(
        value("ringstash_tls_handshake_failures_total{reason=\"plaintext\"}"),
        1
    );
    assert!(
        value("ringstash_tls_handshake_failures_total{reason=\"error\"}") >= 2,
        "{metrics}"
    );
    assert!(value("ringstash_tls_handshakes_total") >= 5, "{metrics}");
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["over tls one", "over tls two"]);
}

#[test]
fn acked_tcp_over_tls_acks_durable_records_and_plain_text_gets_an_error_line() {
    let Fixture {
        tmp: _tmp,
        dir,
        ca,
        leaf: _leaf,
        s,
    } = Fixture::start(
        "ringstash-test",
        &["--tcp-acked-tls", "true", "--tcp-tls", "true"],
    );

    let mut c = SClient::connect(s.tcp_acked, &ca.pem, &[]);
    c.send("first\nsecond\n");
    let ack = c
        .line("ack ", Duration::from_secs(10))
        .expect("an ack over TLS");
    assert_eq!(parse_ack(&ack), Some((2, 1)), "{ack}");
    drop(c);

    // One-way over TLS: nothing comes back; the records land.
    let mut c = SClient::connect(s.tcp, &ca.pem, &[]);
    c.send("third\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(s.http, "ringstash_records_committed_total") < 3 {
        assert!(Instant::now() < deadline, "the one-way record never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);

    // Plain text on a TLS port: an error line saying why, then the close.
    assert_eq!(
        tcp_send_all(s.tcp_acked, b"plain\n"),
        "error - tls_required this listener speaks TLS; connect with TLS\n"
    );
    assert_eq!(
        tls_counter(
            &s,
            "ringstash_tls_handshake_failures_total{reason=\"plaintext\"}"
        ),
        1
    );
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["first", "second", "third"]);
}

#[test]
fn mutual_tls_takes_a_client_certificate_from_the_ca_and_refuses_others() {
    let (tmp, dir) = temp_data_dir("d");
    let ca = Ca::new(tmp.path(), "ca");
    let leaf = ca.server(tmp.path(), "server", "ringstash-test");
    let good = ca.client(tmp.path(), "good", "producer-1");
    let other_ca = Ca::new(tmp.path(), "other");
    let bad = other_ca.client(tmp.path(), "bad", "intruder");
    let mut flags = cert_flags(&leaf);
    flags.extend([
        "--tcp-acked-tls".into(),
        "true".into(),
        "--tls-client-ca-file".into(),
        ca.pem.display().to_string(),
    ]);
    let s = start(&dir, &flags);
    assert_contains(
        &s.stderr_text(),
        "client certificates required on raw TCP, syslog and RELP",
    );

    let with = |leaf: &Leaf| -> Vec<String> {
        vec![
            "-cert".into(),
            leaf.cert.display().to_string(),
            "-key".into(),
            leaf.key.display().to_string(),
        ]
    };
    let args = with(&good);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = SClient::connect(s.tcp_acked, &ca.pem, &args);
    c.send("trusted\n");
    let ack = c
        .line("ack ", Duration::from_secs(10))
        .expect("the trusted client is acked");
    assert_eq!(parse_ack(&ack), Some((1, 0)));
    drop(c);

    // A certificate from another CA, and none at all: no ack, nothing stored.
    let args = with(&bad);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for extra in [args.as_slice(), &[][..]] {
        let mut c = SClient::connect(s.tcp_acked, &ca.pem, extra);
        let _ = c.stdin.as_mut().unwrap().write_all(b"untrusted\n");
        let said = c.rest(Duration::from_secs(3));
        assert!(!said.contains("ack "), "{said}");
    }
    // Under TLS 1.3 the client's certificate is judged after the client has sent its
    // Finished: the server may count the second refusal a moment after the client gave
    // up, so the count is awaited (a while), not read once.
    let name = "ringstash_tls_handshake_failures_total{reason=\"error\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls_counter(&s, name) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tls_counter(&s, name), 2);
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["trusted"]);
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed_at_the_deadline() {
    let Fixture {
        tmp: _tmp,
        dir: _dir,
        ca: _ca,
        leaf: _leaf,
        s,
    } = Fixture::start(
        "ringstash-test",
        &[
            "--tcp-acked-tls",
            "true",
            "--tls-handshake-timeout-ms",
            "300",
        ],
    );
    let t0 = Instant::now();
    let mut c = TcpStream::connect(s.tcp_acked).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The first byte of a TLS handshake record, and then nothing.
    c.write_all(&[0x16]).unwrap();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap_or(0);
    let took = t0.elapsed();
    assert_eq!(n, 0, "closed without a word");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "closed after {took:?}, not at the 300 ms deadline"
    );
    // Counted once the handshake's task sees its read end (just after the close).
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls_counter(
        &s,
        "ringstash_tls_handshake_failures_total{reason=\"timeout\"}",
    ) < 1
    {
        assert!(Instant::now() < deadline, "the timeout was not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        tls_counter(
            &s,
            "ringstash_tls_handshake_failures_total{reason=\"timeout\"}"
        ),
        1
    );
    assert!(s.stop().success());
}

#[test]
fn sighup_swaps_the_certificate_for_new_clients_while_an_old_connection_goes_on() {
    let Fixture {
        tmp,
        dir,
        ca,
        leaf,
        s,
    } = Fixture::start("first-cert", &["--tcp-acked-tls", "true"]);
    let subject = || {
        let c = SClient::connect(s.tcp_acked, &ca.pem, &["-showcerts"]);
        // Waits for the line rather than collecting a fixed 2 s of output, which a
        // slow machine's openssl could outlast.
        c.find_line(
            |l| l.contains("CN") && l.contains("-cert"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|said| panic!("no certificate subject in:\n{said}"))
    };
    assert!(subject().contains("first-cert"));

    let mut old = SClient::connect(s.tcp_acked, &ca.pem, &[]);
    old.send("before reload\n");
    assert!(old.line("ack 1 0", Duration::from_secs(10)).is_some());

    // New files in place, then SIGHUP.
    let next = ca.server(tmp.path(), "next", "second-cert");
    std::fs::copy(&next.cert, &leaf.cert).unwrap();
    std::fs::copy(&next.key, &leaf.key).unwrap();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls_counter(&s, "ringstash_reloads_total{subject=\"tls\",result=\"ok\"}") < 1 {
        assert!(Instant::now() < deadline, "no reload: {}", s.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(subject().contains("second-cert"));
    old.send("after reload\n");
    assert!(
        old.line("ack 2 1", Duration::from_secs(10)).is_some(),
        "the connection made before the reload keeps working"
    );

    // A broken key: the reload fails, says why, and the certificate in use stays.
    std::fs::write(&leaf.key, "not a key").unwrap();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls_counter(
        &s,
        "ringstash_reloads_total{subject=\"tls\",result=\"failed\"}",
    ) < 1
    {
        assert!(Instant::now() < deadline, "no failed reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The counter moves before the line reaches the log: the line is awaited too.
    wait_stderr(&s, "TLS certificates NOT reloaded", 1);
    assert!(subject().contains("second-cert"));
    drop(old);
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["before reload", "after reload"]);
}

/// A server with TLS (client certificates required) on `listener_flag`, a client
/// certificate for rsyslog, and rsyslog's work directory.
struct Forwarded {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    ca: Ca,
    client: Leaf,
    server: Server,
    rs_dir: std::path::PathBuf,
}

impl Forwarded {
    fn start(listener_flag: &str, client_cn: &str) -> Forwarded {
        let (tmp, dir) = temp_data_dir("d");
        let ca = Ca::new(tmp.path(), "ca");
        let leaf = ca.server(tmp.path(), "server", "localhost");
        let client = ca.client(tmp.path(), "client", client_cn);
        let mut flags = cert_flags(&leaf);
        flags.extend([
            listener_flag.into(),
            "true".into(),
            "--tls-client-ca-file".into(),
            ca.pem.display().to_string(),
        ]);
        let server = start(&dir, &flags);
        let rs_dir = tmp.path().join("rsyslog");
        std::fs::create_dir_all(&rs_dir).unwrap();
        Forwarded {
            tmp,
            dir,
            ca,
            client,
            server,
            rs_dir,
        }
    }

    /// Feeds `n` messages to rsyslog and checks that each arrived once, whole, in
    /// order, and what `also` checks; then stops the server cleanly.
    fn deliver(self, r: Rsyslog, n: usize, also: impl FnOnce(&Server)) {
        r.feed(&rsyslog::orders(0, n));
        let s = &self.server;
        let records = wait_records(s, n, Duration::from_secs(30), || s.stderr_text());
        for (i, rec) in records.iter().enumerate() {
            rsyslog::check_order(i, rec, "rfc5424");
        }
        assert!(tls_counter(s, "ringstash_tls_handshakes_total") >= 1);
        also(s);
        drop(r);
        assert!(self.server.stop().success());
        drop((self.tmp, self.dir));
    }
}

/// rsyslog's `omfwd` with the GnuTLS driver (what `gtls` users run), authenticating
/// ringstash by name and itself by a client certificate: syslog over TLS (RFC 5425,
/// octet-counted frames).
#[test]
fn rsyslog_forwards_over_tls_with_a_client_certificate() {
    let Some(bin) = rsyslog::require_gtls() else {
        return;
    };
    let f = Forwarded::start("--syslog-tls", "rsyslog-client");
    let globals = format!(
        r#"DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
        f.ca.pem.display(),
        f.client.cert.display(),
        f.client.key.display()
    );
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{}" protocol="tcp" TCP_Framing="octet-counted"
           StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
           StreamDriverPermittedPeers="localhost" template="RSYSLOG_SyslogProtocol23Format")"#,
        f.server.syslog.port()
    );
    let r = Rsyslog::start_with(&bin, &f.rs_dir, &globals, &[], &action);
    f.deliver(r, 200, |_| {});
}

/// rsyslog's `omrelp` over TLS (librelp's GnuTLS), with a client certificate: each
/// message answered once durable.
#[test]
fn omrelp_over_tls_delivers_every_message() {
    let Some(_) = rsyslog::require_omrelp() else {
        return;
    };
    let Some(bin) = rsyslog::require_gtls() else {
        return;
    };
    let f = Forwarded::start("--relp-tls", "relp-client");
    let action = format!(
        r#"action(type="omrelp" target="127.0.0.1" port="{}" tls="on"
           tls.caCert="{}" tls.myCert="{}" tls.myPrivKey="{}"
           tls.authMode="name" tls.permittedPeer=["localhost"]
           template="RSYSLOG_SyslogProtocol23Format")"#,
        f.server.relp.port(),
        f.ca.pem.display(),
        f.client.cert.display(),
        f.client.key.display()
    );
    let r = Rsyslog::start(&bin, &f.rs_dir, &["omrelp"], &action);
    f.deliver(r, 300, |s| {
        assert_eq!(
            metric(
                s.http,
                "ringstash_records_received_total{protocol=\"relp\"}"
            ),
            300
        );
    });
}

/// A TLS client made with rustls itself, for what `openssl s_client` cannot do on
/// purpose: a close_notify with bytes after it, a close_notify before the FIN.
fn rustls_client(addr: std::net::SocketAddr, ca: &Path) -> (rustls::ClientConnection, TcpStream) {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    (conn, sock)
}

#[test]
fn bytes_after_a_close_notify_do_not_hang_the_reactor() {
    let Fixture {
        tmp: _tmp,
        dir,
        ca,
        leaf: _leaf,
        s,
    } = Fixture::start(
        "localhost",
        &["--tcp-tls", "true", "--reactor-threads", "1"],
    );
    let (mut conn, mut sock) = rustls_client(s.tcp, &ca.pem);
    conn.writer().write_all(b"before close\n").unwrap();
    conn.send_close_notify();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    // Bytes after the alert, in the same write: more than rustls takes in one go.
    wire.extend(std::iter::repeat_n(0x17u8, 9000));
    sock.write_all(&wire).unwrap();
    // The one reactor still serves others at once.
    let t0 = Instant::now();
    let r = http(s.http, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    // A stuck reactor never answers (the request's own timeout); 10 s leaves a slow,
    // busy machine room.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the reactor was stuck {:?}",
        t0.elapsed()
    );
    drop(sock);
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["before close"]);
}

#[test]
fn a_last_line_ended_by_close_notify_before_the_fin_is_stored() {
    let Fixture {
        tmp: _tmp,
        dir,
        ca,
        leaf: _leaf,
        s,
    } = Fixture::start("localhost", &["--tcp-tls", "true"]);
    let (mut conn, mut sock) = rustls_client(s.tcp, &ca.pem);
    send_then_close_notify(&mut conn, &mut sock, b"a\nb");
    // The TCP connection stays open (as Go's CloseWrite or a two-way SSL_shutdown
    // leave it): the close_notify alone ends the stream, and `b` is a record.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(s.http, "ringstash_records_committed_total") < 2 {
        assert!(Instant::now() < deadline, "the last line was not stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(sock);
    assert!(s.stop().success());
    assert_eq!(stored_payloads(&dir), ["a", "b"]);
}

#[test]
fn an_acked_tls_connection_ends_with_a_close_notify_after_its_last_ack() {
    let Fixture {
        tmp: _tmp,
        dir: _dir,
        ca,
        leaf: _leaf,
        s,
    } = Fixture::start("localhost", &["--tcp-acked-tls", "true"]);
    let (mut conn, mut sock) = rustls_client(s.tcp_acked, &ca.pem);
    send_then_close_notify(&mut conn, &mut sock, b"x\ny\n");
    // Read to the end: the acks, then a clean end (close_notify), not a truncation.
    let mut said = Vec::new();
    let end = loop {
        match conn.reader().read_to_end(&mut said) {
            Ok(_) => break Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e),
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => {
                conn.process_new_packets().unwrap();
                break conn.reader().read_to_end(&mut said).map(drop);
            }
            Ok(_) => {
                conn.process_new_packets().unwrap();
            }
            Err(e) => break Err(e),
        }
    };
    let said = String::from_utf8(said).unwrap();
    assert_eq!(last_ack(&said), Some((2, 1)), "{said}");
    assert!(
        end.is_ok(),
        "the server must end with close_notify: {end:?} after {said:?}"
    );
    drop(sock);
    assert!(s.stop().success());
}
