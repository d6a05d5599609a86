//! The `ws-e2e` mode's subscriber side: WebSocket subscribers that read ringstash's
//! fan-out (`docs/protocol.md`, WebSocket), find each record's end-to-end tag, check
//! that every record arrives exactly once, and time each batch from its intended
//! send time to the moment its last record arrived.
//!
//! # How a batch is recognised
//!
//! In `ws-e2e` mode every generated record carries a tag (`e2e=` + 16 hex digits of
//! `connection << 48 | seq` + `L` on a batch's last record, `-` on the others; see
//! [`crate::workload::TAG_MARKER`]). The sender writes it into the record as it
//! copies the batch out of the corpus, and before the batch goes to the socket it
//! publishes the batch's intended and actual send times in [`E2eShared`]: a
//! fixed ring of slots per connection, indexed by batch number (`seq / batch`; only
//! a connection's last batch can be short, so this holds for every batch). A
//! subscriber that reads a record tagged `L` looks the slot up and records
//! `receipt - intended` (corrected) and `receipt - sent` (service) in its own
//! HdrHistograms. A slot overwritten before the subscriber got there (it lagged by
//! more than [`RING_SLOTS`] batches of one connection) loses that sample and is
//! counted as `lapped`.
//!
//! Per connection, records arrive in sequence order (ringstash delivers in offset
//! order, and one connection's records get increasing offsets), so exactly-once is
//! checked with one counter per connection: a sequence number below the next
//! expected one is a duplicate, one above it means records were missed.
//!
//! Subscribers use blocking `tungstenite` on their own threads, with a short read
//! timeout so they notice the end of the run. Stalled subscribers complete the
//! handshake and never read again.

