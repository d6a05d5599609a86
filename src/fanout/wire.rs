//! Reading a subscriber's input and flushing its output, without blocking the loop.

use std::{io, time::Instant};

use tungstenite::WebSocket;

use super::handshake::Shared;

/// What reading a subscriber's input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Incoming {
    /// Everything available was read.
    Drained,
    /// The per-turn bound was hit with input left: read again next turn (mio is
    /// edge-triggered and will not signal it again).
    More,
    /// The peer sent a message over `ws_message_bytes_max`.
    TooLarge,
    /// The connection failed or was closed.
    Failed,
}

/// Reads whatever the peer sent, at most 64 messages a turn; tungstenite answers pings
/// and close frames itself.
pub(super) fn read_incoming(ws: &mut WebSocket<Shared>) -> Incoming {
    // Bounded, so that a client flooding messages cannot hold the loop.
    for _ in 0..64 {
        match ws.read() {
            Ok(_) => continue, // text/binary from a subscriber carry no meaning
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Incoming::Drained;
            }
            Err(tungstenite::Error::Capacity(_)) => return Incoming::TooLarge,
            Err(_) => return Incoming::Failed,
        }
    }
    Incoming::More
}

/// Hands queued bytes to the kernel. Tracks since when the socket refuses them;
/// returns false if the connection failed or is finished.
pub(super) fn flush(ws: &mut WebSocket<Shared>, blocked_since: &mut Option<Instant>) -> bool {
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
