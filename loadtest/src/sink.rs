//! A minimal receiver for loopback bandwidth runs and for testing the harness
//! without a real server: it counts lines and, if asked, answers like ringstash
//! (cumulative `ack` lines, or HTTP `200 {"count":N,...}`), without storing anything.
//!
//! It can be paused (stops reading, as a stalled server would) to show coordinated
//! omission correction.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// What the sink sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkReply {
    /// Nothing: a discard server.
    None,
    /// `ack <count> <count-1>` after every read that completed lines, a final ack on EOF.
    Ack,
    /// HTTP/1.1: parses `Content-Length` requests, answers `200` with a JSON count.
    Http,
}

/// A running sink. Its threads live as long as the process.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// While true, connections stop reading (the kernel's buffers fill and push back).
    pub paused: Arc<AtomicBool>,
    /// Lines (records) received, all connections (not counted by a discard sink).
    pub lines: Arc<AtomicU64>,
    /// Bytes received, all connections.
    pub bytes: Arc<AtomicU64>,
}

impl Sink {
    /// Listens on `addr` (port 0 picks a free port) and serves in background threads.
    ///
    /// # Errors
    /// The bind failed.
    pub fn start(addr: SocketAddr, reply: SinkReply) -> io::Result<Sink> {
        let listener = TcpListener::bind(addr)?;
        let sink = Sink {
            addr: listener.local_addr()?,
            paused: Arc::new(AtomicBool::new(false)),
            lines: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
        };
        let s = sink.clone();
        std::thread::Builder::new()
            .name("sink-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    let _ = std::thread::Builder::new()
                        .name("sink-conn".into())
                        .spawn(move || {
                            let _ = s.serve(conn, reply);
                        });
                }
            })?;
        Ok(sink)
    }

    fn wait_unpaused(&self) {
        // Relaxed: a test knob; a few microseconds of staleness do not matter.
        while self.paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn serve(&self, mut conn: TcpStream, reply: SinkReply) -> io::Result<()> {
        conn.set_nodelay(true)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut count: u64 = 0;
        let mut out = Vec::with_capacity(64);
        let mut pending: Vec<u8> = Vec::new();
        let mut partial = false;
        loop {
            self.wait_unpaused();
            let n = conn.read(&mut buf)?;
            if n == 0 {
                if reply == SinkReply::Ack {
                    // A last line without `\n` is a record too, as in ringstash.
                    if partial {
                        count += 1;
                        self.lines.fetch_add(1, Ordering::Relaxed);
                    }
                    if count > 0 {
                        out.clear();
                        let _ = writeln!(out, "ack {count} {}", count - 1);
                        conn.write_all(&out)?;
                    }
                }
                return Ok(());
            }
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            match reply {
                // A discard sink only counts bytes: it measures the loopback, not
                // a newline scan.
                SinkReply::None => {}
                SinkReply::Ack => {
                    let data = &buf[..n];
                    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
                    count += lines;
                    self.lines.fetch_add(lines, Ordering::Relaxed);
                    // A partial line is outstanding iff the last byte is not `\n`.
                    partial = data.last() != Some(&b'\n');
                    if lines > 0 {
                        out.clear();
                        let _ = writeln!(out, "ack {count} {}", count - 1);
                        conn.write_all(&out)?;
                    }
                }
                SinkReply::Http => {
                    pending.extend_from_slice(&buf[..n]);
                    self.answer_http(&mut conn, &mut pending, &mut count)?;
                }
            }
        }
    }

    /// Answers every whole request in `pending` (and removes it) with ringstash's
    /// `200 {"count":N,...}`; `count` is the records so far on this connection.
    fn answer_http(
        &self,
        conn: &mut TcpStream,
        pending: &mut Vec<u8>,
        count: &mut u64,
    ) -> io::Result<()> {
        while let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = head_end + 4 + len;
            if pending.len() < total {
                break;
            }
            let records = body_records(&pending[head_end + 4..total]);
            self.lines.fetch_add(records, Ordering::Relaxed);
            let first = *count;
            *count += records;
            let json = if records > 0 {
                format!(
                    "{{\"count\":{records},\"first_offset\":{first},\"last_offset\":{}}}",
                    *count - 1
                )
            } else {
                "{\"count\":0,\"first_offset\":null,\"last_offset\":null}".to_owned()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            );
            conn.write_all(resp.as_bytes())?;
            pending.drain(..total);
        }
        Ok(())
    }
}

/// Records in a request body: objects of a JSON array, else lines.
fn body_records(body: &[u8]) -> u64 {
    if body.first() == Some(&b'[') {
        if body.len() > 2 {
            body.windows(2).filter(|w| w == b"},").count() as u64 + 1
        } else {
            0
        }
    } else {
        body.iter().filter(|&&b| b == b'\n').count() as u64
    }
}
