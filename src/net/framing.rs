//! How a stream connection's bytes become records: the [`Framing`] a TCP listener
//! uses. Raw lines are stored as they came
//! ([`LineFramer`](super::lines::LineFramer)); syslog frames are rendered to JSON
//! records with their fields ([`SyslogFraming`]).

use std::sync::atomic::Ordering;

use crate::{
    query::render::format_ts,
    stats::NetStats,
    syslog::{
        frame::{Finished, Split, SyslogFramer},
        record::{self, Parsed},
    },
    wal::{BatchBuilder, format::RECORD_HEADER_BYTES},
};

/// What one call to [`Framing::frame`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Bytes of the input consumed; the rest is an incomplete line (or the batch filled).
    pub consumed: usize,
    /// Records framed into the batch.
    pub records: u32,
    /// The call stopped because the batch reached its byte limit; call again after
    /// handing the batch off.
    pub batch_full: bool,
}

/// Where one read's records go.
pub struct Target<'a> {
    /// The connection's batch.
    pub batch: &'a mut BatchBuilder,
    /// The read's receive time (one timestamp per read, not per record).
    pub timestamp_ns: u64,
    /// Stop before a record that would take the batch past this many bytes (a batch
    /// holding a single record may exceed it).
    pub batch_bytes_max: usize,
    /// Takes refused records' numbers (1-based, per connection).
    pub rejected: &'a mut dyn FnMut(u64),
}

impl<'a> Target<'a> {
    /// Records of a read at `timestamp_ns` into `batch`, up to `batch_bytes_max`.
    pub fn new(
        batch: &'a mut BatchBuilder,
        timestamp_ns: u64,
        batch_bytes_max: usize,
        rejected: &'a mut dyn FnMut(u64),
    ) -> Self {
        Target {
            batch,
            timestamp_ns,
            batch_bytes_max,
            rejected,
        }
    }
}

/// Frames the bytes of one connection into a batch (no I/O).
pub trait Framing {
    /// Frames the complete records at the start of `input`, stopping early once the
    /// batch is full ([`Framed::batch_full`]); the rest stays for the next call.
    fn frame(&mut self, input: &[u8], to: &mut Target<'_>) -> Framed;

    /// At a clean end of stream (FIN): frames what `rest` holds, if it is a record.
    /// Returns the records framed.
    fn finish(&mut self, rest: &[u8], to: &mut Target<'_>) -> u32;
}

/// The enrichment fields a syslog record gets (`json_enrich`): as `POST /v1/logs`
/// sets them on JSON objects.
#[derive(Debug, Clone)]
pub struct Enrichment {
    /// The peer's address.
    pub client_ip: String,
    /// The `node_id` setting.
    pub node_id: String,
}

/// Renders syslog messages to JSON records, for the TCP and UDP syslog listeners.
#[derive(Debug)]
pub struct SyslogRenderer<'a> {
    /// The rendered record, reused.
    scratch: Vec<u8>,
    renderer: record::Renderer,
    enrich: Option<Enrichment>,
    /// The peer `client_ip` was rendered from (UDP: it changes per datagram).
    peer: Option<std::net::IpAddr>,
    /// The read timestamp `received_at` (and the year RFC 3164 timestamps get) was
    /// last rendered from.
    received_ns: u64,
    stats: &'a NetStats,
}

impl<'a> SyslogRenderer<'a> {
    /// With `enrich`, every record gets `received_at`, `client_ip` and `node_id`.
    pub fn new(enrich: Option<Enrichment>, stats: &'a NetStats) -> Self {
        SyslogRenderer {
            scratch: Vec::with_capacity(1024),
            renderer: record::Renderer::new(record::this_year()),
            enrich,
            peer: None,
            received_ns: u64::MAX,
            stats,
        }
    }

    /// The sender of the next messages (UDP), for `client_ip`.
    pub fn set_peer(&mut self, ip: std::net::IpAddr) {
        if self.peer != Some(ip) {
            self.peer = Some(ip);
            if let Some(e) = &mut self.enrich {
                e.client_ip = ip.to_string();
                // Rendered again with the next message.
                self.received_ns = u64::MAX;
            }
        }
    }

    /// Renders `msg`, received at `timestamp_ns`; the record is valid until the next call.
    pub fn render(&mut self, msg: &[u8], timestamp_ns: u64) -> &[u8] {
        if self.received_ns != timestamp_ns {
            self.received_ns = timestamp_ns;
            self.renderer.set_year(record::this_year());
            if let Some(e) = &self.enrich {
                self.renderer.set_extra(&[
                    ("received_at", &format_ts(timestamp_ns)),
                    ("client_ip", &e.client_ip),
                    ("node_id", &e.node_id),
                ]);
            }
        }
        if self.renderer.render(msg, &mut self.scratch) == Parsed::Unparsed {
            self.stats
                .syslog_unparsed_total
                .fetch_add(1, Ordering::Relaxed);
        }
        &self.scratch
    }
}

/// Syslog over TCP: RFC 6587 frames rendered as JSON records.
#[derive(Debug)]
pub struct SyslogFraming<'a> {
    framer: SyslogFramer,
    /// Frames seen on this connection (for refusal reports).
    frame_no: u64,
    renderer: SyslogRenderer<'a>,
    stats: &'a NetStats,
}