use std::{
    io,
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use hdrhistogram::Histogram;
use tungstenite::{Message, WebSocket};

use crate::{
    clock::mono_ns,
    stats::{new_histogram, record_ns},
    workload::{TAG_MARKER, TAG_SEQ_BITS, TAG_VALUE_LEN},
};

/// Batches per connection whose send times are kept for the subscribers.
pub const RING_SLOTS: usize = 1 << 15;

/// Highest connection index a tag can carry.
pub const CONNECTIONS_MAX: usize = 1 << (64 - TAG_SEQ_BITS);

/// One batch's send times.
#[derive(Debug, Default)]
struct Slot {
    /// `batch_no + 1` once published (0: empty).
    batch: AtomicU64,
    intended_ns: AtomicU64,
    sent_ns: AtomicU64,
    /// 1 if the batch was sent after the warm-up.
    measured: AtomicU64,
}

/// One connection's published batches and records.
#[derive(Debug)]
struct ConnShared {
    slots: Box<[Slot]>,
    /// Records tagged and handed to the socket (the next sequence number).
    sent: AtomicU64,
}

/// What the sender publishes for the subscribers.
#[derive(Debug)]
pub struct E2eShared {
    batch_records: u64,
    conns: Box<[ConnShared]>,
}

impl E2eShared {
    /// Room for `connections` connections sending batches of `batch_records`.
    ///
    /// # Panics
    /// More than [`CONNECTIONS_MAX`] connections, or an empty batch.
    pub fn new(connections: usize, batch_records: usize) -> Self {
        assert!(connections <= CONNECTIONS_MAX && batch_records > 0);
        E2eShared {
            batch_records: batch_records as u64,
            conns: (0..connections)
                .map(|_| ConnShared {
                    slots: (0..RING_SLOTS).map(|_| Slot::default()).collect(),
                    sent: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The sender: connection `conn`'s batch starting at sequence number `seq0` is
    /// about to be written. Returns the tag id of its first record.
    pub fn publish(
        &self,
        conn: usize,
        seq0: u64,
        records: u64,
        intended_ns: u64,
        sent_ns: u64,
        measured: bool,
    ) -> u64 {
        let c = &self.conns[conn];
        let batch = seq0 / self.batch_records;
        let s = &c.slots[(batch % RING_SLOTS as u64) as usize];
        // Invalidate first so a reader never pairs the old batch number with new times.
        s.batch.store(0, Ordering::Release);
        s.intended_ns.store(intended_ns, Ordering::Relaxed);
        s.sent_ns.store(sent_ns, Ordering::Relaxed);
        s.measured.store(u64::from(measured), Ordering::Relaxed);
        // Release: a subscriber that sees this batch number (Acquire) sees the times.
        s.batch.store(batch + 1, Ordering::Release);
        c.sent.store(seq0 + records, Ordering::Release);
        (conn as u64) << TAG_SEQ_BITS | seq0
    }

    /// Records connection `conn` has sent so far.
    pub fn sent(&self, conn: usize) -> u64 {
        self.conns[conn].sent.load(Ordering::Acquire)
    }

    /// The send times of the batch holding `seq` on `conn`: `(intended, sent,
    /// measured)`, or `None` if its slot was overwritten (or never written).
    fn lookup(&self, conn: usize, seq: u64) -> Option<(u64, u64, bool)> {
        let batch = seq / self.batch_records;
        let s = &self.conns.get(conn)?.slots[(batch % RING_SLOTS as u64) as usize];
        if s.batch.load(Ordering::Acquire) != batch + 1 {
            return None;
        }
        let t = (
            s.intended_ns.load(Ordering::Relaxed),
            s.sent_ns.load(Ordering::Relaxed),
            s.measured.load(Ordering::Relaxed) == 1,
        );
        // Still the same batch after reading: the times belong to it.
        (s.batch.load(Ordering::Acquire) == batch + 1).then_some(t)
    }
}

/// One tag found in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Connection index.
    pub conn: usize,
    /// Sequence number on that connection.
    pub seq: u64,
    /// The last record of its batch.
    pub last: bool,
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some(v)
}

/// Parses a tag value (the [`TAG_VALUE_LEN`] bytes after the marker).
pub fn parse_tag(v: &[u8]) -> Option<Tag> {
    if v.len() < TAG_VALUE_LEN {
        return None;
    }
    let id = hex_u64(&v[..16])?;
    let last = match v[16] {
        b'L' => true,
        b'-' => false,
        _ => return None,
    };
    Some(Tag {
        conn: (id >> TAG_SEQ_BITS) as usize,
        seq: id & ((1 << TAG_SEQ_BITS) - 1),
        last,
    })
}

/// Calls `f` with every tag in `msg` (a fan-out message), in order; counts
/// malformed ones in the return value.
pub fn for_each_tag(
    msg: &[u8],
    finder: &memchr::memmem::Finder<'_>,
    mut f: impl FnMut(Tag),
) -> u64 {
    let mut bad = 0;
    for at in finder.find_iter(msg) {
        let v = &msg[at + TAG_MARKER.len()..];
        match parse_tag(v) {
            Some(t) => f(t),
            None => bad += 1,
        }
    }
    bad
}

/// Exactly-once bookkeeping of one subscriber.
#[derive(Debug, Clone)]
pub struct Check {
    /// Next expected sequence number per connection.
    pub next: Vec<u64>,
    /// Records received in sequence (each once).
    pub delivered: u64,
    /// Records skipped: a sequence number above the next expected one (lost).
    pub missed: u64,
    /// At the end: records sent and not received yet (still behind, or lost at the
    /// tail).
    pub undelivered: u64,
    /// Records received again (a sequence number below the next expected one).
    pub duplicates: u64,
    /// Tags naming a connection this run does not have, or malformed.
    pub foreign: u64,
}

impl Check {
    /// For `connections` connections, all starting at 0.
    pub fn new(connections: usize) -> Self {
        Check {
            next: vec![0; connections],
            delivered: 0,
            missed: 0,
            undelivered: 0,
            duplicates: 0,
            foreign: 0,
        }
    }

    /// One record arrived. Returns true if it is new (neither duplicate nor foreign).
    pub fn on_tag(&mut self, t: Tag) -> bool {
        let Some(next) = self.next.get_mut(t.conn) else {
            self.foreign += 1;
            return false;
        };
        if t.seq < *next {
            self.duplicates += 1;
            return false;
        }
        self.missed += t.seq - *next;
        *next = t.seq + 1;
        self.delivered += 1;
        true
    }

    /// True once every connection's records up to `sent[c]` have arrived.
    pub fn complete(&self, sent: &[u64]) -> bool {
        self.next.iter().zip(sent).all(|(n, s)| n >= s)
    }

    /// Counts what has not arrived of `sent` as undelivered.
    pub fn finish(&mut self, sent: &[u64]) {
        self.undelivered = self
            .next
            .iter()
            .zip(sent)
            .map(|(n, s)| s.saturating_sub(*n))
            .sum();
    }
}

/// What one live subscriber saw.
#[derive(Debug, Clone)]
pub struct SubResult {
    /// Exactly-once bookkeeping.
    pub check: Check,
    /// Intended send time → receipt of a batch's last record, µs.
    pub latency_us: Histogram<u64>,
    /// Actual send time → receipt, µs.
    pub service_us: Histogram<u64>,
    /// Batch ends whose send times were overwritten before they arrived.
    pub lapped: u64,
    /// WebSocket messages read.
    pub messages: u64,
    /// Why it stopped early, if it did (connection closed, close frame, error).
    pub error: Option<String>,
    /// When its last record arrived, monotonic ns (0: none).
    pub last_receipt_ns: u64,
}

/// Tells running subscribers when to stop.
#[derive(Debug, Default)]
pub struct Finish {
    /// Set when sending is over and `sent` is final.
    pub done_sending: AtomicBool,
    /// Give up waiting for missing records at this monotonic time (0: not yet set).
    pub deadline_ns: AtomicU64,
}

/// Connects a WebSocket client to `ws://addr{path}` and completes the handshake.
///
/// # Errors
/// Connect, handshake, or a refusal (any status but 101).
pub fn connect(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<WebSocket<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    let url = format!("ws://{addr}{path}");
    let (ws, _resp) = tungstenite::client(url.as_str(), s).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            anyhow::anyhow!("{url}: refused with HTTP {}: {}", r.status(), body.trim())
        }
        e => anyhow::anyhow!("{url}: handshake failed: {e}"),
    })?;
    Ok(ws)
}

/// Starts a live subscriber on an open WebSocket.
///
/// # Errors
/// The thread could not be spawned or the socket not configured.
pub fn spawn_live(
    index: usize,
    ws: WebSocket<TcpStream>,
    shared: Arc<E2eShared>,
    finish: Arc<Finish>,
) -> io::Result<JoinHandle<SubResult>> {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    std::thread::Builder::new()
        .name(format!("loadtest-sub{index}"))
        .spawn(move || live_loop(ws, &shared, &finish))
}

/// A live subscriber's thread: reads until every record arrived after sending ended,
/// the drain deadline passed, or the connection failed.
fn live_loop(mut ws: WebSocket<TcpStream>, shared: &E2eShared, finish: &Finish) -> SubResult {
    let finder = memchr::memmem::Finder::new(TAG_MARKER);
    let mut r = SubResult {
        check: Check::new(shared.connections()),
        latency_us: new_histogram(),
        service_us: new_histogram(),
        lapped: 0,
        messages: 0,
        error: None,
        last_receipt_ns: 0,
    };
    let mut sent = vec![0u64; shared.connections()];
    loop {
        match ws.read() {
            Ok(msg) => {
                let now = mono_ns();
                let data: &[u8] = match &msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    Message::Close(c) => {
                        r.error = Some(match c {
                            Some(c) => {
                                format!("closed by server: {} {}", u16::from(c.code), c.reason)
                            }
                            None => "closed by server".into(),
                        });
                        break;
                    }
                    _ => continue,
                };
                r.on_message(data, &finder, shared, now);
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                r.error = Some(e.to_string());
                break;
            }
        }
        if finish.done_sending.load(Ordering::Acquire) {
            read_sent(shared, &mut sent);
            if r.check.complete(&sent) {
                break;
            }
            let deadline = finish.deadline_ns.load(Ordering::Acquire);
            if deadline > 0 && mono_ns() >= deadline {
                break;
            }
        }
    }
    read_sent(shared, &mut sent);
    r.check.finish(&sent);
    let _ = ws.close(None);
    let _ = ws.flush();
    r
}

