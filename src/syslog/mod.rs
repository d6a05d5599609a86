//! Syslog as producers send it: RFC 6587 framing over TCP ([`frame`]) and RFC 5424 /
//! RFC 3164 messages turned into the JSON records the rest of ringstash filters on
//! ([`record`]). No I/O: the reactors feed bytes in and take records out.
//!
//! The byte-by-byte description, and the mapping from syslog to fields, is in
//! `docs/protocol.md` ("Syslog").

pub mod frame;
pub mod record;
