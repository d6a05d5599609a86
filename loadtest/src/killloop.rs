//! `loadtest kill-loop`: the crash soak (issue 13). Each iteration starts
//! `ringstash serve` on a data directory that persists across iterations, drives acked
//! producers at it (raw TCP on the acked listener and HTTP `POST /ingest`, every record
//! carrying a unique id), notes the offsets every ack and response gave, SIGKILLs the
//! server at a random moment, and checks the data directory exactly: every acked record
//! at an offset its ack allows, with its exact payload, offsets dense and increasing, no
//! id twice, every stored record (acked or not) intact, `ringstash check` exit 0 and
//! `ringstash cat` exit 0.
//!
//! The data directory is replaced by a fresh one every `fresh_every` iterations
//! (no retention: the check covers the whole log, from offset 0), so it stays bounded.
//!
//! What each record's offset may be: an HTTP response gives `first_offset` and
//! `last_offset` of the request's `count` records; a raw TCP ack gives the count of the
//! connection's durable records and the offset of the last of them. A record of
//! one connection may only be interleaved with other connections' records, and offsets
//! of one connection increase in the order sent, so the `k`-th of `n` records covered by
//! one answer, after an answer that ended at `prev`, lies in
//! `prev + 1 + k ..= last - (n - 1 - k)` (exactly `first + k` when the records are
//! contiguous, always exactly `last` for the newest). The check also requires each
//! connection's stored records in the order sent.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Read, Write},
    net::{Shutdown, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::workload::Rng;

/// What one kill loop does.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `ringstash` binary.
    pub ringstash: PathBuf,
    /// Where the data directories and ledgers go (created if missing).
    pub work_dir: PathBuf,
    /// Kills to make.
    pub iterations: u64,
    /// Seeds every random choice (batch sizes, payloads' filler, kill delays).
    pub seed: u64,
    /// Shortest time from "listening" to SIGKILL, in ms.
    pub kill_min_ms: u64,
    /// Longest time from "listening" to SIGKILL, in ms.
    pub kill_max_ms: u64,
    /// Acked raw TCP producers.
    pub tcp_producers: u32,
    /// HTTP `POST /ingest` producers.
    pub http_producers: u32,
    /// Largest batch (lines per write on TCP, per request on HTTP).
    pub batch_max: u64,
    /// Records per second per producer at most (0: as fast as acks come).
    pub rate: u64,
    /// Start a fresh data directory every this many iterations.
    pub fresh_every: u64,
    /// `serve --segment-bytes-max`.
    pub segment_bytes_max: u64,
    /// More `serve` flags.
    pub serve_args: Vec<String>,
    /// Where the data directories go, if not in `work_dir` (the power-cut harness puts
    /// them on its FUSE mount and keeps the ledgers off it).
    pub data_root: Option<PathBuf>,
}

/// The figures of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// SIGKILLs made.
    pub kills: u64,
    /// Distinct acked records, each checked after every kill of its data directory.
    pub acked_records: u64,
    /// Acked-record checks made (an acked record counts once per check that covered it).
    pub acked_checks: u64,
    /// Records found stored without an ack (sent, durable, the ack lost to the kill),
    /// summed over the last check of each data directory.
    pub unacked_stored: u64,
    /// Segment rotations in the checked logs (segments - 1 per data directory).
    pub rotations: u64,
    /// Data directories used.
    pub data_dirs: u64,
    /// Wall time.
    pub seconds: f64,
}

/// One acked record: its id and the offsets its ack allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// `<iteration>-<producer>-<seq>`.
    pub id: String,
    /// Lowest offset it may have.
    pub lo: u64,
    /// Highest offset it may have (`lo == hi`: exact).
    pub hi: u64,
}

/// A record as `ringstash cat --meta` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its offset.
    pub offset: u64,
    /// Its payload.
    pub payload: String,
}