/// Records each connection has sent so far, into `sent`.
fn read_sent(shared: &E2eShared, sent: &mut [u64]) {
    for (c, s) in sent.iter_mut().enumerate() {
        *s = shared.sent(c);
    }
}

impl SubResult {
    /// One message received at `now`: checks every tag in it, and times each batch
    /// whose last record it holds.
    fn on_message(
        &mut self,
        data: &[u8],
        finder: &memchr::memmem::Finder<'_>,
        shared: &E2eShared,
        now: u64,
    ) {
        self.messages += 1;
        let mut got = false;
        let bad = for_each_tag(data, finder, |t| {
            if self.check.on_tag(t) {
                got = true;
                if t.last {
                    match shared.lookup(t.conn, t.seq) {
                        Some((intended, sent_at, measured)) => {
                            if measured {
                                record_ns(&mut self.latency_us, now.saturating_sub(intended));
                                record_ns(&mut self.service_us, now.saturating_sub(sent_at));
                            }
                        }
                        None => self.lapped += 1,
                    }
                }
            }
        });
        self.check.foreign += bad;
        if got {
            self.last_receipt_ns = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Corpus, Format, GenConfig, SizeDist};

    #[test]
    fn tags_written_by_the_sender_parse_back() {
        for format in [Format::Text, Format::Json] {
            let corpus = Corpus::generate(&GenConfig {
                format,
                size: SizeDist { min: 150, max: 300 },
                corpus_records: 100,
                tag: true,
                ..GenConfig::default()
            })
            .unwrap();
            let mut out = Vec::new();
            let mut cur = 95;
            let id0 = 3u64 << TAG_SEQ_BITS | 1000;
            corpus.append_lines_tagged(&mut cur, 10, id0, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 10);
            if format == Format::Json {
                for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                    assert!(v["tag"].as_str().unwrap().starts_with("e2e="));
                }
            }
            // As a fan-out message carries them: inside JSON strings.
            let msg = serde_json::json!({"records": [{"data": String::from_utf8_lossy(&out)}]})
                .to_string();
            let finder = memchr::memmem::Finder::new(TAG_MARKER);
            let mut tags = Vec::new();
            assert_eq!(for_each_tag(msg.as_bytes(), &finder, |t| tags.push(t)), 0);
            let want: Vec<Tag> = (0..10)
                .map(|k| Tag {
                    conn: 3,
                    seq: 1000 + k,
                    last: k == 9,
                })
                .collect();
            assert_eq!(tags, want, "{format:?}");
        }
    }

