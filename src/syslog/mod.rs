//! Syslog as producers send it: RFC 6587 framing over TCP ([`frame`]), RELP frames and
//! sessions ([`relp`], rsyslog's reliable transport), and RFC 5424 / RFC 3164 messages
//! turned into the JSON records the rest of ringstash filters on ([`record`]). No I/O:
//! the reactors feed bytes in and take records (and RELP answers) out.
//!
//! The byte-by-byte description, and the mapping from syslog to fields, is in
//! `docs/protocol.md` ("Syslog", "RELP").

pub mod bsd;
pub mod frame;
pub mod record;
pub mod relp;
