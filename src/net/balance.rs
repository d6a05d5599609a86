//! Spreading connections evenly over the reactors.
//!
//! Every reactor has its own `SO_REUSEPORT` listeners, and the kernel picks one for
//! each new connection by a hash of its addresses: even over many connections, a coin
//! toss over a few. Four producer connections land on one of two reactors in one case
//! of eight, two share one in one case of two, and a reactor is one core: a producer
//! (or a pair of forwarders) would then be served by half the machine, the other core
//! idle. So the reactor that accepts a connection keeps it only if no reactor serves
//! fewer connections than it does; otherwise it hands the connection, admitted and
//! before any byte is read or its TLS handshake begins, to the reactor serving the
//! fewest. The counts are of connections being served (any listener), kept by
//! [`Load`] guards, and read without a lock: two reactors accepting at once may both
//! pick the same one, which the next connections even out.
//!
//! The queues between reactors hold admitted connections only, so `connections_max`
//! bounds them; a handed connection is counted on its new reactor from the moment it
//! is queued, so a burst of accepts spreads instead of following one stale count.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{limits::SourceGuard, reactor::Kind};
use crate::stats::NetGauges;

/// Connections being served, per reactor: what placement reads and `/stats` shows.
pub type Loads = Arc<[AtomicUsize]>;

/// The reactors' loads and the queues that hand connections between them.
#[derive(Debug)]
pub struct Balance {
    loads: Loads,
    queues: Vec<UnboundedSender<Handoff>>,
}

/// A connection on its way to another reactor: accepted and admitted there already.
#[derive(Debug)]
pub struct Handoff {
    /// The listener it came in on.
    pub kind: Kind,
    /// The socket, out of the accepting reactor's runtime.
    pub stream: std::net::TcpStream,
    /// Its peer.
    pub peer: SocketAddr,
    /// Its admission under `connections_per_ip_max`.
    pub source: SourceGuard,
    /// Its count on the reactor it goes to.
    pub load: Load,
    /// Its slot under `connections_max`, given back if it is never served.
    pub admitted: Admitted,
}

/// A connection's slot under `connections_max` (`conn::admit` counted it in
/// `connections_open`) while no guard of `conn` holds it yet, that is while it travels
/// between reactors: dropped on the way (a reactor could not take the socket), it gives
/// the slot back, so a lost hand-over neither lowers the limit nor keeps a drain
/// waiting for a connection that is not there.
#[derive(Debug)]
pub struct Admitted(Option<Arc<NetGauges>>);

impl Admitted {
    /// The slot `conn::admit` just took.
    pub fn new(gauges: &Arc<NetGauges>) -> Admitted {
        Admitted(Some(gauges.clone()))
    }

    /// The connection is being served: its `conn` guard gives the slot back.
    pub fn served(mut self) {
        self.0 = None;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.connections_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One connection counted on one reactor, until dropped.
#[derive(Debug)]
pub struct Load {
    loads: Loads,
    reactor: usize,
}

impl Load {
    fn new(loads: &Loads, reactor: usize) -> Load {
        // Relaxed: a placement hint, ordered with nothing.
        loads[reactor].fetch_add(1, Ordering::Relaxed);
        Load {
            loads: loads.clone(),
            reactor,
        }
    }

    /// The reactor the connection is counted on.
    pub fn reactor(&self) -> usize {
        self.reactor
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.loads[self.reactor].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balance {
    /// For `reactors` reactors: the balance, and each reactor's end of its queue.
    pub fn new(reactors: usize) -> (Balance, Vec<UnboundedReceiver<Handoff>>) {
        assert!(reactors > 0, "at least one reactor");
        let (queues, receivers) = (0..reactors).map(|_| unbounded_channel()).unzip();
        let loads = (0..reactors).map(|_| AtomicUsize::new(0)).collect();
        (Balance { loads, queues }, receivers)
    }

    /// The counts, for `/stats` and `/metrics`.
    pub fn loads(&self) -> Loads {
        self.loads.clone()
    }

    /// Where a connection reactor `me` accepted is served, counted there: `me` unless
    /// another reactor serves fewer (then the one serving fewest, the lowest first).
    pub fn place(&self, me: usize) -> Load {
        let count = |r: usize| self.loads[r].load(Ordering::Relaxed);
        let least = (0..self.loads.len())
            .min_by_key(|&r| count(r))
            .expect("at least one reactor");
        let to = if count(least) < count(me) { least } else { me };
        Load::new(&self.loads, to)
    }

    /// Counts a connection on `me` itself (one whose hand-off failed).
    pub fn keep(&self, me: usize) -> Load {
        Load::new(&self.loads, me)
    }

    /// Queues `h` for the reactor its load names; gives it back if that reactor has
    /// stopped taking connections (it is shutting down).
    pub fn hand_over(&self, h: Handoff) -> Result<(), Box<Handoff>> {
        let to = h.load.reactor;
        self.queues[to].send(h).map_err(|e| Box::new(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reactor_keeps_a_connection_unless_another_serves_fewer() {
        let (b, _rx) = Balance::new(3);
        let counts = |b: &Balance| -> Vec<usize> {
            b.loads()
                .iter()
                .map(|l| l.load(Ordering::Relaxed))
                .collect()
        };
        // Reactor 1 accepts everything, as an unlucky hash would have it.
        let held: Vec<Load> = (0..7).map(|_| b.place(1)).collect();
        assert_eq!(counts(&b), [2, 3, 2]);
        assert_eq!(
            held.iter().map(Load::reactor).collect::<Vec<_>>(),
            [1, 0, 2, 1, 0, 2, 1]
        );
        drop(held);
        assert_eq!(counts(&b), [0, 0, 0]);
    }
}
