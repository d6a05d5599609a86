//! ringstash: a lock-free, io_uring log-ingest appliance.
//!
//! # Layout
//!
//! The modules follow the data path of a record:
//!
//! | stage | module | what it is |
//! |-------|--------|------------|
//! | framing | [`wal::format`] | the record frame and batch builder: producers frame and checksum records on their own core |
//! | hand-off | [`ring`] | the bounded lock-free MPSC ring of batches, producers → writer; full = backpressure |
//! | commit | `wal::writer` | the group-commit writer thread: gather → write → fdatasync via io_uring, then complete |
//! | storage | [`wal::segment`], [`wal::recovery`], [`wal::timeindex`] | segment files, sparse index, time index, recovery of a torn tail |
//! | read | [`wal::reader`], [`wal::check`] | cursors over committed records; full verification |
//! | ingest | [`net`] | pinned reactors (tokio-uring, SO_REUSEPORT): raw TCP lines, syslog, RELP and HTTP, framed by sans-I/O [`net::lines`], [`syslog`] (RFC 6587 frames, RELP sessions, messages to records) and [`http_proto`], acked by [`net::acks`] (RELP: [`net::relp`]); `POST /v1/logs` bodies read by sans-I/O [`net::logs_body`] and [`net::otlp`] (OpenTelemetry logs) |
//! | query | [`query`] | below ingest and fan-out: filters, JSON rendering, the one bounded scan, the read API over a read-only [`wal::LogView`] |
//! | HTTP wire | [`http_proto`] | below ingest and fan-out: HTTP/1.1 request heads, chunked bodies, responses and refusals, as sans-I/O state machines |
//! | fan-out | [`fanout`] | the pinned fan-out core (mio): committed records to WebSocket subscribers, each a cursor; live from an in-memory window, catch-up from the segment files; filters; the dashboard page |
//! | forward | [`forward`] | the `rs-forward` thread (its own tokio runtime): each partition's committed records published into NATS JetStream in order, at least once, from a durable cursor |
//! | tokens | [`auth`] | bearer tokens with scopes on the HTTP and WebSocket listeners: hashed entries, constant-time lookup, reloaded on SIGHUP |
//! | TLS | [`tls`] | the listeners' rustls configurations from the certificate files, reloaded on SIGHUP |
//! | serve | [`serve`], [`config`], [`stats`] | placement, start-up and shutdown; settings; `/stats` and `/metrics` |
//! | tools | [`cli`] | `cat`, `check`, `append` |
//!
//! [`wal::Log`] is the storage contract: what append, sync, rotate, read and recover
//! guarantee is written on it.

#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod fanout;
pub mod forward;
pub mod histogram;
pub mod http_proto;
pub mod net;
pub mod query;
pub mod ring;
pub mod serve;
pub mod stats;
pub mod streams;
pub mod syslog;
pub mod tls;
pub mod wal;

/// Golden files for tests: an interface's rendering checked against a committed copy.
#[cfg(test)]
pub(crate) fn assert_golden(relative_path: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative_path);
    if std::env::var_os("RINGSTASH_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "{relative_path} is stale; bless an intended change with RINGSTASH_BLESS=1"
    );
}