/// What a check found (the ledger's records all stored as acked).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    /// Acked records checked.
    pub acked: u64,
    /// Stored records in all.
    pub stored: u64,
    /// Segments in the data directory.
    pub segments: u64,
}

/// The payload of the record with id `id`: the id, a space, and 8..=200 bytes of
/// filler determined by the id (so a stored record can be checked whether or not it
/// was acked).
pub fn payload(id: &str) -> String {
    // FNV-1a of the id seeds the filler.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = Rng::new(h);
    let n = rng.range(8, 200) as usize;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=:/.-_";
    let mut s = String::with_capacity(id.len() + 1 + n);
    s.push_str(id);
    s.push(' ');
    for _ in 0..n {
        s.push(ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char);
    }
    s
}

/// `(stream, seq)` of an id `<iteration>-<producer>-<seq>`: the stream is
/// `<iteration>-<producer>`, one connection.
fn stream_of(id: &str) -> Option<(&str, u64)> {
    let (stream, seq) = id.rsplit_once('-')?;
    Some((stream, seq.parse().ok()?))
}

/// Checks `stored` (the whole log, in offset order, from offset 0 or the first
/// stored) against `ledger` (every acked record). Returns the number of acked records
/// checked, or the mismatches (at most 20 listed, with the count).
///
/// # Errors
/// Any acked record missing, at an offset its ack does not allow, or with another
/// payload; any stored record corrupted (its payload not the one its id determines),
/// stored twice, or out of its connection's order; offsets not dense and increasing.
pub fn verify(ledger: &[Acked], stored: &[Stored]) -> Result<u64, String> {
    let mut bad: Vec<String> = Vec::new();
    let mut total_bad = 0u64;
    let mut note = |s: String| {
        total_bad += 1;
        if bad.len() < 20 {
            bad.push(s);
        }
    };
    let mut at: HashMap<&str, u64> = HashMap::with_capacity(stored.len());
    let mut last_of_stream: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut prev: Option<u64> = None;
    for r in stored {
        if let Some(p) = prev
            && r.offset != p + 1
        {
            note(format!(
                "offsets not dense and increasing: {} after {p}",
                r.offset
            ));
        }
        prev = Some(r.offset);
        let Some((id, _)) = r.payload.split_once(' ') else {
            note(format!(
                "offset {}: payload without an id: {:?}",
                r.offset, r.payload
            ));
            continue;
        };
        if r.payload != payload(id) {
            note(format!(
                "offset {}: record {id} corrupted: {:?}",
                r.offset, r.payload
            ));
            continue;
        }
        if let Some(first) = at.insert(id, r.offset) {
            note(format!(
                "record {id} stored twice: offsets {first} and {}",
                r.offset
            ));
        }
        match stream_of(id) {
            Some((stream, seq)) => {
                if let Some(&(pseq, poff)) = last_of_stream.get(stream)
                    && seq <= pseq
                {
                    note(format!(
                        "record {id} at offset {} after {stream}-{pseq} at offset {poff}: out of the order sent",
                        r.offset
                    ));
                }
                last_of_stream.insert(stream, (seq, r.offset));
            }
            None => note(format!("offset {}: malformed id {id:?}", r.offset)),
        }
    }
    let mut checked = 0u64;
    for a in ledger {
        checked += 1;
        match at.get(a.id.as_str()) {
            None => note(format!(
                "acked record {} (offset {}..={}) missing",
                a.id, a.lo, a.hi
            )),
            Some(&off) if off < a.lo || off > a.hi => note(format!(
                "acked record {} at offset {off}, its ack allows {}..={}",
                a.id, a.lo, a.hi
            )),
            Some(_) => {}
        }
    }
    if total_bad == 0 {
        Ok(checked)
    } else {
        let mut s = format!("{total_bad} mismatch(es)");
        for b in &bad {
            let _ = write!(s, "\n  {b}");
        }
        if total_bad > bad.len() as u64 {
            let _ = write!(s, "\n  ... and {} more", total_bad - bad.len() as u64);
        }
        Err(s)
    }
}