impl<'a> SyslogFraming<'a> {
    /// A connection's framing: frames over `frame_bytes_max` are refused; with
    /// `enrich`, every record gets `received_at`, `client_ip` and `node_id`.
    pub fn new(frame_bytes_max: usize, enrich: Option<Enrichment>, stats: &'a NetStats) -> Self {
        SyslogFraming {
            framer: SyslogFramer::new(frame_bytes_max),
            frame_no: 0,
            renderer: SyslogRenderer::new(enrich, stats),
            stats,
        }
    }
}

impl Framing for SyslogFraming<'_> {
    fn frame(&mut self, input: &[u8], to: &mut Target<'_>) -> Framed {
        let mut out = Framed::default();
        loop {
            let (n, split) = self.framer.split(&input[out.consumed..]);
            match split {
                Split::Incomplete => return out,
                Split::Skipped => {}
                Split::TooLarge => {
                    self.frame_no += 1;
                    (to.rejected)(self.frame_no);
                }
                Split::Frame(msg) => {
                    let record = self.renderer.render(msg, to.timestamp_ns);
                    // A frame is consumed only once its record is in the batch, so one
                    // that does not fit is split again after the batch is handed off.
                    if !to.batch.is_empty()
                        && to.batch.bytes() + RECORD_HEADER_BYTES + record.len()
                            > to.batch_bytes_max
                    {
                        out.batch_full = true;
                        return out;
                    }
                    self.frame_no += 1;
                    if to.batch.push(to.timestamp_ns, record).is_ok() {
                        out.records += 1;
                    } else {
                        (to.rejected)(self.frame_no);
                    }
                }
            }
            out.consumed += n;
        }
    }

    fn finish(&mut self, rest: &[u8], to: &mut Target<'_>) -> u32 {
        match self.framer.finish(rest) {
            Finished::Clean => 0,
            Finished::Truncated => {
                self.stats
                    .syslog_truncated_total
                    .fetch_add(1, Ordering::Relaxed);
                0
            }
            Finished::TooLarge => {
                self.frame_no += 1;
                (to.rejected)(self.frame_no);
                0
            }
            Finished::Frame(msg) => {
                let record = self.renderer.render(msg, to.timestamp_ns);
                self.frame_no += 1;
                if to.batch.push(to.timestamp_ns, record).is_ok() {
                    1
                } else {
                    (to.rejected)(self.frame_no);
                    0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{Decoded, decode_record, stamp_offsets};

    fn payloads(b: &mut BatchBuilder) -> Vec<serde_json::Value> {
        let (mut frames, _) = b.take();
        stamp_offsets(&mut frames, 0, |_, _| {});
        let (mut pos, mut v) = (0, vec![]);
        while pos < frames.len() {
            let Decoded::Record(r) = decode_record(&frames[pos..], 1 << 20) else {
                panic!()
            };
            v.push(serde_json::from_slice(r.payload).unwrap());
            pos += r.frame_bytes();
        }
        v
    }

    #[test]
    fn syslog_frames_become_enriched_records_and_stop_at_a_full_batch() {
        let stats = NetStats::default();
        let enrich = Enrichment {
            client_ip: "10.0.0.9".into(),
            node_id: "n1".into(),
        };
        let mut f = SyslogFraming::new(1024, Some(enrich), &stats);
        let mut b = BatchBuilder::new(4096, 4096);
        let input =
            b"25 <11>1 - h app - - - first\n<14>Dec  2 10:00:00 h tag: second\nnot syslog\n";
        let mut refused = |n| panic!("refused {n}");
        let mut to = Target::new(&mut b, 1_000_000_000, 1 << 20, &mut refused);
        let r = f.frame(input, &mut to);
        assert_eq!(
            (r.records, r.consumed, r.batch_full),
            (3, input.len(), false)
        );
        let v = payloads(&mut b);
        assert_eq!(v[0]["service"], "app");
        assert_eq!(v[0]["level"], "error");
        assert_eq!(v[0]["message"], "first");
        assert_eq!(v[1]["service"], "tag");
        assert_eq!(v[1]["message"], "second");
        assert_eq!(v[2]["unparsed"], true);
        assert_eq!(v[2]["message"], "not syslog");
        for r in &v {
            assert_eq!(r["client_ip"], "10.0.0.9");
            assert_eq!(r["received_at"], "1970-01-01T00:00:01.000000Z");
        }
        assert_eq!(stats.syslog_unparsed_total.load(Ordering::Relaxed), 1);
        // A tiny batch bound: one record per batch, the rest left for the next call.
        let mut f = SyslogFraming::new(1024, None, &stats);
        let mut to = Target::new(&mut b, 1, 10, &mut refused);
        let r = f.frame(input, &mut to);
        assert_eq!((r.records, r.batch_full), (1, true));
        assert_eq!(&input[r.consumed..r.consumed + 3], b"<14");
    }

    /// A last LF frame one byte over the bound at the end of the stream is refused and
    /// reported, not stored (found by the `syslog_frame` fuzz target).
    #[test]
    fn a_last_frame_over_the_bound_is_refused_at_the_end() {
        let stats = NetStats::default();
        let mut f = SyslogFraming::new(4, None, &stats);
        let mut b = BatchBuilder::new(4096, 4096);
        let mut refused = vec![];
        let mut on_refused = |n| refused.push(n);
        let mut to = Target::new(&mut b, 1, 1 << 20, &mut on_refused);
        assert_eq!(f.frame(b"<1>ab", &mut to).consumed, 0);
        assert_eq!(f.finish(b"<1>ab", &mut to), 0);
        assert!(b.is_empty());
        assert_eq!(refused, vec![1]);
    }
}
