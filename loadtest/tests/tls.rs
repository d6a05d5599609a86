//! `loadtest run --tls-ca` against the real `ringstash serve` with TLS on its acked
//! raw TCP and HTTP listeners, certificates made here with rcgen: every record the
//! run reports lands (the server's `/metrics`, read over HTTPS, and `ringstash cat`),
//! mutual TLS works with a client certificate and fails clearly without one, and the
//! refusals (untrusted CA, wrong name, a mode without TLS, a plain server) say why.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use support::{Server, loadtest_json, loadtest_run, serial, u};

/// A CA written to `<dir>/ca.pem`, a server certificate for `localhost` and
/// 127.0.0.1 (`server.pem`, `server.key`) and a client certificate (`client.pem`,
/// `client.key`), both signed by it.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "loadtest test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();

        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let mut client = CertificateParams::new(vec!["loadtest-client".to_owned()]).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        for (stem, mut params) in [("server", server), ("client", client)] {
            params.distinguished_name.push(DnType::CommonName, stem);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// `serve` flags: TLS on the acked raw TCP and the HTTP listeners.
    fn serve_flags(&self) -> Vec<String> {
        [
            "--tcp-acked-tls",
            "true",
            "--http-tls",
            "true",
            "--tls-cert-file",
            &self.s("server.pem"),
            "--tls-key-file",
            &self.s("server.key"),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn start(flags: &[String]) -> Server {
    Server::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A counter from the server's `/metrics`, over HTTPS (its HTTP listener speaks TLS
/// only), trusting `ca`.
fn https_metric(addr: &str, ca: &Path, name: &str) -> u64 {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = Vec::new();
    // The page ends with the server's close (with or without close_notify).
    let _ = tls.read_to_end(&mut page);
    let page = String::from_utf8_lossy(&page);
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics: {page}"))
}

/// Every record a TLS run reports as done is in the log, in every mode that speaks
/// TLS: acked TCP (also with batches far over rustls's send buffer), fire-and-forget
/// TCP (whose close_notify half-close still gets the server's final ack), HTTP.
#[test]
fn tls_runs_land_every_record() {
    let _g = serial();
    let certs = Certs::new();
    let srv = start(&certs.serve_flags());
    let ca = certs.s("ca.pem");
    let runs: &[(&str, &[&str])] = &[
        ("tcp-acked", &["-n", "40000", "-c", "4", "--batch", "1000"]),
        // 4096 records of up to 400 bytes: up to 1.6 MB per batch, more than rustls
        // holds at once (1 MiB), so writing waits on the socket mid-batch.
        (
            "tcp-acked",
            &[
                "-n",
                "20000",
                "-c",
                "2",
                "--batch",
                "4096",
                "--record-size",
                "100-400",
            ],
        ),
        ("tcp", &["-n", "20000", "-c", "2", "--batch", "500"]),
        ("http-ingest", &["-n", "20000", "-c", "2", "--batch", "500"]),
        ("http-logs", &["-n", "5000", "-c", "1", "--batch", "250"]),
    ];
    let mut expected = 0;
    for (mode, extra) in runs {
        let addr = if mode.starts_with("http") {
            &srv.http
        } else {
            &srv.tcp
        };
        let mut args = vec!["--mode", mode, "--addr", addr.as_str(), "--tls-ca", &ca];
        args.extend_from_slice(extra);
        let r = loadtest_json(&args);
        let n: u64 = extra[1].parse().unwrap();
        assert_eq!(u(&r, "records"), n, "{mode} {extra:?}: {r}");
        assert_eq!(u(&r, "completed_records_total"), n, "{mode}: {r}");
        assert_eq!(u(&r, "failed_records_total"), 0, "{mode}: {r}");
        assert_eq!(u(&r, "errors_total"), 0, "{mode}: {r}");
        if !mode.starts_with("http") {
            assert_eq!(u(&r, "server_acked_total"), n, "{mode}: {r}");
        }
        let tls = &r["run"]["tls"];
        assert_eq!(tls["server_name"], "localhost", "{r}");
        assert_eq!(tls["client_cert"], false, "{r}");
        assert!(
            ["TLSv1_3", "TLSv1_2"].contains(&tls["protocol"].as_str().unwrap_or("")),
            "{r}"
        );
        assert!(
            tls["cipher_suite"]
                .as_str()
                .is_some_and(|s| s.starts_with("TLS")),
            "{r}"
        );
        // Set-ups are reported, not hidden: before the clock, in `run.tls`.
        assert!(
            u(&r, "run.tls.setup_us_median") <= u(&r, "run.tls.setup_us_max"),
            "{r}"
        );
        expected += n;
        let committed = https_metric(
            &srv.http,
            &certs.path("ca.pem"),
            "ringstash_records_committed_total",
        );
        assert_eq!(committed, expected, "after {mode} {extra:?}");
    }
    assert_eq!(srv.stored_records(), expected);
}

/// The server's name and IP address both verify; a run over TLS reports the same
/// counts as over plain TCP.
#[test]
fn server_name_may_be_an_ip_address() {
    let _g = serial();
    let certs = Certs::new();
    let srv = start(&certs.serve_flags());
    let r = loadtest_json(&[
        "--mode",
        "tcp-acked",
        "--addr",
        &srv.tcp,
        "--tls-ca",
        &certs.s("ca.pem"),
        "--tls-server-name",
        "127.0.0.1",
        "-n",
        "5000",
        "-c",
        "1",
        "--batch",
        "100",
    ]);
    assert_eq!(u(&r, "records"), 5000, "{r}");
    assert_eq!(r["run"]["tls"]["server_name"], "127.0.0.1", "{r}");
    assert_eq!(srv.stored_records(), 5000);
}

/// With `tls_client_ca_file` the acked listener requires a client certificate: a run
/// with `--tls-cert`/`--tls-key` lands everything, one without lands nothing and
/// says why.
#[test]
fn mutual_tls_with_and_without_a_client_certificate() {
    let _g = serial();
    let certs = Certs::new();
    let mut flags = certs.serve_flags();
    flags.extend(["--tls-client-ca-file".to_owned(), certs.s("ca.pem")]);
    let srv = start(&flags);
    let ca = certs.s("ca.pem");
    let (cert, key) = (certs.s("client.pem"), certs.s("client.key"));
    let r = loadtest_json(&[
        "--mode",
        "tcp-acked",
        "--addr",
        &srv.tcp,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "-n",
        "20000",
        "-c",
        "2",
        "--batch",
        "500",
    ]);
    assert_eq!(u(&r, "records"), 20000, "{r}");
    assert_eq!(u(&r, "server_acked_total"), 20000, "{r}");
    assert_eq!(r["run"]["tls"]["client_cert"], true, "{r}");

    // Without a certificate the TLS 1.3 handshake completes on the client's side and
    // the server's refusal (an alert) arrives on the first read; TLS 1.2 would fail
    // the handshake itself. Either way nothing lands and the cause is on stderr.
    let (code, r, stderr) = loadtest_run(&[
        "--mode",
        "tcp-acked",
        "--addr",
        &srv.tcp,
        "--tls-ca",
        &ca,
        "-d",
        "1s",
        "--drain-timeout",
        "1s",
        "-c",
        "1",
        "--batch",
        "100",
    ]);
    let said = format!("{stderr} {r}");
    assert!(
        said.contains("CertificateRequired") || said.contains("tls_"),
        "exit {code:?}: {said}"
    );
    if code == Some(0) {
        assert_eq!(u(&r, "records"), 0, "{r}");
        assert!(u(&r, "errors_total") > 0, "{r}");
    }
    assert_eq!(srv.stored_records(), 20000);
}

/// What cannot work is refused before any load, with the reason.
#[test]
fn tls_refusals_say_why() {
    let _g = serial();
    let certs = Certs::new();
    let srv = start(&certs.serve_flags());
    let other = Certs::new();
    let ca = certs.s("ca.pem");
    let fails = |args: &[&str], want: &str| {
        let (code, _, stderr) = loadtest_run(args);
        assert_ne!(code, Some(0), "{args:?} should fail");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    };
    let base = ["--mode", "tcp-acked", "--addr", &srv.tcp, "-n", "100"];
    // A server certificate from a CA the client does not trust (another key under
    // the same name, so rustls says BadSignature rather than UnknownIssuer).
    fails(
        &[&base[..], &["--tls-ca", &other.s("ca.pem")]].concat(),
        "invalid peer certificate",
    );
    // A name the certificate does not carry.
    fails(
        &[
            &base[..],
            &["--tls-ca", &ca, "--tls-server-name", "elsewhere.test"],
        ]
        .concat(),
        "not valid for name \"elsewhere.test\"",
    );
    // A CA file that is not PEM.
    fails(
        &[&base[..], &["--tls-ca", &certs.s("nonexistent.pem")]].concat(),
        "--tls-ca",
    );
    // ws-e2e's subscribers are plain WebSocket clients.
    fails(
        &[
            "--mode",
            "ws-e2e",
            "--addr",
            &srv.tcp,
            "--ws-addr",
            &srv.ws,
            "--tls-ca",
            &ca,
            "-n",
            "100",
        ],
        "ws-e2e does not speak TLS",
    );
    // A plain server: its answer is not TLS. (It takes the ClientHello's bytes for
    // lines and stores them: a plain listener cannot tell.)
    let plain = Server::start();
    fails(
        &[
            "--mode",
            "tcp-acked",
            "--addr",
            &plain.tcp,
            "--tls-ca",
            &ca,
            "-n",
            "100",
        ],
        "TLS connection 0",
    );
    assert_eq!(srv.stored_records(), 0);
}
