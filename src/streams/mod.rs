//! Streams and partitions: several logs in one process. A record belongs to a named
//! stream (its listener's, an HTTP request's `Ringstash-Stream` header, or a syslog
//! rule's); a stream of N partitions keeps N logs, and a record goes to the partition
//! its key hashes to ([`route`]). Each partition is a whole [`Log`]: its own directory
//! ([`layout`]), writer thread, ring, offsets, retention and counters. The default
//! stream's partition 0 is the data directory itself, so a server configured with no
//! streams runs exactly as a single-log server.

pub mod layout;
pub mod route;
pub mod spec;

use crate::{
    config::{ConfigError, Settings},
    wal::{Log, LogConfig, LogView},
};
pub use route::{Dest, Router, fnv1a32, partition_of};
pub use spec::{DEFAULT_STREAM, StreamSpec, StreamSpecs, SyslogRules};

/// One partition's log, with its place.
#[derive(Debug)]
pub struct Partition {
    /// Its stream's name.
    pub stream: String,
    /// Its number in the stream.
    pub partition: u32,
    /// The open log.
    pub log: Log,
}

/// Every stream's partitions, open, in the `streams` setting's order (the default
/// stream's partition 0 first). Dropping it shuts every writer down.
#[derive(Debug)]
pub struct Streams {
    specs: StreamSpecs,
    partitions: Vec<Partition>,
}

/// A read-only handle on one partition, for the stages that read (query, fan-out,
/// `/stats`, the forwarder).
#[derive(Debug, Clone)]
pub struct PartitionView {
    /// Its stream's name.
    pub stream: String,
    /// Its number in the stream.
    pub partition: u32,
    /// The log, read-only.
    pub log: LogView,
}

/// Memory one partition's log may hold at most, in bytes, for the
/// `streams_memory_bytes_max` check: its recent groups; the buffers kept for reuse
/// (`wal::recent`: as much again, or four group buffers where that is more); and its
/// group buffers (`groups_in_flight_max` in flight and one being gathered).
pub fn partition_memory_bytes(config: &LogConfig) -> u64 {
    let (recent, group) = (
        config.recent_bytes_max as u64,
        config.group_bytes_max as u64,
    );
    let kept = recent.max(crate::wal::REUSABLE_BUFFERS_MIN as u64 * group);
    recent + kept + (config.groups_in_flight_max as u64 + 1) * group
}

/// The log settings of `stream`'s partition `partition`.
pub fn partition_config(
    settings: &Settings,
    spec: &StreamSpec,
    partition: u32,
    writer_core: Option<usize>,
) -> LogConfig {
    let mut c = settings.log_config(writer_core);
    c.dir = layout::partition_dir(&settings.data_dir, &spec.name, partition);
    if !(spec.name == DEFAULT_STREAM && partition == 0) {
        // The fan-out's windows follow the default stream's partition 0, which keeps
        // as much as they hold; other partitions' live readers are the subscribers
        // and forwarders that follow them.
        c.recent_bytes_max = settings.partition_recent_bytes_max;
    }
    if let Some(b) = spec.retention_bytes_max {
        c.retention_bytes_max = b;
    }
    if let Some(ms) = spec.retention_ms {
        c.retention_ms = ms;
    }
    c
}

/// Checks that the streams settings hold together (run by `Settings::validate`).
///
/// # Errors
/// [`ConfigError::Streams`] naming the setting and what is wrong.
pub fn check(settings: &Settings) -> Result<(), ConfigError> {
    let specs = &settings.streams;
    let err = |name: &'static str, why: String| Err(ConfigError::Streams { name, why });
    if specs.0.len() > settings.streams_max {
        return err(
            "streams",
            format!(
                "{} streams (the default one included) exceed streams_max = {}",
                specs.0.len(),
                settings.streams_max
            ),
        );
    }
    for s in &specs.0 {
        if s.partitions > settings.stream_partitions_max {
            return err(
                "streams",
                format!(
                    "stream {:?} asks for {} partitions; stream_partitions_max = {}",
                    s.name, s.partitions, settings.stream_partitions_max
                ),
            );
        }
    }
    for (name, stream) in [
        ("tcp_stream", &settings.tcp_stream),
        ("tcp_acked_stream", &settings.tcp_acked_stream),
        ("syslog_stream", &settings.syslog_stream),
        ("relp_stream", &settings.relp_stream),
        ("http_stream", &settings.http_stream),
    ] {
        if specs.find(stream).is_none() {
            return err(
                name,
                format!("{stream:?} is not a stream (streams: {})", names(specs)),
            );
        }
    }
    for r in &settings.syslog_stream_rules.0 {
        if specs.find(&r.stream).is_none() {
            return err(
                "syslog_stream_rules",
                format!("{:?} is not a stream (streams: {})", r.stream, names(specs)),
            );
        }
    }
    let mut memory = 0u64;
    for s in &specs.0 {
        for p in 0..s.partitions {
            memory += partition_memory_bytes(&partition_config(settings, s, p, None));
        }
    }
    if memory > settings.streams_memory_bytes_max {
        return err(
            "streams_memory_bytes_max",
            format!(
                "{} partitions may hold {memory} bytes (recent groups, buffers kept for reuse and group buffers), over streams_memory_bytes_max = {}; lower partition_recent_bytes_max, group_bytes_max, groups_in_flight_max or the partitions",
                specs.partitions_total(),
                settings.streams_memory_bytes_max
            ),
        );
    }
    Ok(())
}

