//! Where each stream's partitions live in the data directory, and the record of how
//! many partitions a stream was created with.
//!
//! ```text
//! data_dir/                      the default stream's partition 0 (a single-log server's layout)
//! data_dir/default/partitions    "1\n": the default stream's partition count
//! data_dir/default/1/ ...        the default stream's partitions 1..N-1, if any
//! data_dir/<stream>/partitions   "<N>\n"
//! data_dir/<stream>/<k>/         partition k (0..N-1): segments, indexes, as data_dir holds
//! ```
//!
//! The count is fixed when a stream's directory is created: the partition of a key is
//! `fnv1a32(key) mod N`, so a different N would put a key's next records in another
//! partition than its earlier ones, and order per key would be lost. A changed count
//! is refused at start, naming both numbers.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::spec::DEFAULT_STREAM;

/// The name of the file holding a stream's partition count, in `data_dir/<stream>/`.
pub const PARTITIONS_FILE: &str = "partitions";

/// The directory of `stream`'s partition `partition`.
pub fn partition_dir(data_dir: &Path, stream: &str, partition: u32) -> PathBuf {
    if stream == DEFAULT_STREAM && partition == 0 {
        data_dir.to_path_buf()
    } else {
        data_dir.join(stream).join(partition.to_string())
    }
}