    #[test]
    fn exactly_once_bookkeeping() {
        let mut c = Check::new(2);
        let t = |conn, seq| Tag {
            conn,
            seq,
            last: false,
        };
        assert!(c.on_tag(t(0, 0)));
        assert!(c.on_tag(t(0, 1)));
        assert!(!c.on_tag(t(0, 1)));
        assert!(c.on_tag(t(1, 0)));
        assert!(c.on_tag(t(1, 3)));
        assert!(!c.on_tag(t(5, 0)));
        assert_eq!(
            (c.delivered, c.duplicates, c.missed, c.foreign),
            (4, 1, 2, 1)
        );
        assert!(c.complete(&[2, 4]));
        assert!(!c.complete(&[3, 4]));
        c.finish(&[3, 4]);
        assert_eq!((c.missed, c.undelivered), (2, 1));
    }

    #[test]
    fn published_times_are_found_until_overwritten() {
        let s = E2eShared::new(2, 10);
        let id = s.publish(1, 20, 10, 5, 6, true);
        assert_eq!(id, 1 << TAG_SEQ_BITS | 20);
        assert_eq!(s.sent(1), 30);
        assert_eq!(s.lookup(1, 29), Some((5, 6, true)));
        assert_eq!(s.lookup(0, 29), None);
        s.publish(1, 20 + 10 * RING_SLOTS as u64, 10, 7, 8, false);
        assert_eq!(s.lookup(1, 29), None);
        assert!(
            parse_tag(b"000100000000001fL").is_some_and(|t| t.conn == 1 && t.seq == 31 && t.last)
        );
        assert!(parse_tag(b"000100000000001fX").is_none());
        assert!(parse_tag(b"00010000000000zz-").is_none());
    }
}
