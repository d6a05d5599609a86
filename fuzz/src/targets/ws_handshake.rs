//! `ws_handshake`: a connection's bytes through tungstenite's server handshake with the
//! fan-out's own upgrade callback (`fanout::fuzzing::Upgrade`, the one its loop hands
//! tungstenite), then the client's frames read as the loop reads them
//! (`fanout::fuzzing::read_incoming`) with the limits it gives tungstenite
//! (`fanout::fuzzing::ws_config`).
//!
//! The callback needs what `serve` gives the fan-out: live logs (a subscription's
//! cursor is a log's start or committed end, or where its time index puts `since`),
//! the streams, the token set, the counters. [`Fixture`] builds them once per process:
//! the logs of a data directory in the temporary directory, opened through
//! `streams::Streams::open` as `serve` opens them (the default stream, with three
//! records, and a stream `other` of two empty partitions), a read token and a
//! write-only token, and the bounds at their smallest where inputs can reach them.
//! The AFL binary builds it before AFL's fork server starts ([`ws_handshake_setup`]):
//! each child it forks inherits the open logs (not their writer threads, which fork
//! does not copy and the callback does not need: nothing is appended, and it reads
//! only the logs' offsets and time indexes), so no input pays for the setup or shows
//! its coverage, which would make every new child's first input look like new
//! coverage. The directory is removed when the process that made it exits normally
//! (the replay binary, the corpus test); AFL kills its fork servers (the target's and
//! CMPLOG's), and each leaves its few small files behind.
//!
//! Not reached here, because it is not the handshake: the loop's socket handling
//! (mio, the handshake deadline, refusals written after a failed handshake) and TLS
//! (`ws_tls`), which the integration tests drive over real sockets.

use std::{
    io::{self, Read, Write},
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use base64::{
    Engine, alphabet,
    engine::{GeneralPurpose, GeneralPurposeConfig},
};
use ringstash::{
    auth,
    config::Settings,
    fanout::{FanoutCtx, aggregates::Aggregates, fuzzing},
    query::filter,
    streams::{StreamViews, Streams},
    wal::{BatchBuilder, FsyncPolicy, IoDriver, WriteMode},
};
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};

/// `http_header_bytes_max` and `ws_message_bytes_max` as small as the settings allow,
/// so that fuzz inputs reach them; `filter_bytes_max` at its default.
const HEADER_BYTES_MAX: usize = 1024;
const MESSAGE_BYTES_MAX: usize = 125;
const FILTER_BYTES_MAX: usize = 1024;
/// The token with the read scope, and one with the write scope only (also in the
/// seeds and the dictionary).
const READ_TOKEN: &str = "rs_fuzzread";
const WRITE_TOKEN: &str = "rs_fuzzwrite";
/// Receive time of the default stream's first record (the others follow 1 s apart).
const FIRST_TS_NS: u64 = 1_765_000_000_000_000_000;