/// Reads a ledger file (`<id> <lo> <hi>` lines).
///
/// # Errors
/// Unreadable file or malformed line.
pub fn read_ledger(path: &Path) -> anyhow::Result<Vec<Acked>> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        let mut it = line.split(' ');
        let (Some(id), Some(lo), Some(hi), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            bail!(
                "{}:{}: not `<id> <lo> <hi>`: {line:?}",
                path.display(),
                i + 1
            );
        };
        out.push(Acked {
            id: id.to_owned(),
            lo: lo.parse().context("lo")?,
            hi: hi.parse().context("hi")?,
        });
    }
    Ok(out)
}

/// Checks a data directory (`ringstash check` exit 0, `ringstash cat --meta` exit 0
/// with nothing on stderr, then [`verify`] against `ledger`).
///
/// # Errors
/// `Err` for a tool that could not run; `Ok(Err(what))` for a mismatch.
pub fn check_dir(
    ringstash: &Path,
    data: &Path,
    ledger: &[Acked],
) -> anyhow::Result<Result<Checked, String>> {
    let out = Command::new(ringstash)
        .args(["check", "--json", "--data-dir"])
        .arg(data)
        .output()
        .context("run ringstash check")?;
    if !out.status.success() {
        return Ok(Err(format!(
            "ringstash check exited {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ringstash check --json output")?;
    let segments = report["segments"].as_array().map_or(0, Vec::len) as u64;
    let out = Command::new(ringstash)
        .args(["cat", "--meta", "--data-dir"])
        .arg(data)
        .output()
        .context("run ringstash cat")?;
    if !out.status.success() || !out.stderr.is_empty() {
        return Ok(Err(format!(
            "ringstash cat exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut stored = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let line = String::from_utf8_lossy(line);
        let mut it = line.splitn(3, '\t');
        let (Some(off), Some(_ts), Some(p)) = (it.next(), it.next(), it.next()) else {
            return Ok(Err(format!("ringstash cat --meta printed {line:?}")));
        };
        let Ok(offset) = off.parse() else {
            return Ok(Err(format!("ringstash cat --meta printed {line:?}")));
        };
        stored.push(Stored {
            offset,
            payload: p.to_owned(),
        });
    }
    Ok(verify(ledger, &stored).map(|acked| Checked {
        acked,
        stored: stored.len() as u64,
        segments,
    }))
}

/// A running `ringstash serve`.
struct Server {
    child: Child,
    tcp_acked: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve` on loopback ports it picks and waits for its "listening" line.
    /// A start refused because the directory is still locked (the server waits 1 s for
    /// the lock of a killed predecessor, then gives up) or an address is in use is
    /// retried for up to 10 s; any other refusal fails the loop.
    fn start(cfg: &Config, data: &Path) -> anyhow::Result<Server> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::start_once(cfg, data)? {
                Ok(s) => return Ok(s),
                Err(log) => {
                    let retry = log.contains("in use by another ringstash process")
                        || log.contains("Address already in use");
                    if !retry || Instant::now() > deadline {
                        bail!("ringstash serve did not start:\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn start_once(cfg: &Config, data: &Path) -> anyhow::Result<Result<Server, String>> {
        let group = (cfg.segment_bytes_max / 4 / 4096 * 4096).clamp(4096, 4 << 20);
        let mut child = Command::new(&cfg.ringstash)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args([
                "--tcp-addr",
                "127.0.0.1:0",
                "--tcp-acked-addr",
                "127.0.0.1:0",
                "--syslog-addr",
                "127.0.0.1:0",
                "--relp-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--ws-addr",
                "127.0.0.1:0",
                "--segment-bytes-max",
            ])
            .arg(cfg.segment_bytes_max.to_string())
            // The default group (4 MiB) must fit in a segment: a quarter of a small
            // one, and records (at most 300 bytes here) a group.
            .arg("--group-bytes-max")
            .arg(group.to_string())
            .arg("--record-bytes-max")
            .arg((group - 1024).to_string())
            .args(&cfg.serve_args)
            .env("RINGSTASH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", cfg.ringstash.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            // Keeps draining stderr for the server's whole life (a full pipe would
            // block its logging), keeping the last lines for a failure's report.
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("listening ")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(line.clone());
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() >= 50 {
                        l.remove(0);
                    }
                    l.push(line);
                }
            });
        }
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(20));
                let l = log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                return Ok(Err(l));
            }
        };
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_owned)
        };
        let (Some(tcp_acked), Some(http)) = (field("tcp_acked="), field("http=")) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no tcp_acked= or http= in {line:?}");
        };
        Ok(Ok(Server {
            child,
            tcp_acked,
            http,
            log,
        }))
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    fn sigkill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL ringstash")?;
        self.child.wait().context("wait for ringstash")?;
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let st = self.child.wait().context("wait for ringstash")?;
        if !st.success() {
            bail!("ringstash exited {st} after SIGTERM:\n{}", self.log());
        }
        Ok(())
    }
}

/// What a producer reports: its acked records, and anything the server said that a
/// kill does not explain.
#[derive(Default)]
struct Produced {
    acked: Vec<Acked>,
    errors: Vec<String>,
}

/// The `n` records `<stream>-<seq>`.. one answer covered, after an answer that
/// ended at offset `base - 1`, the newest at `last`: the `k`-th lies in
/// `base + k ..= last - (n - 1 - k)` (other connections' records may sit between).
fn covered(out: &mut Vec<Acked>, stream: &str, seq: u64, n: u64, base: u64, last: u64) {
    for k in 0..n {
        out.push(Acked {
            id: format!("{stream}-{}", seq + k),
            lo: base + k,
            hi: last - (n - 1 - k),
        });
    }
}

/// Sleeps until `sent` records are due at `rate` per second since `start` (0: never).
fn pace(start: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
}

/// What a producer is given.
#[derive(Clone)]
struct Load {
    addr: String,
    stream: String,
    seed: u64,
    batch_max: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
}

impl Load {
    /// A connection to the server, or `None` if it is already gone (killed).
    fn connect(&self) -> Option<TcpStream> {
        let conn = TcpStream::connect(&self.addr).ok()?;
        let _ = conn.set_nodelay(true);
        Some(conn)
    }
}

/// One acked raw TCP connection: a writer sending batches of lines (at most `window`
/// records ahead of the acks), a reader turning acks into offset ranges.
fn tcp_producer(load: Load) -> Produced {
    let Load {
        stream,
        seed,
        batch_max,
        rate,
        stop,
        ..
    } = load.clone();
    let mut out = Produced::default();
    let Some(conn) = load.connect() else {
        return out; // killed before we connected
    };
    let Ok(mut w) = conn.try_clone() else {
        return out;
    };
    let acked_count = Arc::new(AtomicU64::new(0));
    let writer = {
        let acked_count = acked_count.clone();
        let stream = stream.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut seq = 0u64;
            let window = 4 * batch_max;
            let mut buf = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                pace(start, seq, rate);
                if seq - acked_count.load(Ordering::Relaxed) > window {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                buf.clear();
                for _ in 0..rng.range(1, batch_max) {
                    buf.extend_from_slice(payload(&format!("{stream}-{seq}")).as_bytes());
                    buf.push(b'\n');
                    seq += 1;
                }
                if w.write_all(&buf).is_err() {
                    return;
                }
            }
            let _ = w.shutdown(Shutdown::Write);
        })
    };
    let mut prev_count = 0u64;
    let mut prev_last: Option<u64> = None;
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        let mut it = line.split(' ');
        match (it.next(), it.next(), it.next()) {
            (Some("ack"), Some(c), Some(l)) => {
                let (Ok(count), Ok(last)) = (c.parse::<u64>(), l.parse::<u64>()) else {
                    out.errors.push(format!("{stream}: bad ack {line:?}"));
                    break;
                };
                if count <= prev_count || prev_last.is_some_and(|p| last <= p) {
                    out.errors.push(format!(
                        "{stream}: ack {count} {last} does not advance on {prev_count} {prev_last:?}"
                    ));
                    break;
                }
                let base = prev_last.map_or(0, |p| p + 1);
                covered(
                    &mut out.acked,
                    &stream,
                    prev_count,
                    count - prev_count,
                    base,
                    last,
                );
                prev_count = count;
                prev_last = Some(last);
                acked_count.store(count, Ordering::Relaxed);
            }
            _ => {
                out.errors.push(format!("{stream}: server said {line:?}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    out
}

/// One keep-alive HTTP connection posting batches to `/ingest`, one request at a time.
fn http_producer(load: Load) -> Produced {
    let mut out = Produced::default();
    let Some(mut conn) = load.connect() else {
        return out;
    };
    let stream = &load.stream;
    let mut rng = Rng::new(load.seed);
    let mut seq = 0u64;
    let mut body = Vec::new();
    let mut resp = Vec::new();
    let start = Instant::now();
    while !load.stop.load(Ordering::Relaxed) {
        pace(start, seq, load.rate);
        body.clear();
        let n = rng.range(1, load.batch_max);
        for k in 0..n {
            body.extend_from_slice(payload(&format!("{stream}-{}", seq + k)).as_bytes());
            body.push(b'\n');
        }
        let head = format!(
            "POST /ingest HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            load.addr,
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body).is_err() {
            break;
        }
        let Some((status, json)) = read_response(&mut conn, &mut resp) else {
            break; // killed mid-request: not acked
        };
        if status != 200 {
            out.errors.push(format!(
                "{stream}: HTTP {status}: {}",
                String::from_utf8_lossy(&json)
            ));
            break;
        }
        let v: serde_json::Value = match serde_json::from_slice(&json) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(format!("{stream}: bad JSON {e}"));
                break;
            }
        };
        let (Some(count), Some(first), Some(last)) = (
            v["count"].as_u64(),
            v["first_offset"].as_u64(),
            v["last_offset"].as_u64(),
        ) else {
            out.errors.push(format!("{stream}: response {v}"));
            break;
        };
        if count != n || last < first || last - first + 1 < n {
            out.errors
                .push(format!("{stream}: {n} records sent, response {v}"));
            break;
        }
        covered(&mut out.acked, stream, seq, n, first, last);
        seq += n;
    }
    out
}

/// Reads one HTTP response (status, body by Content-Length). `None` on EOF or error.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, Vec<u8>)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((status, buf[head_end..head_end + len].to_vec()))
}

/// Runs the loop, printing one line per iteration to `progress`.
///
/// # Errors
/// A tool that could not run, a server that did not start, or a mismatch (with the
/// iteration and seed in the message).
pub fn run(cfg: &Config, progress: &mut dyn Write) -> anyhow::Result<Summary> {
    run_with_cut(cfg, progress, &mut |_| Ok(String::new()))
}

/// [`run`], calling `after_kill` with the data directory after every SIGKILL (the
/// server reaped) and before the check: the power-cut harness drops there what the
/// server had not made durable. Its text is appended to the iteration's line.
///
/// # Errors
/// As [`run`], and whatever `after_kill` returns.
pub fn run_with_cut(
    cfg: &Config,
    progress: &mut dyn Write,
    after_kill: &mut dyn FnMut(&Path) -> anyhow::Result<String>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.work_dir)
        .with_context(|| format!("create {}", cfg.work_dir.display()))?;
    let mut rng = Rng::new(cfg.seed);
    let mut sum = Summary::default();
    let mut ledger: Vec<Acked> = Vec::new();
    let mut ledger_file: Option<BufWriter<File>> = None;
    let mut data = PathBuf::new();
    let mut last_check = Checked::default();
    let fail = |iter: u64, what: String| {
        anyhow::anyhow!(
            "kill loop FAILED at iteration {iter} (seed {}, data dir {}): {what}",
            cfg.seed,
            cfg.work_dir.display()
        )
    };
    let fresh_every = cfg.fresh_every.max(1);
    for iter in 0..cfg.iterations {
        if iter % fresh_every == 0 {
            if iter > 0 {
                sum.rotations += last_check.segments.saturating_sub(1);
                sum.unacked_stored += last_check.stored - last_check.acked;
            }
            let data_root = cfg.data_root.as_ref().unwrap_or(&cfg.work_dir);
            data = data_root.join(format!("data-{}", iter / fresh_every));
            if data.exists() {
                std::fs::remove_dir_all(&data)?;
            }
            // The previous directory passed; only the newest is kept for a post-mortem.
            if iter > 0 {
                let old = data_root.join(format!("data-{}", iter / fresh_every - 1));
                let _ = std::fs::remove_dir_all(old);
            }
            std::fs::create_dir_all(&data)?;
            // The new directory's own entry made durable, as an operator would before
            // starting a server on it (a power cut must not take the directory away).
            File::open(data_root)?.sync_all()?;
            ledger.clear();
            let path = cfg.work_dir.join(format!("ledger-{}", iter / fresh_every));
            ledger_file = Some(BufWriter::new(File::create(&path)?));
            sum.data_dirs += 1;
        }
        let mut server = Server::start(cfg, &data).map_err(|e| fail(iter, format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut producers: Vec<JoinHandle<Produced>> = Vec::new();
        let load = |addr: &str, stream: String, seed: u64| Load {
            addr: addr.to_owned(),
            stream,
            seed,
            batch_max: cfg.batch_max,
            rate: cfg.rate,
            stop: stop.clone(),
        };
        for p in 0..cfg.tcp_producers {
            let l = load(&server.tcp_acked, format!("{iter}-t{p}"), rng.next_u64());
            producers.push(std::thread::spawn(move || tcp_producer(l)));
        }
        for p in 0..cfg.http_producers {
            let l = load(&server.http, format!("{iter}-h{p}"), rng.next_u64());
            producers.push(std::thread::spawn(move || http_producer(l)));
        }
        let delay = rng.range(cfg.kill_min_ms, cfg.kill_max_ms.max(cfg.kill_min_ms));
        std::thread::sleep(Duration::from_millis(delay));
        server.sigkill()?;
        sum.kills += 1;
        let cut = after_kill(&data).map_err(|e| fail(iter, format!("after the kill: {e:#}")))?;
        stop.store(true, Ordering::Relaxed);
        let mut new_acked = 0u64;
        let mut errors = Vec::new();
        for h in producers {
            let p = h.join().map_err(|_| anyhow::anyhow!("producer panicked"))?;
            new_acked += p.acked.len() as u64;
            if let Some(f) = ledger_file.as_mut() {
                for a in &p.acked {
                    writeln!(f, "{} {} {}", a.id, a.lo, a.hi)?;
                }
            }
            ledger.extend(p.acked);
            errors.extend(p.errors);
        }
        if let Some(f) = ledger_file.as_mut() {
            f.flush()?;
        }
        if !errors.is_empty() {
            return Err(fail(
                iter,
                format!(
                    "producers: {}\nserver log:\n{}",
                    errors.join("\n"),
                    server.log()
                ),
            ));
        }
        last_check = match check_dir(&cfg.ringstash, &data, &ledger)? {
            Ok(c) => c,
            Err(what) => return Err(fail(iter, what)),
        };
        sum.acked_records += new_acked;
        sum.acked_checks += last_check.acked;
        writeln!(
            progress,
            "kill-loop: iteration {iter}: killed after {delay} ms{cut}, {new_acked} newly acked, {} acked checked, {} stored, {} segments: ok",
            last_check.acked, last_check.stored, last_check.segments
        )?;
    }
    // The last directory once more after a recovery and a clean stop.
    if cfg.iterations > 0 {
        let iter = cfg.iterations;
        let mut server = Server::start(cfg, &data).map_err(|e| fail(iter, format!("{e:#}")))?;
        server.stop().map_err(|e| fail(iter, format!("{e:#}")))?;
        last_check = match check_dir(&cfg.ringstash, &data, &ledger)? {
            Ok(c) => c,
            Err(what) => return Err(fail(iter, format!("after recovery and clean stop: {what}"))),
        };
        sum.acked_checks += last_check.acked;
        sum.rotations += last_check.segments.saturating_sub(1);
        sum.unacked_stored += last_check.stored - last_check.acked;
    }
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ids: &[&str]) -> Vec<Stored> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Stored {
                offset: i as u64,
                payload: payload(id),
            })
            .collect()
    }

    fn exact(id: &str, off: u64) -> Acked {
        Acked {
            id: id.into(),
            lo: off,
            hi: off,
        }
    }

    #[test]
    fn a_log_holding_every_acked_record_passes() {
        let stored = log(&["0-t0-0", "0-h0-0", "0-t0-1", "0-t0-2"]);
        let ledger = [
            exact("0-t0-0", 0),
            exact("0-h0-0", 1),
            Acked {
                id: "0-t0-1".into(),
                lo: 1,
                hi: 2,
            },
        ];
        assert_eq!(verify(&ledger, &stored), Ok(3));
    }

    #[test]
    fn every_kind_of_damage_is_reported() {
        let good = log(&["0-t0-0", "0-t0-1", "0-t0-2"]);
        let ledger = [exact("0-t0-0", 0), exact("0-t0-1", 1)];
        // An acked record missing.
        let e = verify(&ledger, &good[..1]).unwrap_err();
        assert!(
            e.contains("acked record 0-t0-1 (offset 1..=1) missing"),
            "{e}"
        );
        // At another offset than its ack said.
        let e = verify(&[exact("0-t0-1", 2)], &good).unwrap_err();
        assert!(
            e.contains("acked record 0-t0-1 at offset 1, its ack allows 2..=2"),
            "{e}"
        );
        // A payload altered by one byte.
        let mut bad = good.clone();
        bad[1].payload.pop();
        let e = verify(&ledger, &bad).unwrap_err();
        assert!(e.contains("offset 1: record 0-t0-1 corrupted"), "{e}");
        // Stored twice (a duplicate after a retry would look like this).
        let mut bad = good.clone();
        bad[2].payload = payload("0-t0-0");
        let e = verify(&ledger, &bad).unwrap_err();
        assert!(
            e.contains("record 0-t0-0 stored twice: offsets 0 and 2"),
            "{e}"
        );
        // Out of the connection's order.
        let e = verify(&[], &log(&["0-t0-1", "0-t0-0"])).unwrap_err();
        assert!(e.contains("out of the order sent"), "{e}");
        // An offset skipped.
        let mut bad = good;
        bad[2].offset = 5;
        let e = verify(&ledger, &bad).unwrap_err();
        assert!(
            e.contains("offsets not dense and increasing: 5 after 1"),
            "{e}"
        );
    }

    #[test]
    fn payloads_are_determined_by_the_id() {
        assert_eq!(payload("3-t1-7"), payload("3-t1-7"));
        assert_ne!(payload("3-t1-7"), payload("3-t1-8"));
        assert!(payload("3-t1-7").starts_with("3-t1-7 "));
        assert_eq!(stream_of("3-t1-7"), Some(("3-t1", 7)));
    }
}
