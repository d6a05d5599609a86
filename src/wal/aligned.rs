//! Block-aligned memory for direct I/O: an `O_DIRECT` write must come from memory
//! aligned to the device's logical block, cover whole blocks and start on a block
//! boundary of the file. [`BLOCK_BYTES`] (4 KiB) satisfies every device with 512-byte or
//! 4 KiB logical blocks, which is every disk this appliance is meant for.

use std::ptr::NonNull;

/// The alignment and granularity of direct writes: of the memory, the file position
/// and the length.
pub const BLOCK_BYTES: usize = 4096;

/// `n` rounded up to a whole number of blocks.
pub const fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// `n` rounded down to a block boundary.
pub const fn round_down(n: u64) -> u64 {
    n / BLOCK_BYTES as u64 * BLOCK_BYTES as u64
}

/// A fixed-capacity byte buffer whose start is block-aligned and whose capacity is a
/// whole number of blocks (and of pages). Mapped zeroed, once; `len` bytes are in use.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    /// The most bytes ever in use, padding included: what the buffer costs in resident
    /// memory (a large zeroed allocation is fresh pages the kernel maps on first touch).
    touched: usize,
}

// SAFETY: the buffer owns its allocation outright, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access is read-only (`&[u8]`), like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of at least `capacity` bytes (rounded up to whole blocks).
    ///
    /// Mapped anonymously, not taken from the allocator: the kernel's zero pages cost
    /// nothing until written, so a buffer sized for the largest group costs what its
    /// groups touch ([`AlignedBuf::touched`]). (The allocator's zeroed allocation with a
    /// 4 KiB alignment writes every byte: 4 MiB of memset and page faults per buffer.)
    ///
    /// # Panics
    /// If the kernel refuses the mapping (out of memory).
    pub fn new(capacity: usize) -> Self {
        let capacity = round_up(capacity.max(1));
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                capacity,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            p != libc::MAP_FAILED,
            "mmap of a {capacity}-byte buffer: {}",
            std::io::Error::last_os_error()
        );
        AlignedBuf {
            ptr: NonNull::new(p.cast()).expect("mmap returns non-null"),
            capacity,
            len: 0,
            touched: 0,
        }
    }

    /// Bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the allocation ever written, in whole blocks: its resident cost.
    pub fn touched(&self) -> usize {
        round_up(self.touched)
    }

    /// Forgets the bytes in use (they stay in memory until overwritten).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`.
    ///
    /// # Panics
    /// If they do not fit: the callers size every buffer for its largest content.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.capacity, "aligned buffer overflow");
        // SAFETY: in bounds (checked above); `bytes` cannot alias our allocation
        // while we hold `&mut self`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len = end;
        self.touched = self.touched.max(end);
    }

    /// Zeroes the bytes from `len` to the next block boundary and returns the bytes in
    /// use padded to it: what a direct write of this buffer covers.
    pub fn padded(&mut self) -> &[u8] {
        let end = round_up(self.len);
        debug_assert!(end <= self.capacity);
        self.touched = self.touched.max(end);
        // SAFETY: `len..end` is within the allocation (capacity is whole blocks).
        unsafe {
            std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, end - self.len);
            std::slice::from_raw_parts(self.ptr.as_ptr(), end)
        }
    }

    /// The whole allocation as a raw pointer, for an SQE that reads from it.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (the allocation is zeroed).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.capacity) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_padded_with_zeros() {
        let mut b = AlignedBuf::new(5000);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.as_ptr() as usize % BLOCK_BYTES, 0);
        b.extend_from_slice(&[7; 4100]);
        // Stale bytes past len must not leak into the padding.
        b.clear();
        b.extend_from_slice(&[1; 10]);
        let p = b.padded();
        assert_eq!(p.len(), 4096);
        assert!(p[..10].iter().all(|&x| x == 1));
        assert!(p[10..].iter().all(|&x| x == 0));
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn overflow_panics() {
        AlignedBuf::new(4096).extend_from_slice(&[0; 4097]);
    }
}
