//! Reading a subscriber's input and flushing its output, without blocking the loop.

use std::{
    io::{self, Read, Write},
    time::Instant,
};

use tungstenite::{WebSocket, error::ProtocolError};

use super::transport::Transport;

/// What reading a subscriber's input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Everything available was read.
    Drained,
    /// The per-turn bound was hit with input left: read again next turn (mio is
    /// edge-triggered and will not signal it again).
    More,
    /// The peer broke the protocol or a bound: it is closed with the RFC 6455 code.
    Violation(Violation),
    /// The connection failed or was closed.
    Failed,
}

/// What a subscriber sent that ends its connection with a close frame (RFC 6455
/// section 7.4.1) rather than a bare TCP close: it is told which rule it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A message or frame over `ws_message_bytes_max`: 1009.
    TooLarge,
    /// A frame breaking the framing rules (unmasked, reserved bits or opcode, a
    /// control frame over 125 bytes or fragmented...): 1002.
    Protocol,
    /// A text message that is not UTF-8: 1007.
    NotUtf8,
}

impl Violation {
    /// The close code and reason the subscriber is sent.
    pub fn close(self) -> (u16, &'static str) {
        match self {
            Violation::TooLarge => (super::CLOSE_TOO_LARGE, "message too big"),
            Violation::Protocol => (CLOSE_PROTOCOL_ERROR, "protocol error"),
            Violation::NotUtf8 => (CLOSE_NOT_UTF8, "text message not UTF-8"),
        }
    }
}

/// Close code for a frame that breaks RFC 6455's framing.
pub(super) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message that is not UTF-8.
pub(super) const CLOSE_NOT_UTF8: u16 = 1007;

/// Reads whatever the peer sent, at most 64 messages a turn; tungstenite answers pings
/// and close frames itself. Generic over the byte stream for the fuzz target
/// ([`super::fuzzing`]); the loop's is a [`Transport`].
pub(super) fn read_incoming<S: Read + Write>(ws: &mut WebSocket<S>) -> Incoming {
    // Bounded, so that a client flooding messages cannot hold the loop.
    for _ in 0..64 {
        match ws.read() {
            Ok(_) => continue, // text/binary from a subscriber carry no meaning
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Incoming::Drained;
            }
            Err(tungstenite::Error::Capacity(_)) => {
                return Incoming::Violation(Violation::TooLarge);
            }
            Err(tungstenite::Error::Utf8(_)) => return Incoming::Violation(Violation::NotUtf8),
            // The peer closed its side without a close frame (a half-close included):
            // nobody is there to read one.
            Err(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                return Incoming::Failed;
            }
            Err(tungstenite::Error::Protocol(_)) => {
                return Incoming::Violation(Violation::Protocol);
            }
            Err(_) => return Incoming::Failed,
        }
    }
    Incoming::More
}

/// Hands queued bytes to the kernel. Tracks since when the socket refuses them;
/// returns false if the connection failed or is finished.
pub(super) fn flush(ws: &mut WebSocket<Transport>, blocked_since: &mut Option<Instant>) -> bool {
    match ws.flush() {
        Ok(()) => {
            *blocked_since = None;
            true
        }
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            blocked_since.get_or_insert_with(Instant::now);
            true
        }
        Err(_) => false,
    }
}
