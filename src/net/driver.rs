//! What every connection driver ([`tcp`](super::tcp), [`http`](super::http),
//! [`relp`](super::relp)) is built from: each serves one socket on a reactor's
//! runtime (tokio-uring's or, under the epoll driver, tokio's), registers it (for shutdown), times it out, pushes batches into
//! the ring and awaits their completions. One list, imported whole (`use
//! super::driver::*`), so the drivers name these parts alike.

pub(super) use std::{
    cell::Cell,
    net::SocketAddr,
    os::fd::AsRawFd,
    rc::Rc,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

pub(super) use tokio::task::spawn_local;

pub(super) use super::{
    NetCtx,
    conn::{self, ConnGuard, PushFail, Registry},
    limits::SourceGuard,
    socket::Stream,
};
pub(super) use crate::wal::{self, BatchBuilder};
