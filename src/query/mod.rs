//! The query layer, below both the ingest side (`GET /v1/logs` on the reactors) and the
//! fan-out core (subscriptions): filters and their query-string syntax ([`filter`]),
//! the JSON rendering of records and messages ([`render`]), the one bounded filtered
//! scan over a reader ([`scan`]) and the read API over a [`crate::wal::LogView`]
//! ([`read`]). It holds no state and counts nothing: its callers do, each in its own
//! counters, so it can be used by any stage without reaching into another.

pub mod filter;
pub mod read;
pub mod render;
pub mod scan;

/// The WebSocket path of subscriptions.
pub const STREAM_PATH: &str = "/v1/stream";