/// What the callback works on, built once per process.
struct Fixture {
    /// The data directory (removed at exit by the process that made it).
    dir: PathBuf,
    /// That process.
    pid: u32,
    /// The open logs; held so that their views stay live.
    _streams: Streams,
    ctx: Arc<FanoutCtx>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Removes the fixture's data directory when the process that made it exits (statics
/// are never dropped); not when a forked child exits, while others still use it.
extern "C" fn remove_dir() {
    if let Some(f) = FIXTURE.get()
        && f.pid == std::process::id()
    {
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}

/// Builds the fixture now rather than at the first input (see the module's doc).
pub fn ws_handshake_setup() {
    Fixture::get();
}

impl Fixture {
    fn get() -> &'static Fixture {
        FIXTURE.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!(
                "ringstash-fuzz-ws_handshake-{}",
                std::process::id()
            ));
            // A directory left by an earlier process of the same id (killed by AFL).
            let _ = std::fs::remove_dir_all(&dir);
            let f = Fixture::build(dir);
            // SAFETY: registers a function that takes no arguments and only removes
            // files; called once, at exit.
            unsafe { libc::atexit(remove_dir) };
            f
        })
    }

    fn build(dir: PathBuf) -> Fixture {
        let line = |token: &str, scopes: &str, name: &str| {
            let hash: String = auth::hash_token(token)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256:{hash} {scopes} {name}")
        };
        let settings = Settings {
            data_dir: dir.clone(),
            streams: "other:partitions=2".parse().expect("stream spec"),
            auth_tokens: format!(
                "{};{}",
                line(READ_TOKEN, "read", "fuzz-read"),
                line(WRITE_TOKEN, "write", "fuzz-write")
            ),
            http_header_bytes_max: HEADER_BYTES_MAX,
            ws_message_bytes_max: MESSAGE_BYTES_MAX,
            filter_bytes_max: FILTER_BYTES_MAX,
            // Small, quiet logs: nothing is written after the fixture's records.
            segment_bytes_max: 64 << 10,
            group_bytes_max: 16 << 10,
            record_bytes_max: 1024,
            segment_prewrite: ringstash::wal::Prewrite::Off,
            fsync: FsyncPolicy::Never,
            write_mode: WriteMode::Buffered,
            io_driver: IoDriver::Epoll,
            fanout_window_bytes_max: 64 << 10,
            partition_recent_bytes_max: 64 << 10,
            ..Settings::default()
        };
        settings.validate().expect("fixture settings");
        let streams = Streams::open(&settings, None).expect("open the fixture's logs");
        let log = streams.default_log();
        let mut batch = BatchBuilder::new(4096, 1024);
        for i in 0..3u64 {
            batch
                .push(
                    FIRST_TS_NS + i * 1_000_000_000,
                    format!("record {i}").as_bytes(),
                )
                .expect("small record");
        }
        let (frames, n) = batch.take();
        log.appender()
            .append(frames, n)
            .expect("append")
            .wait()
            .expect("commit");
        let fanout = settings.fanout();
        let ctx = Arc::new(FanoutCtx {
            log: log.view(),
            streams: StreamViews::of(&streams),
            stats: Arc::default(),
            gauges: Arc::default(),
            reads: Arc::default(),
            tls: None,
            auth: auth::Auth::from_settings(&settings, Arc::default())
                .expect("fixture tokens")
                .map(Arc::new),
            aggregates: Arc::new(Aggregates::new(&fanout, Arc::default())),
            settings: fanout,
        });
        Fixture {
            dir,
            pid: std::process::id(),
            _streams: streams,
            ctx,
        }
    }
}

/// A connection in memory: reads the request head, then what follows it (the
/// client's frames), then `WouldBlock` (as the fan-out's non-blocking sockets do);
/// writes are kept and dropped. The frames come in reads of their own, as from a
/// client that waits for the 101 before it sends them: tungstenite refuses bytes that
/// arrive with the head in one read (`JunkAfterRequest`), so frames sent with the
/// head would never be read.
struct Mem<'a> {
    input: &'a [u8],
    /// The frames, once the head has been read.
    after_head: &'a [u8],
    output: Vec<u8>,
}

impl<'a> Mem<'a> {
    fn new(data: &'a [u8]) -> Self {
        let head_end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(data.len(), |i| i + 4);
        Mem {
            input: &data[..head_end],
            after_head: &data[head_end..],
            output: Vec::new(),
        }
    }
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            self.input = std::mem::take(&mut self.after_head);
        }
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// No parameters: the whole input is the connection's bytes, the upgrade request and
/// then the client's frames.
///
/// Asserts, of an upgrade the callback accepts: its key is the base64 of 16 bytes; it
/// presented the read token; its query, without `access_token`, parses as a stream
/// query (never with a `limit`); the subscription it asked for follows existing
/// partitions, each once, from no lower than its oldest record, one partition for
/// `format=binary` and each tagged when several. Of one it refuses: a 4xx status
/// (400, 401, 403, 404 or 431), a JSON body with `error` and `detail` whose length is
/// the `Content-Length`, naming no server path, and a `Bearer` challenge exactly on
/// the token refusals (every 401, the 403 `scope_missing`; not the 403 for Origin).
/// After an upgrade, what the client sent is read as the loop reads it.
#[allow(clippy::result_large_err)] // tungstenite's callback type
pub fn ws_handshake(data: &[u8]) {
    let fixture = Fixture::get();
    let (upgrade, asked) = fuzzing::upgrade(&fixture.ctx);
    let callback = |req: &Request, resp: Response| {
        let answer = upgrade.on_request(req, resp);
        match &answer {
            Ok(_) => accepted(fixture, req, &asked),
            Err(refusal) => refused(fixture, refusal),
        }
        answer
    };
    let stream = Mem::new(data);
    let config = fuzzing::ws_config(&fixture.ctx.settings);
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, callback, Some(config)) else {
        return;
    };
    if let fuzzing::Incoming::Violation(v) = fuzzing::read_incoming(&mut ws) {
        let (code, _) = v.close();
        assert!(
            [1002, 1007, 1009].contains(&code),
            "close code {code} for {v:?}"
        );
    }
}