/// Why a stream's directory cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The configured count differs from the one the stream was created with.
    #[error(
        "stream {stream:?} was created with {on_disk} partition(s) ({}), but the settings ask for {configured}: a key's partition is fnv1a32(key) mod N, so changing N would split each key's records over two partitions; keep partitions={on_disk}, or give the new layout a new stream name",
        file.display()
    )]
    PartitionsChanged {
        /// The stream.
        stream: String,
        /// The count on disk.
        on_disk: u32,
        /// The count in the settings.
        configured: u32,
        /// The file holding the count.
        file: PathBuf,
    },
    /// The count file is not a number.
    #[error("{}: not a partition count ({content:?})", file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The count file is missing but partition directories exist: it was lost, and
    /// the count they were created with is not known.
    #[error(
        "{} holds partition directories but no partition count file ({}): restore it (the count the stream was created with, then a line feed) before starting",
        dir.display(), PARTITIONS_FILE
    )]
    CountLost {
        /// The stream's directory.
        dir: PathBuf,
    },
    /// Creating the stream's directory (and syncing its parents) failed.
    #[error(transparent)]
    Create(#[from] crate::error::OpenError),
    /// An I/O error, with the path.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |error| LayoutError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The partition count `stream` was created with, if its directory exists: its count
/// file, or for the default stream of a data directory from before streams (segments,
/// no count file) 1. `None` for a stream not created yet.
///
/// Read before the default stream's partition 0 is opened: opening creates its first
/// segment, after which a new directory would look like one from before streams.
///
/// # Errors
/// A count file that is not a number, or an I/O error, with the path.
pub fn partitions_on_disk(data_dir: &Path, stream: &str) -> Result<Option<u32>, LayoutError> {
    let file = data_dir.join(stream).join(PARTITIONS_FILE);
    match fs::read_to_string(&file) {
        Ok(s) => Ok(Some(s.trim().parse::<u32>().map_err(|_| {
            LayoutError::Unreadable {
                file: file.clone(),
                content: s.chars().take(64).collect(),
            }
        })?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = data_dir.join(stream);
            let partition_dirs = match fs::read_dir(&dir) {
                Ok(entries) => entries.filter_map(Result::ok).any(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir())
                        && e.file_name()
                            .to_str()
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            if partition_dirs {
                return Err(LayoutError::CountLost { dir });
            }
            let pre_streams = stream == DEFAULT_STREAM
                && match crate::wal::segment::list_segments(data_dir) {
                    Ok(bases) => !bases.is_empty(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_at(data_dir)(e)),
                };
            Ok(pre_streams.then_some(1))
        }
        Err(e) => Err(io_at(&file)(e)),
    }
}

/// Checks `stream`'s partition count as found on disk (`on_disk`, from
/// [`partitions_on_disk`]) against the settings' `partitions`, and records it durably
/// (temp file, fdatasync, rename, fsync of the directory) where its count file is
/// missing.
///
/// # Errors
/// [`LayoutError::PartitionsChanged`] if the count differs; I/O errors with their path.
pub fn settle_partitions(
    data_dir: &Path,
    stream: &str,
    on_disk: Option<u32>,
    partitions: u32,
) -> Result<(), LayoutError> {
    let dir = data_dir.join(stream);
    let file = dir.join(PARTITIONS_FILE);
    match on_disk {
        Some(n) if n != partitions => Err(LayoutError::PartitionsChanged {
            stream: stream.to_owned(),
            on_disk: n,
            configured: partitions,
            file,
        }),
        _ if file.exists() => Ok(()),
        _ => write_durably(&dir, &file, partitions),
    }
}

/// The streams a data directory holds and their partition counts, by the count files
/// (`data_dir/<stream>/partitions`), sorted by name; the default stream is always there
/// (a directory from before streams has no count file: one partition).
///
/// # Errors
/// An I/O error reading the directory, or a count file that is not a number.
pub fn on_disk(data_dir: &Path) -> Result<Vec<(String, u32)>, LayoutError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir).map_err(io_at(data_dir))? {
        let entry = entry.map_err(io_at(data_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let file = entry.path().join(PARTITIONS_FILE);
        if !super::spec::valid_name(&name) || !file.is_file() {
            continue;
        }
        let s = fs::read_to_string(&file).map_err(io_at(&file))?;
        let n = s
            .trim()
            .parse::<u32>()
            .map_err(|_| LayoutError::Unreadable {
                file: file.clone(),
                content: s.chars().take(64).collect(),
            })?;
        out.push((name, n));
    }
    if !out.iter().any(|(n, _)| n == DEFAULT_STREAM) {
        out.push((DEFAULT_STREAM.to_owned(), 1));
    }
    out.sort();
    Ok(out)
}

fn write_durably(dir: &Path, file: &Path, partitions: u32) -> Result<(), LayoutError> {
    // The stream's directory, and data_dir's entry for it, durable before anything
    // acknowledged is written under it.
    crate::wal::recovery::create_dir_durably(dir)?;
    let tmp = dir.join(format!("{PARTITIONS_FILE}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io_at(&tmp))?;
    writeln!(f, "{partitions}").map_err(io_at(&tmp))?;
    f.sync_data().map_err(io_at(&tmp))?;
    fs::rename(&tmp, file).map_err(io_at(file))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_recorded_then_held() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(partition_dir(d.path(), "default", 0), d.path());
        assert_eq!(
            partition_dir(d.path(), "audit", 3),
            d.path().join("audit").join("3")
        );
        let settle = |n| {
            let on_disk = partitions_on_disk(d.path(), "audit").unwrap();
            settle_partitions(d.path(), "audit", on_disk, n)
        };
        assert_eq!(partitions_on_disk(d.path(), "audit").unwrap(), None);
        settle(4).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("audit/partitions")).unwrap(),
            "4\n"
        );
        settle(4).unwrap();
        let e = settle(8).unwrap_err().to_string();
        assert!(
            e.contains("created with 4") && e.contains("ask for 8"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_from_before_streams_is_one_partition() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(partitions_on_disk(d.path(), "default").unwrap(), None);
        fs::write(d.path().join("00000000000000000000.log"), b"x").unwrap();
        let on_disk = partitions_on_disk(d.path(), "default").unwrap();
        assert_eq!(on_disk, Some(1));
        let e = settle_partitions(d.path(), "default", on_disk, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("created with 1"), "{e}");
        settle_partitions(d.path(), "default", on_disk, 1).unwrap();
        assert!(d.path().join("default/partitions").exists());
    }

    #[test]
    fn a_lost_count_file_is_refused_not_rewritten() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("audit/2")).unwrap();
        let e = partitions_on_disk(d.path(), "audit")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no partition count file"), "{e}");
    }
}
