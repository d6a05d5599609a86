//! The fuzz targets, one per parser family. Each takes arbitrary bytes, uses the first
//! few as parameters (bounds, read sizes, the media type) where the parser has any,
//! feeds the rest as a connection or a request would, and asserts the parser's
//! promises. A failed assertion is a finding, exactly as a panic inside the parser is.

mod http_head;
mod lines;
mod logs_body;
mod query;
mod record_decode;
mod relp;
mod syslog_frame;
mod ws_handshake;

pub use http_head::http_head;
pub use lines::lines;
pub use logs_body::logs_body;
pub use query::query;
pub use record_decode::record_decode;
pub use relp::relp;
pub use syslog_frame::syslog_frame;
pub use ws_handshake::{ws_handshake, ws_handshake_setup};
