//! The TLS client of `loadtest run` (`--tls-ca`, `--tls-server-name`, `--tls-cert`,
//! `--tls-key`): the rustls configuration built once from the PEM files, the
//! handshake made on a blocking socket right after `connect` (before the socket goes
//! to a worker, so it happens where the TCP connect already does and is timed the same
//! way: not as request latency), and the non-blocking reads and writes the engine does
//! through rustls afterwards.
//!
//! rustls is sans-I/O: ciphertext goes in with `read_tls` and is decrypted by
//! `process_new_packets`, plaintext comes out of `reader()`; plaintext goes in through
//! `writer()` (encrypted there, into rustls's outgoing buffer) and ciphertext out with
//! `write_tls`. The engine keeps its own buffers and parsers: [`read_plain`] and
//! [`write_sealed`] stand where its plain `read` and `write` calls stand.

use std::{
    io::{self, Read, Write},
    net::TcpStream as StdTcpStream,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

/// Ciphertext rustls may hold before `writer()` takes no more plaintext: 64 TLS
/// records of 16 KiB, as many as one `write_tls` (a `writev` of up to 64 records)
/// puts on the socket. rustls's default (64 KiB) would split a default batch (1024
/// records of 128 B) into two system calls where the plain path makes one.
pub const SEND_BUFFER_BYTES: usize = 64 * 16 * 1024;

/// What every TLS connection of a run is made with.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// Trust anchors, versions (TLS 1.2 and 1.3), client certificate if any.
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and checked against the server's certificate.
    pub server_name: ServerName<'static>,
    /// A client certificate is offered (mutual TLS).
    pub client_cert: bool,
}

/// What the first connection negotiated, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSession {
    /// e.g. `TLSv1_3`.
    pub protocol: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
}

/// The TLS side of a run, as the engine saw it before its clock started.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsRun {
    /// What the first connection negotiated.
    pub session: TlsSession,
    /// Median set-up (TCP connect and TLS handshake) of the first connections, µs.
    pub setup_us_median: u64,
    /// Longest of them, µs: usually the very first, which also pays the process's
    /// one-time crypto initialisation (tens of ms with aws-lc-rs).
    pub setup_us_max: u64,
}

impl TlsClient {
    /// Builds the client from PEM files: `ca` (one or more CA certificates to trust),
    /// the name to expect, and optionally a client certificate chain and its key.
    ///
    /// The aws-lc-rs provider is named explicitly rather than taken from the process
    /// default, so another crate enabling a second provider in the workspace cannot
    /// make the choice ambiguous (rustls panics then).
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the name is not a DNS
    /// name or IP address.
    pub fn from_files(
        ca: &Path,
        server_name: &str,
        client: Option<(&Path, &Path)>,
    ) -> anyhow::Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("--tls-ca {}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--tls-ca {}", ca.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "--tls-ca {}: no certificate in it",
            ca.display()
        );
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("--tls-ca {}: unusable certificate", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("--tls-cert {}", cert.display()))?;
                anyhow::ensure!(
                    !chain.is_empty(),
                    "--tls-cert {}: no certificate in it",
                    cert.display()
                );
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("--tls-key {}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .context("--tls-cert/--tls-key")?
            }
        };
        let server_name = ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("--tls-server-name {server_name:?}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            client_cert: client.is_some(),
        })
    }

    /// Makes the TLS handshake on `sock` (blocking), each read and write within
    /// `timeout` and the whole within twice that, then leaves the socket's timeouts
    /// unset again.
    ///
    /// # Errors
    /// The handshake failed (the error says why: an unknown issuer, a name mismatch,
    /// an alert from the server) or took too long (`TimedOut`).
    pub fn handshake(
        &self,
        sock: &mut StdTcpStream,
        timeout: Duration,
    ) -> io::Result<ClientConnection> {
        let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_BUFFER_BYTES));
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        let deadline = Instant::now() + timeout * 2;
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
        while conn.is_handshaking() {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            match conn.complete_io(sock) {
                Ok(_) => {}
                // A socket timeout shows as WouldBlock on Linux.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
                Err(e) => return Err(e),
            }
        }
        while conn.wants_write() {
            conn.write_tls(sock)?;
        }
        sock.set_read_timeout(None)?;
        sock.set_write_timeout(None)?;
        Ok(conn)
    }
}

impl TlsSession {
    /// What `conn` negotiated.
    pub fn of(conn: &ClientConnection) -> TlsSession {
        TlsSession {
            protocol: conn
                .protocol_version()
                .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}")),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite())),
        }
    }
}

/// True if `e` is rustls refusing what the peer sent (a bad record, an alert, a
/// certificate problem), rather than a socket error.
pub fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Reads plaintext into `buf` as `read(2)` would on a plain socket: `Ok(n)` bytes,
/// `Ok(0)` at the end of the stream (the server's close_notify, or its FIN without
/// one), `WouldBlock` when the socket has nothing more. Feeds rustls from the socket
/// as needed.
///
/// # Errors
/// The socket's, and rustls's refusals as `InvalidData` (see [`is_tls_error`]).
pub fn read_plain<S: Read>(
    conn: &mut ClientConnection,
    sock: &mut S,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match conn.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The TCP stream ended without close_notify: for a load generator, as
            // good an end as any (receivers that just close their socket do this).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        // Nothing decrypted is waiting: more ciphertext from the socket. At EOF
        // (`Ok(0)`) rustls notes it, and the next `reader().read` says which end it was.
        conn.read_tls(sock)?;
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

/// Where a connection's plaintext stands in [`write_sealed`].
#[derive(Debug)]
pub struct Sealed<'a> {
    /// Plaintext queued for the connection.
    pub buf: &'a [u8],
    /// Bytes of `buf` rustls has taken (encrypted); advanced here.
    pub pos: &'a mut usize,
    /// The socket accepted everything so far; cleared here on `WouldBlock`.
    pub writable: &'a mut bool,
    /// Plaintext bytes taken by rustls on this socket; advanced here.
    pub taken: &'a mut u64,
    /// Plaintext bytes whose ciphertext is all in the kernel (what the plain path
    /// counts as written); advanced here when rustls holds no ciphertext.
    pub written: &'a mut u64,
}

/// Encrypts as much of `s.buf` as rustls takes and writes ciphertext while the socket
/// does, as the plain path's `write` loop does. A byte counts as written once rustls
/// has none of its ciphertext left, so `tcp` mode's "written" still means "in the
/// kernel" (a little late, never early).
///
/// # Errors
/// The socket's (a socket that takes 0 bytes is `WriteZero`).
pub fn write_sealed<S: Write>(
    conn: &mut ClientConnection,
    sock: &mut S,
    s: Sealed<'_>,
) -> io::Result<()> {
    loop {
        let mut took = 0;
        if *s.pos < s.buf.len() {
            // Ok(0) when rustls's outgoing buffer is full: write some out first.
            took = conn.writer().write(&s.buf[*s.pos..])?;
            *s.pos += took;
            *s.taken += took as u64;
        }
        if !conn.wants_write() {
            *s.written = *s.taken;
            if *s.pos == s.buf.len() {
                return Ok(());
            }
            // rustls took nothing with nothing to send (the session is closing):
            // going round again would spin.
            if took == 0 {
                return Err(io::Error::other("TLS session takes no more data"));
            }
            continue;
        }
        if !*s.writable {
            return Ok(());
        }
        match conn.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *s.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