fn names(specs: &StreamSpecs) -> String {
    specs
        .0
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Streams {
    /// Opens (and recovers) every partition of every stream, after checking each
    /// stream's partition count against the one on disk. The default stream's
    /// partition 0 opens first, so a second server on the same data directory stops
    /// at its lock before opening any other partition.
    ///
    /// # Errors
    /// A changed partition count, or any partition's [`Log::open`] error, naming its
    /// directory.
    pub fn open(settings: &Settings, writer_core: Option<usize>) -> anyhow::Result<Streams> {
        use anyhow::Context;
        let mut partitions = Vec::new();
        for s in &settings.streams.0 {
            for p in 0..s.partitions {
                let config = partition_config(settings, s, p, writer_core);
                let dir = config.dir.clone();
                if s.name == DEFAULT_STREAM && p == 0 {
                    // Before the open, which creates a first segment (after which a
                    // new directory would look like one from before streams). It
                    // writes only where no count file exists yet: no server has run
                    // here with streams, so there is nothing a second one could upset.
                    let on_disk = layout::partitions_on_disk(&settings.data_dir, &s.name)?;
                    layout::settle_partitions(&settings.data_dir, &s.name, on_disk, s.partitions)?;
                    let log = Log::open(config)
                        .with_context(|| format!("opening the log in {}", dir.display()))?;
                    // Again under the lock: a second server started at the same moment
                    // on a new directory may have written its count first.
                    let now = layout::partitions_on_disk(&settings.data_dir, &s.name)?;
                    layout::settle_partitions(&settings.data_dir, &s.name, now, s.partitions)?;
                    partitions.push(Partition {
                        stream: s.name.clone(),
                        partition: p,
                        log,
                    });
                    continue;
                }
                if p == 0 {
                    let on_disk = layout::partitions_on_disk(&settings.data_dir, &s.name)?;
                    layout::settle_partitions(&settings.data_dir, &s.name, on_disk, s.partitions)?;
                }
                let log = Log::open(config).with_context(|| {
                    format!(
                        "opening stream {:?} partition {p} in {}",
                        s.name,
                        dir.display()
                    )
                })?;
                partitions.push(Partition {
                    stream: s.name.clone(),
                    partition: p,
                    log,
                });
            }
        }
        Ok(Streams {
            specs: settings.streams.clone(),
            partitions,
        })
    }

    /// The default stream's partition 0: the log a single-log server has.
    pub fn default_log(&self) -> &Log {
        &self.partitions[0].log
    }

    /// Every partition, stream by stream.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Read-only views of every partition, in the same order.
    pub fn views(&self) -> Vec<PartitionView> {
        self.partitions
            .iter()
            .map(|p| PartitionView {
                stream: p.stream.clone(),
                partition: p.partition,
                log: p.log.view(),
            })
            .collect()
    }

    /// The router over every partition's appender.
    pub fn router(&self, rules: &SyslogRules) -> Router {
        Router::new(
            &self.specs,
            rules,
            self.partitions.iter().map(|p| p.log.appender()).collect(),
        )
    }

    /// Stops every writer (each writes and syncs what it took). Idempotent.
    pub fn shutdown(&self) {
        for p in &self.partitions {
            p.log.shutdown();
        }
    }
}

/// Read-only views of the streams, for the read API and the fan-out: a partition by
/// stream name and number.
#[derive(Debug, Clone)]
pub struct StreamViews {
    specs: StreamSpecs,
    views: Vec<PartitionView>,
}

impl StreamViews {
    /// The views of `streams`.
    pub fn of(streams: &Streams) -> StreamViews {
        StreamViews {
            specs: streams.specs.clone(),
            views: streams.views(),
        }
    }

    /// The partitions of `stream`, in order; `None` for an unknown stream.
    pub fn stream(&self, stream: &str) -> Option<&[PartitionView]> {
        let start = self.views.iter().position(|v| v.stream == stream)?;
        let n = self.specs.find(stream)?.1.partitions as usize;
        Some(&self.views[start..start + n])
    }

    /// Every partition.
    pub fn all(&self) -> &[PartitionView] {
        &self.views
    }

    /// The streams' settings.
    pub fn specs(&self) -> &StreamSpecs {
        &self.specs
    }
}
