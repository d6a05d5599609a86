//! The forwarder's durable cursor: `<partition dir>/nats.cursor`.
//!
//! Layout (20 bytes, little-endian; `docs/format.md`, "NATS cursor file"):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | 4 | magic `RSNC` |
//! | 4 | 2 | version, 1 |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 8 | next offset to forward: every record below it is confirmed stored in JetStream |
//! | 16 | 4 | CRC-32C of bytes 0..16 |
//!
//! Written whole to a temporary file, fdatasynced, renamed over the old one and the
//! directory fsynced: a crash leaves the old cursor or the new one, never a mix. A
//! cursor that is behind only costs resends, which JetStream's duplicate window
//! removes; so it is written once per confirmed window, not per message.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

/// The file's name in the partition's directory.
pub const CURSOR_FILE: &str = "nats.cursor";
const MAGIC: &[u8; 4] = b"RSNC";
const VERSION: u16 = 1;
/// The file's whole size.
pub const CURSOR_BYTES: usize = 20;

/// A cursor file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Reading, writing or syncing failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The bytes are not a cursor of this version (wrong size, magic, version or CRC).
    #[error("{path}: not a valid NATS cursor ({why})")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which check failed.
        why: &'static str,
    },
}

/// Encodes `next` as the file's 20 bytes.
pub fn encode(next: u64) -> [u8; CURSOR_BYTES] {
    let mut b = [0u8; CURSOR_BYTES];
    b[0..4].copy_from_slice(MAGIC);
    b[4..6].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes the file's bytes, checking everything the layout fixes.
fn decode(path: &Path, b: &[u8]) -> Result<u64, CursorError> {
    let invalid = |why| CursorError::Invalid {
        path: path.to_owned(),
        why,
    };
    if b.len() != CURSOR_BYTES {
        return Err(invalid("size is not 20 bytes"));
    }
    if &b[0..4] != MAGIC {
        return Err(invalid("bad magic"));
    }
    if u16::from_le_bytes([b[4], b[5]]) != VERSION {
        return Err(invalid("unknown version"));
    }
    let crc = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&b[0..16]) {
        return Err(invalid("CRC mismatch"));
    }
    Ok(u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")))
}

/// The cursor stored in `dir`, or `None` if there is none yet.
///
/// # Errors
/// An I/O error reading it, or a file that is not a valid cursor (never guessed at:
/// the operator decides, see docs/scale-out.md).
pub fn load(dir: &Path) -> Result<Option<u64>, CursorError> {
    let path = dir.join(CURSOR_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CursorError::Io {
                op: "open",
                path,
                source,
            });
        }
    };
    let mut b = Vec::with_capacity(CURSOR_BYTES);
    f.read_to_end(&mut b).map_err(|source| CursorError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    decode(&path, &b).map(Some)
}

/// Replaces the cursor in `dir` with `next`, durably (temp + fdatasync + rename +
/// directory fsync).
///
/// # Errors
/// Any failing step; the old cursor then stays in place.
pub fn store(dir: &Path, next: u64) -> Result<(), CursorError> {
    let tmp = dir.join("nats.cursor.tmp");
    let path = dir.join(CURSOR_FILE);
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| CursorError::Io { op, path, source }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(&encode(next)).map_err(io("write", &tmp))?;
    f.sync_data().map_err(io("fdatasync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        store(dir.path(), 12345).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(12345));
        let bytes = encode(7);
        assert_eq!(&bytes[0..4], b"RSNC");
        assert_eq!(&bytes[4..8], &[1, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        let mut bad = bytes;
        bad[9] ^= 1;
        fs::write(dir.path().join(CURSOR_FILE), bad).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("CRC mismatch"), "{err}");
    }
}
