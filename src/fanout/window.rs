//! The fan-out core's window: the most recent committed records, decoded and rendered
//! once, shared by every live subscriber.
//!
//! One tail reader (a [`Reader`] bounded by the committed offset) follows the log and
//! appends chunks: each holds up to `CHUNK_BYTES` of rendered fragments, with the raw
//! payloads and the `service`/`level` fields for filters. An unfiltered subscriber whose
//! cursor sits at a chunk's start gets the chunk's message, rendered once for everyone
//! (a `Bytes` handle, not a copy); others get a message assembled from the fragments.
//! The window is bounded by `fanout_window_bytes_max`; a subscriber whose cursor falls
//! below its start reads the segment files with a reader of its own (see
//! [`crate::query::scan::read_into`]).

use std::{cell::OnceCell, collections::VecDeque};

use tungstenite::{Bytes, Utf8Bytes};

use super::{
    query::{self, Filter},
    render::{self, MessageBuilder},
};
use crate::{error::ReadError, wal::Reader};

/// Rendered bytes per chunk, before the record that crosses it. Small enough that a
/// chunk's message is one modest WebSocket frame; large enough that at high rates one
/// message carries hundreds of records.
pub const CHUNK_BYTES: usize = 64 << 10;

/// Where one record's pieces lie in its chunk's buffers.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// End of the fragment in `frags` (it starts where the previous one ends).
    frag_end: u32,
    /// End of the payload in `payloads`.
    payload_end: u32,
    /// `service` in `strs`, if the record has one.
    service: Option<(u32, u32)>,
    /// `level` in `strs`, if the record has one.
    level: Option<(u32, u32)>,
}

/// Consecutive committed records, rendered.
#[derive(Debug)]
pub struct Chunk {
    /// Offset of the first record.
    first: u64,
    /// Exclusive end offset.
    end: u64,
    /// The committed end when the chunk was read, for its messages.
    committed_end: u64,
    entries: Vec<Entry>,
    frags: Vec<u8>,
    payloads: Vec<u8>,
    strs: Vec<u8>,
    /// The whole chunk as one message, rendered on first use and shared.
    shared: OnceCell<Utf8Bytes>,
}

impl Chunk {
    fn new(first: u64) -> Self {
        Chunk {
            first,
            end: first,
            committed_end: first,
            entries: Vec::new(),
            frags: Vec::with_capacity(CHUNK_BYTES + 1024),
            payloads: Vec::with_capacity(CHUNK_BYTES / 2),
            strs: Vec::new(),
            shared: OnceCell::new(),
        }
    }

    fn push(&mut self, offset: u64, ts: u64, payload: &[u8]) {
        debug_assert_eq!(offset, self.end, "records must be consecutive");
        let (service, level) = query::json_fields(payload);
        let mut place = |s: Option<&str>| {
            s.map(|s| {
                let start = self.strs.len() as u32;
                self.strs.extend_from_slice(s.as_bytes());
                (start, self.strs.len() as u32)
            })
        };
        let service_at = place(service.as_deref());
        let level_at = place(level.as_deref());
        render::fragment(
            &mut self.frags,
            offset,
            ts,
            payload,
            service.as_deref(),
            level.as_deref(),
        );
        self.payloads.extend_from_slice(payload);
        self.entries.push(Entry {
            frag_end: self.frags.len() as u32,
            payload_end: self.payloads.len() as u32,
            service: service_at,
            level: level_at,
        });
        self.end = offset + 1;
    }

    fn bytes(&self) -> usize {
        self.frags.len()
            + self.payloads.len()
            + self.strs.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.shared.get().map_or(0, |m| m.len())
    }

    fn str_at(&self, at: Option<(u32, u32)>) -> Option<&str> {
        // The bytes came from a &str, so they are UTF-8.
        at.and_then(|(a, b)| std::str::from_utf8(&self.strs[a as usize..b as usize]).ok())
    }

    /// Fragment, payload, service and level of record `i`.
    fn record(&self, i: usize) -> (&[u8], &[u8], Option<&str>, Option<&str>) {
        let e = self.entries[i];
        let (f0, p0) = if i == 0 {
            (0, 0)
        } else {
            let p = self.entries[i - 1];
            (p.frag_end as usize, p.payload_end as usize)
        };
        (
            &self.frags[f0..e.frag_end as usize],
            &self.payloads[p0..e.payload_end as usize],
            self.str_at(e.service),
            self.str_at(e.level),
        )
    }

