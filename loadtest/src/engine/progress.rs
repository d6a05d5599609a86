//! What the caller sees while the engine runs: counters the workers bump as batches
//! complete, and the hooks [`super::run`] calls from the main thread.

use std::{sync::atomic::AtomicU64, time::Duration};

/// Counters the workers update as they go, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records completed successfully (warm-up included).
    pub records: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
}

/// Hooks the caller gets while the engine runs (server sampling, progress).
pub trait Observer {
    /// The warm-up is over; measurement starts now.
    fn measure_start(&mut self) {}
    /// Called about every 100 ms while the workers run.
    fn tick(&mut self, _progress: &Progress, _elapsed: Duration) {}
    /// All workers finished.
    fn finished(&mut self) {}
}

/// An [`Observer`] that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}
