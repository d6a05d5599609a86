//! Typed errors at the library's boundaries, one enum per stage.
//!
//! Each carries the operation, the path and, where there is one, the offset, so the
//! message a user sees names what failed and where. `anyhow` is used only in the binary.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

/// The `serve` settings cannot be used: the file is unreadable or malformed, or a
/// setting is out of its bounds. Each message names the setting (or the file) and
/// what is allowed; the binary prints it as it is and exits 1.
///
/// The file's errors carry their cause in the message rather than as a `source`, so
/// that the message is the same however it is printed (`{e}` or anyhow's `{e:#}`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The settings file cannot be read.
    #[error("reading {}: {error}", path.display())]
    Read {
        /// The file given with `--config`.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The settings file is not a valid settings table: bad TOML, an unknown key (they
    /// are refused, so a typo is not silently ignored) or a value of the wrong form.
    #[error("{}: {error}", path.display())]
    Toml {
        /// The file given with `--config`.
        path: PathBuf,
        /// What the parser found, with the line and column.
        error: toml::de::Error,
    },
    /// A setting is outside the range its row in the table gives.
    #[error("{key} = {value} is outside {lo}..={hi}")]
    OutOfRange {
        /// The setting's name, as in the file.
        key: &'static str,
        /// Its value.
        value: String,
        /// The smallest value allowed.
        lo: String,
        /// The largest value allowed.
        hi: String,
    },
    /// A setting's value has the wrong form for what it names.
    #[error("{key} = {value:?}: {why}")]
    Invalid {
        /// The setting's name, as in the file.
        key: &'static str,
        /// Its value.
        value: String,
        /// The form it must have.
        why: &'static str,
    },
    /// Two listeners would share one address (a port of 0 excepted).
    #[error("{first} and {second} are the same address ({addr})")]
    AddrShared {
        /// The first setting, in the table's order.
        first: &'static str,
        /// The second.
        second: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// The streams settings do not hold together: a listener or rule naming an unknown
    /// stream, more streams or partitions than allowed, or more memory than allowed.
    #[error("invalid setting {name}: {why}")]
    Streams {
        /// The setting's name, as in the config file.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A setting of the log's is out of its bounds ([`OpenError::Setting`], from the
    /// log's own check, so the bounds are written once, in the log).
    #[error(transparent)]
    Log(#[from] OpenError),
}

/// Opening (and recovering) a log failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "open segment".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A setting is out of its allowed range.
    #[error("invalid setting {name}: {why}")]
    Setting {
        /// The setting's name, as in the config file.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// io_uring cannot be used on this host; the text names the cause.
    #[error(
        "io_uring is unavailable (io_driver = \"uring\" asks for it; \"auto\" would run the epoll driver): {0}"
    )]
    UringUnavailable(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another ringstash process (lock held on .lock)")]
    Locked(PathBuf),
    /// Sealed data failed verification; recovery refuses to guess.
    #[error(transparent)]
    Corrupt(Corruption),
}

/// Where and why a record (or a segment header) that must be valid failed its checks:
/// what recovery refuses to open past and a reader refuses to read past.
#[derive(Debug, thiserror::Error)]
#[error("segment {path} is corrupt at byte {position} (expected offset {offset}): {reason}")]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the bad record.
    pub position: u64,
    /// The offset the record should have had.
    pub offset: u64,
    /// What the check found.
    pub reason: String,
}

impl OpenError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        OpenError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why an appended batch was not made durable. The batch's records were not
/// acknowledged and will not be served to readers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The file system is out of space. The log was truncated back to its last good
    /// position and keeps accepting batches; they succeed once space returns.
    #[error("disk full: {0}")]
    DiskFull(Arc<str>),
    /// A write failed for another reason; the log was truncated back and continues.
    #[error("write failed: {0}")]
    Write(Arc<str>),
    /// The writer stopped for good (a failed fdatasync, or a failed truncate after a
    /// failed write): the state of the page cache is unknown, so nothing after this
    /// point is acknowledged. Restart to recover from what is on disk.
    #[error("log writer stopped: {0}")]
    Failed(Arc<str>),
    /// The log is shutting down and takes no new batches.
    #[error("log is shutting down")]
    Closed,
    /// The buffer is not a whole number of well-formed frames, or holds a different
    /// number of records than declared: refused before it reaches the writer.
    #[error("malformed batch: {0}")]
    MalformedBatch(String),
    /// The batch is larger than `group_bytes_max` and can never be written in one group.
    #[error("batch of {bytes} bytes exceeds group_bytes_max ({max} bytes)")]
    BatchTooLarge {
        /// The batch's framed size.
        bytes: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl AppendError {
    /// The code the wire protocols name this refusal with (an HTTP error body's
    /// `error`, a TCP `error` line's code): one mapping for every listener.
    pub fn code(&self) -> &'static str {
        match self {
            AppendError::DiskFull(_) => "disk_full",
            AppendError::Closed => "shutting_down",
            AppendError::BatchTooLarge { .. } => "payload_too_large",
            AppendError::Write(_) => "write_failed",
            AppendError::MalformedBatch(_) => "internal",
            AppendError::Failed(_) => "log_failed",
        }
    }

    /// The detail a client is shown beside the code, with the log's directory
    /// (`data_dir`) taken out of its paths ([`without_dir`]): the client learns what
    /// failed and in which file, not where on the host the data lives. The server's
    /// own log keeps the whole message.
    pub fn detail(&self, data_dir: &Path) -> String {
        let text = match self {
            AppendError::DiskFull(d) | AppendError::Write(d) | AppendError::Failed(d) => {
                d.to_string()
            }
            AppendError::Closed => "the server is shutting down".into(),
            other => other.to_string(),
        };
        without_dir(&text, data_dir)
    }
}

/// `text` with `dir` taken out of the paths in it: a path under `dir` is given relative
/// to it, and `dir` itself as `<data_dir>`. For messages sent to clients (error
/// bodies, error lines), which must not show the server's paths.
pub fn without_dir(text: &str, dir: &Path) -> String {
    let dir = dir.display().to_string();
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return text.to_owned();
    }
    text.replace(&format!("{dir}/"), "")
        .replace(dir, "<data_dir>")
}

/// Reading records failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A record that should be there failed its checks.
    #[error(transparent)]
    Corrupt(Corruption),
}

impl ReadError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ReadError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
