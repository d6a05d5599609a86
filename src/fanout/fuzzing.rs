//! The fan-out's WebSocket handshake as its loop runs it, for the `ws_handshake` fuzz
//! target (`fuzz/`), which builds a [`FanoutCtx`] over logs of its own and feeds a
//! connection's bytes through tungstenite: the real upgrade callback ([`Upgrade`],
//! what `Sub::accept` hands tungstenite), the limits the loop gives tungstenite
//! ([`ws_config`]), and the reading of a subscriber's input ([`read_incoming`]), over
//! any byte stream. Not an API.

use std::{
    io::{Read, Write},
    sync::Arc,
};

use tungstenite::{WebSocket, protocol::WebSocketConfig};

pub use super::handshake::Upgrade;
pub use super::wire::{Incoming, Violation};
use super::{FanoutCtx, handshake::Asked, query::Encoding};
use crate::config::FanoutSettings;

/// The upgrade callback for one connection over `ctx`, as the loop builds it, and a
/// view of what it asked for once it accepted.
pub fn upgrade(ctx: &Arc<FanoutCtx>) -> (Upgrade, AskedFor) {
    let (upgrade, asked) = Upgrade::new(ctx);
    (upgrade, AskedFor(asked))
}

/// What an accepted handshake asked for (`None` before, or after a refusal).
pub struct AskedFor(Asked);

/// One partition an accepted subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskedLane {
    /// Its index in [`crate::streams::StreamViews::all`].
    pub part: usize,
    /// The partition number its JSON messages carry (`None` for the default
    /// stream's partition 0 alone).
    pub tag: Option<u32>,
    /// The offset it starts at.
    pub cursor: u64,
}

impl AskedFor {
    /// The partitions followed, the current one first.
    pub fn lanes(&self) -> Option<Vec<AskedLane>> {
        let asked = self.0.borrow();
        let s = asked.as_ref()?;
        Some(
            s.lanes
                .iter()
                .map(|l| AskedLane {
                    part: l.part,
                    tag: l.tag,
                    cursor: l.cursor,
                })
                .collect(),
        )
    }

    /// Whether the subscription asked for `format=binary`.
    pub fn binary(&self) -> Option<bool> {
        Some(self.0.borrow().as_ref()?.encoding == Encoding::Binary)
    }
}

/// The limits the loop gives tungstenite for every subscriber.
pub fn ws_config(s: &FanoutSettings) -> WebSocketConfig {
    super::ws_config(s)
}

/// Reads a subscriber's input as the loop does, at most 64 messages.
pub fn read_incoming<S: Read + Write>(ws: &mut WebSocket<S>) -> Incoming {
    super::wire::read_incoming(ws)
}
