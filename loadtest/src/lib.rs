//! `loadtest`: the load-test harness of ringstash, usable against any newline-TCP or
//! HTTP log receiver.
//!
//! # Layout
//!
//! | stage | module | what it is |
//! |-------|--------|------------|
//! | records | [`workload`] | seeded workload generator: realistic text / JSON log records of a chosen size, built once into a corpus |
//! | schedule | [`pace`] | open-loop intended send times (the base of coordinated-omission correction) |
//! | wire | [`engine`] | worker threads with `mio` poll loops: batch → one `write`, completion by write, ack or response |
//! | wire, encrypted | [`tls`] | `run --tls-ca`: the rustls client configuration, the handshake after connect, plaintext in and out of rustls over the engine's non-blocking sockets |
//! | time | [`clock`] | the monotonic clock all stages share (`mono_ns`) and the `timerfd` that wakes the poll loops; depends on nothing |
//! | end to end | [`e2e`] | `ws-e2e`: WebSocket subscribers that check exactly-once delivery and time send → receipt |
//! | parsing | [`proto`] | allocation-free parsing of ringstash ack lines and HTTP responses |
//! | numbers | [`stats`], [`series`], [`report`] | HdrHistograms and counters; the per-second time series; table, JSON, `.hgrm` and SVG plot output |
//! | crash soak | [`killloop`] | `loadtest kill-loop`: SIGKILL `ringstash serve` at random moments under acked TCP and HTTP load, check every acked record exactly (`soak/kill-loop.sh`) |
//! | disk | [`floor`] | `loadtest floor`: the ack latency an ideal durable writer gets from the disk at a load (the bar for a server's) |
//! | server | [`procstat`] | the server's CPU and resident memory from `/proc/<pid>` |
//! | glue | [`cli`], [`runner`] | command line and the `run` command; [`sink`] is a counting receiver for loopback runs and tests |
//!
//! `compare.sh` next to the crate drives ringstash and its peers (rsyslog, syslog-ng)
//! with identical load and measures the physical limits (fio, loopback) in the same run.
//! `fanout-bench.sh` measures what WebSocket subscribers cost producers and the
//! end-to-end latency through the fan-out (`ws-e2e` mode).

#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod e2e;
pub mod engine;
pub mod floor;
pub mod killloop;
pub mod pace;
pub mod procstat;
pub mod proto;
pub mod report;
pub mod runner;
pub mod series;
pub mod sink;
pub mod stats;
pub mod tls;
pub mod workload;