    fn shared_message(&self) -> Utf8Bytes {
        self.shared
            .get_or_init(|| {
                let mut m = MessageBuilder::new(self.frags.len() + self.entries.len() + 64);
                for i in 0..self.entries.len() {
                    m.push_fragment(self.record(i).0);
                }
                Utf8Bytes::try_from(m.finish(self.end, self.committed_end))
                    .expect("rendered JSON is UTF-8")
            })
            .clone()
    }
}

/// What [`Window::build`] produced for a subscriber.
#[derive(Debug)]
pub enum Built {
    /// A JSON message to send, the cursor after it, and the records it carries.
    Message(Utf8Bytes, u64, u64),
    /// A binary message of record frames (`format=binary`), likewise.
    Frames(Bytes, u64, u64),
    /// No record passed the filter; the cursor moved to here.
    Skipped(u64),
}

/// The in-memory window of recent committed records.
#[derive(Debug)]
pub struct Window {
    chunks: VecDeque<Chunk>,
    /// Offset of the first record held (= `end` when empty).
    start: u64,
    /// Exclusive end of the records held: where the tail reader continues.
    end: u64,
    bytes: usize,
    bytes_max: usize,
}

impl Window {
    /// An empty window positioned at `at`.
    pub fn new(at: u64, bytes_max: usize) -> Self {
        Window {
            chunks: VecDeque::new(),
            start: at,
            end: at,
            bytes: 0,
            bytes_max,
        }
    }

    /// Oldest offset held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Exclusive end of what is held.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reads up to `chunks_max` chunks of committed records from `tail` (positioned at
    /// `self.end`). Returns true if the tail is still behind `committed_end`.
    ///
    /// # Errors
    /// The tail reader's error (I/O, or a committed record failing its checks).
    pub fn fill(
        &mut self,
        tail: &mut Reader,
        committed_end: u64,
        chunks_max: usize,
    ) -> Result<bool, ReadError> {
        debug_assert_eq!(tail.next_offset().max(self.end), tail.next_offset());
        for _ in 0..chunks_max {
            if tail.next_offset() >= committed_end {
                return Ok(false);
            }
            let mut chunk = Chunk::new(tail.next_offset());
            while chunk.frags.len() < CHUNK_BYTES {
                match tail.next()? {
                    Some(r) if r.offset != chunk.end => {
                        // The tail skipped a damaged range (lost offsets). The window
                        // holds consecutive records only, so it starts again after the
                        // range; a subscriber in or before it reads with its own reader,
                        // whose messages mark the gap.
                        let (offset, ts) = (r.offset, r.timestamp_ns);
                        let payload = r.payload.to_vec(); // once per damaged range
                        drop(tail.take_damaged());
                        self.chunks.clear();
                        self.bytes = 0;
                        chunk = Chunk::new(offset);
                        chunk.push(offset, ts, &payload);
                    }
                    Some(r) => chunk.push(r.offset, r.timestamp_ns, r.payload),
                    None => break,
                }
            }
            if chunk.entries.is_empty() {
                return Ok(false);
            }
            chunk.committed_end = committed_end.max(chunk.end);
            self.append(chunk);
        }
        Ok(tail.next_offset() < committed_end)
    }

    /// Adds a chunk at the end and evicts the oldest while over `bytes_max` (the
    /// newest chunk always stays).
    fn append(&mut self, chunk: Chunk) {
        assert!(
            self.chunks.is_empty() || chunk.first == self.end,
            "chunks must be contiguous"
        );
        if self.chunks.is_empty() {
            // The tail may have skipped purged records: the window starts here.
            self.start = chunk.first;
        }
        self.end = chunk.end;
        self.bytes += chunk.bytes();
        self.chunks.push_back(chunk);
        while self.bytes > self.bytes_max && self.chunks.len() > 1 {
            let old = self.chunks.pop_front().expect("non-empty");
            self.bytes -= old.bytes();
            self.start = old.end;
        }
    }

    /// True if `cursor` is a record the window holds.
    pub fn holds(&self, cursor: u64) -> bool {
        cursor >= self.start && cursor < self.end
    }