/// The checks of an upgrade the callback accepted.
fn accepted(fixture: &Fixture, req: &Request, asked: &fuzzing::AskedFor) {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .expect("an accepted upgrade has a key");
    // Lenient about the last character's unused bits, as the check is: the server
    // only hashes the key.
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let raw = lenient.decode(key).expect("an accepted key is base64");
    assert_eq!(raw.len(), 16, "an accepted key is not 16 bytes");

    let (query_token, rest) = auth::take_access_token(req.uri().query().unwrap_or(""))
        .expect("an accepted query has at most one access_token");
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    // An empty `access_token=` is no token (the callback ignores it), so it may come
    // with the header.
    let presented = match (header, query_token.as_deref().filter(|t| !t.is_empty())) {
        (Some(h), None) => auth::Presented::from_header(Some(h)),
        (None, Some(t)) => auth::Presented::Token(t),
        other => panic!("accepted with tokens {other:?}"),
    };
    assert_eq!(
        presented,
        auth::Presented::Token(READ_TOKEN),
        "accepted without the read token"
    );
    assert!(rest.split('&').all(|p| !p.starts_with("access_token=")));
    let q = filter::parse(&rest, false, 0, FILTER_BYTES_MAX).expect("an accepted query parses");
    assert!(q.limit.is_none(), "a stream query took a limit");

    let lanes = asked.lanes().expect("an accepted upgrade asked for lanes");
    let all = fixture.ctx.streams.all();
    assert!(!lanes.is_empty(), "a subscription follows no partition");
    for (i, lane) in lanes.iter().enumerate() {
        let part = all
            .get(lane.part)
            .expect("a lane names an existing partition");
        assert!(
            lanes[..i].iter().all(|l| l.part != lane.part),
            "a partition followed twice"
        );
        assert!(
            lane.cursor >= part.log.start_offset(),
            "a cursor below the partition's oldest record"
        );
    }
    if lanes.len() > 1 {
        assert!(
            lanes.iter().all(|l| l.tag.is_some()),
            "an untagged merged lane"
        );
    }
    if asked.binary() == Some(true) {
        assert_eq!(lanes.len(), 1, "a binary subscription merged partitions");
    }
}

/// The checks of a refusal.
fn refused(fixture: &Fixture, refusal: &ErrorResponse) {
    let status = refusal.status().as_u16();
    assert!(
        [400, 401, 403, 404, 431].contains(&status),
        "refused with {status}"
    );
    let body = refusal.body().as_deref().expect("a refusal has a body");
    let v: serde_json::Value = serde_json::from_str(body).expect("a refusal's body is JSON");
    assert!(
        v["error"].is_string() && v["detail"].is_string(),
        "refusal body {body}"
    );
    let length = refusal
        .headers()
        .get("content-length")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.parse::<usize>().ok());
    assert_eq!(length, Some(body.len()), "Content-Length of {body}");
    assert!(
        !body.contains(fixture.dir.to_str().expect("UTF-8 temp dir")),
        "a server path in {body}"
    );
    let challenge = refusal
        .headers()
        .get("www-authenticate")
        .and_then(|c| c.to_str().ok());
    // A token refusal (401, or 403 for a token without the read scope) says how to
    // authenticate; a 403 for the Origin does not.
    let token_refusal = matches!(
        v["error"].as_str(),
        Some("token_missing" | "token_invalid" | "scope_missing")
    );
    assert_eq!(
        token_refusal,
        status == 401 || v["error"] == "scope_missing",
        "{status} {body}"
    );
    assert_eq!(
        challenge.is_some_and(|c| c.starts_with("Bearer realm=\"ringstash\"")),
        token_refusal,
        "{status} {body}: challenge {challenge:?}"
    );
}