    /// Builds the next message for a subscriber at `cursor` (which the window holds),
    /// of about `budget` bytes (at least one record), scanning at most `scan_max`
    /// records.
    pub fn build(&mut self, cursor: u64, filter: &Filter, budget: usize, scan_max: usize) -> Built {
        assert!(self.holds(cursor), "cursor {cursor} outside the window");
        let mut idx = self.chunks.partition_point(|c| c.end <= cursor);
        let c = &self.chunks[idx];
        if filter.is_empty() && c.first == cursor && c.frags.len() <= budget {
            let had = c.shared.get().is_some();
            let msg = c.shared_message();
            if !had {
                self.bytes += msg.len();
            }
            return Built::Message(msg, c.end, c.entries.len() as u64);
        }
        let committed_end = self.chunks.back().map_or(self.end, |c| c.committed_end);
        let mut m = MessageBuilder::new(budget.min(CHUNK_BYTES * 2));
        let mut at = cursor;
        let mut scanned = 0usize;
        'chunks: while idx < self.chunks.len() {
            let c = &self.chunks[idx];
            for i in (at - c.first) as usize..c.entries.len() {
                let (frag, payload, service, level) = c.record(i);
                if filter.matches(payload, service, level) {
                    m.push_fragment(frag);
                }
                at += 1;
                scanned += 1;
                if m.len() >= budget || scanned >= scan_max {
                    break 'chunks;
                }
            }
            idx += 1;
        }
        if m.is_empty() {
            return Built::Skipped(at);
        }
        let records = m.records() as u64;
        let msg = Utf8Bytes::try_from(m.finish(at, committed_end)).expect("rendered JSON is UTF-8");
        Built::Message(msg, at, records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: u64, n: u64) -> Chunk {
        let mut c = Chunk::new(first);
        for o in first..first + n {
            let level = if o % 2 == 0 { "error" } else { "info" };
            let p = format!(r#"{{"service":"s{}","level":"{level}","n":{o}}}"#, o % 3);
            c.push(o, 1000 + o, p.as_bytes());
        }
        c.committed_end = first + n;
        c
    }

    fn offsets(msg: &str) -> (Vec<u64>, u64) {
        let v: serde_json::Value = serde_json::from_str(msg).unwrap();
        let offs = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["offset"].as_u64().unwrap())
            .collect();
        (offs, v["next"].as_u64().unwrap())
    }

    #[test]
    fn unfiltered_subscribers_at_a_chunk_start_share_one_rendered_message() {
        let mut w = Window::new(10, 1 << 20);
        w.append(chunk(10, 5));
        w.append(chunk(15, 5));
        let all = Filter::default();
        let Built::Message(a, next, n) = w.build(10, &all, 1 << 20, 1000) else {
            panic!()
        };
        let Built::Message(b, _, _) = w.build(10, &all, 1 << 20, 1000) else {
            panic!()
        };
        assert_eq!((next, n), (15, 5));
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        assert_eq!(offsets(&a), ((10..15).collect(), 15));
        // Mid-chunk: assembled from fragments, across chunks.
        let Built::Message(m, next, n) = w.build(12, &all, 1 << 20, 1000) else {
            panic!()
        };
        assert_eq!((offsets(&m), next, n), (((12..20).collect(), 20), 20, 8));
    }

    #[test]
    fn filters_skip_and_budgets_split() {
        let mut w = Window::new(0, 1 << 20);
        w.append(chunk(0, 30));
        let q = super::query::parse("level=error&service=s0", false, 0, 1024).unwrap();
        let Built::Message(m, next, _) = w.build(0, &q.filter, 1 << 20, 1000) else {
            panic!()
        };
        assert_eq!(offsets(&m), ((0..30).filter(|o| o % 6 == 0).collect(), 30));
        assert_eq!(next, 30);
        let q = super::query::parse("q=nothing-like-this", false, 0, 1024).unwrap();
        assert!(matches!(
            w.build(0, &q.filter, 1 << 20, 1000),
            Built::Skipped(30)
        ));
        assert!(matches!(
            w.build(0, &q.filter, 1 << 20, 7),
            Built::Skipped(7)
        ));
        // A small budget: several messages, nothing lost, at least one record each.
        let mut at = 0;
        let mut seen = Vec::new();
        while at < 30 {
            let Built::Message(m, next, _) = w.build(at, &Filter::default(), 100, 1000) else {
                panic!()
            };
            let (offs, nx) = offsets(&m);
            assert!(!offs.is_empty());
            seen.extend(offs);
            at = nx;
            assert_eq!(at, next);
        }
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn the_window_evicts_old_chunks_beyond_its_bound() {
        let one = chunk(0, 50).bytes();
        let mut w = Window::new(0, one * 3);
        for i in 0..10 {
            w.append(chunk(i * 50, 50));
        }
        assert!(w.bytes() <= one * 3);
        assert_eq!(w.end(), 500);
        assert!(w.start() >= 350 && w.start() < 500, "{}", w.start());
        assert!(!w.holds(0) && w.holds(499) && !w.holds(500));
    }
}
