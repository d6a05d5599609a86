//! The most recently committed groups, kept in memory for live readers: the fan-out's
//! tail, its binary window, the read API near the end, and subscribers close behind.
//!
//! Why: under `write_mode = "direct"` the page cache no longer holds what the writer
//! just wrote, so a reader following the log would read every record back from the
//! disk. Instead the writer hands each committed group's buffer over as it is (an
//! `Arc`, not a copy), and a live [`Scanner`](super::segment::Scanner) copies from it
//! where it would have read the file. Older records are read from the files as before.
//!
//! An entry covers whole file bytes: a group's buffer starts at a block boundary (under
//! direct writes it begins with the bytes of the block that precede the group), so an
//! entry is exactly the file's contents from `start` for `buf.len()` bytes, every one of
//! them committed.
//!
//! Bounds: entries are kept while their resident cost (each buffer's touched bytes)
//! stays within `recent_bytes_max` (the fan-out window's size), the newest always. A
//! group under 64 KiB, or filling less than a quarter of its buffer, is copied instead,
//! so a slow trickle neither pins a large buffer per record nor makes the writer map a
//! new buffer per group (a copy that small costs it a few microseconds). Buffers
//! that leave the window unshared go back to the writer ([`Recent::buffer`]), so a
//! steady stream allocates nothing.
//!
//! The buffers kept for reuse are bounded by their resident bytes (as much as the
//! window's bound, or [`REUSABLE_MIN`] buffers where that is more), not by a count
//! alone: evictions come in bursts (one entry whose buffer
//! once held a large group costs as much as a dozen ordinary ones and pushes them all
//! out at once), and with four kept, as before, the rest were unmapped and the writer
//! mapped new ones a moment later. That churn cost the writer 900-2,200 `munmap`s of
//! 4 MiB (0.1-0.6 ms each, in its commit path before the acks) and 65,000-115,000 page
//! faults in a 7 s acked run at 1.7 M records/s (docs/benchmarks.md). The window and
//! the kept buffers together hold at most `bytes_max` plus the larger of `bytes_max`
//! and four buffers, no more than the four 4 MiB buffers did beside a 16 MiB window.
//! Over that bound, the buffers that cost
//! the most go, and the writer is given the one with the fewest touched bytes: a
//! buffer's touched bytes only grow (to its largest group), and a group in a buffer
//! four times its size is copied, so taking the most recently returned made most groups
//! copies once a few large groups had passed through (81 % of them in the run above,
//! 3.5 % now): a second memcpy of the group on the writer. What is still unmapped is
//! unmapped by the writer after it has acknowledged the group ([`Evicted`]).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::aligned::AlignedBuf;

/// Buffers kept for reuse whatever their touched bytes: a window too small to hold
/// even a few of them (`partition_recent_bytes_max` may be 64 KiB) would otherwise make
/// the writer map a buffer for every group it shares and unmap one for every eviction.
/// Four, as were always kept before the bound in bytes.
pub(crate) const REUSABLE_MIN: usize = 4;

/// Groups smaller than this are copied rather than shared: a copy of at most 64 KiB
/// costs the writer a few microseconds, a shared buffer the mapping of a new one.
const SHARE_BYTES_MIN: usize = 64 << 10;

/// Entries [`Recent::push`] evicted and did not keep: dropping it unmaps their
/// buffers (those no reader holds any more).
pub(crate) struct Evicted {
    _gone: Vec<Bytes>,
}

/// A group's bytes as the window holds them.
#[derive(Debug, Clone)]
enum Bytes {
    /// The writer's own buffer, shared.
    Shared(Arc<AlignedBuf>),
    /// A copy, for a small group.
    Copied(Arc<[u8]>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Shared(b) => b,
            Bytes::Copied(b) => b,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Base offset of the segment the bytes belong to.
    base: u64,
    /// File position of `buf[0]`.
    start: u64,
    buf: Bytes,
    /// What the entry counts against the bound: the bytes it keeps resident.
    cost: usize,
}

impl Entry {
    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; ascending by (base, start).
    entries: VecDeque<Entry>,
    cost: usize,
    /// In no order: [`Recent::buffer`] picks by touched bytes.
    reusable: Vec<AlignedBuf>,
    /// The touched bytes of `reusable`.
    reusable_bytes: usize,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Recent {
    bytes_max: usize,
    state: Mutex<State>,
    /// Bytes live readers copied from here.
    pub(crate) bytes_from_memory: AtomicU64,
    /// Bytes live readers read from segment files.
    pub(crate) bytes_from_files: AtomicU64,
    /// The bytes the window holds now (its cost).
    pub(crate) bytes_held: AtomicU64,
    /// Group buffers the writer had to map because none was free to reuse.
    pub(crate) buffers_mapped: AtomicU64,
}

impl Recent {
    pub(crate) fn new(bytes_max: usize) -> Self {
        Recent {
            bytes_max,
            state: Mutex::new(State::default()),
            bytes_from_memory: AtomicU64::new(0),
            bytes_from_files: AtomicU64::new(0),
            bytes_held: AtomicU64::new(0),
            buffers_mapped: AtomicU64::new(0),
        }
    }

    /// The writer: group bytes `buf`, at file position `start` of segment `base`, are
    /// committed. Shares `buf` or copies it (see the module docs); evicts the oldest,
    /// and returns what it evicted and did not keep for reuse: the caller drops it,
    /// unmapping it, once it has acknowledged the group.
    #[must_use = "dropped at once, the evicted buffers are unmapped before the acks"]
    pub(crate) fn push(&self, base: u64, start: u64, buf: &Arc<AlignedBuf>) -> Evicted {
        let (buf, cost) = if buf.len() >= SHARE_BYTES_MIN && buf.len() * 4 >= buf.touched() {
            (Bytes::Shared(buf.clone()), buf.touched())
        } else {
            (Bytes::Copied(Arc::from(&buf[..])), buf.len())
        };
        let mut st = self.state.lock().expect("recent lock");
        debug_assert!(
            st.entries
                .back()
                .is_none_or(|e| (e.base, e.end()) <= (base, start + buf.len() as u64)),
            "groups arrive in file order"
        );
        st.cost += cost;
        st.entries.push_back(Entry {
            base,
            start,
            buf,
            cost,
        });
        // Entries evicted beyond what is kept, released by the caller after its acks:
        // unmapping a buffer takes 0.1-0.6 ms.
        let mut gone = Vec::new();
        while st.cost > self.bytes_max && st.entries.len() > 1 {
            let old = st.entries.pop_front().expect("non-empty");
            st.cost -= old.cost;
            match old.buf {
                Bytes::Shared(b) => match Arc::try_unwrap(b) {
                    Ok(b) => {
                        st.reusable_bytes += b.touched();
                        st.reusable.push(b);
                    }
                    // A reader still copies from it; the last one unmaps it.
                    Err(b) => gone.push(Bytes::Shared(b)),
                },
                copied => gone.push(copied),
            }
        }
        // Over the bound, let the buffers that cost the most go: kept, they would
        // make every group that is not as large a copy.
        while st.reusable_bytes > self.bytes_max && st.reusable.len() > REUSABLE_MIN {
            let (i, _) = (st.reusable.iter().enumerate())
                .max_by_key(|(_, b)| b.touched())
                .expect("reusable bytes > 0");
            let b = st.reusable.swap_remove(i);
            st.reusable_bytes -= b.touched();
            gone.push(Bytes::Shared(Arc::new(b)));
        }
        self.bytes_held.store(st.cost as u64, Ordering::Relaxed);
        Evicted { _gone: gone }
    }

    /// The writer: a buffer of `capacity` bytes for a group, the one with the fewest
    /// touched bytes of those that left the window unshared (the group is then shared
    /// rather than copied, unless it is much smaller than the buffer's largest group),
    /// or a new one (counted in `buffers_mapped`).
    pub(crate) fn buffer(&self, capacity: usize) -> AlignedBuf {
        let reused = {
            let mut st = self.state.lock().expect("recent lock");
            let found = (st.reusable.iter().enumerate())
                .filter(|(_, b)| b.capacity() == capacity)
                .min_by_key(|(_, b)| b.touched())
                .map(|(i, _)| i);
            found.map(|i| {
                let b = st.reusable.swap_remove(i);
                st.reusable_bytes -= b.touched();
                b
            })
        };
        reused.unwrap_or_else(|| {
            self.buffers_mapped.fetch_add(1, Ordering::Relaxed);
            AlignedBuf::new(capacity)
        })
    }

    /// A live reader: copies the committed bytes of segment `base` from file position
    /// `at` into `dst`, as far as the window holds them contiguously. Returns how many
    /// bytes it copied: 0 if the window does not hold `at`.
    pub(crate) fn read_at(&self, base: u64, at: u64, dst: &mut [u8]) -> usize {
        let mut done = 0;
        while done < dst.len() {
            let pos = at + done as u64;
            // Clone the entry out of the lock: the copy runs without it, so the writer
            // never waits on a reader's memcpy.
            let found = {
                let st = self.state.lock().expect("recent lock");
                let i = st
                    .entries
                    .partition_point(|e| (e.base, e.start) <= (base, pos));
                i.checked_sub(1)
                    .map(|i| &st.entries[i])
                    .filter(|e| e.base == base && pos < e.end())
                    .map(|e| (e.start, e.buf.clone()))
            };
            let Some((start, buf)) = found else { break };
            let from = (pos - start) as usize;
            let n = (buf.len() - from).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&buf[from..from + n]);
            done += n;
        }
        self.bytes_from_memory
            .fetch_add(done as u64, Ordering::Relaxed);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(start_byte: u8, len: usize) -> Arc<AlignedBuf> {
        let mut b = AlignedBuf::new(len);
        let bytes: Vec<u8> = (0..len).map(|i| start_byte.wrapping_add(i as u8)).collect();
        b.extend_from_slice(&bytes);
        Arc::new(b)
    }

    #[test]
    fn reads_across_contiguous_entries_and_stops_at_a_gap() {
        let r = Recent::new(1 << 20);
        let _ = r.push(0, 0, &group(0, 4096));
        let _ = r.push(0, 4096, &group(0, 100)); // 4096 % 256 == 0: continues the pattern
        let mut dst = vec![0; 5000];
        assert_eq!(r.read_at(0, 4000, &mut dst), 196);
        assert_eq!(dst[0], (4000 % 256) as u8);
        assert_eq!(dst[96], 0); // position 4096 starts the second group's pattern
        // Another segment, and positions past the end, are not held.
        assert_eq!(r.read_at(7, 0, &mut dst), 0);
        assert_eq!(r.read_at(0, 4196, &mut dst), 0);
    }

    #[test]
    fn evicts_oldest_beyond_the_bound_but_keeps_the_newest() {
        const G: usize = SHARE_BYTES_MIN;
        let r = Recent::new(2 * G);
        let groups: Vec<_> = (0..3).map(|i| group(i as u8, G)).collect();
        for (i, g) in groups.iter().enumerate() {
            let _ = r.push(0, (i * G) as u64, g);
        }
        let mut dst = [0u8; 1];
        assert_eq!(r.read_at(0, 0, &mut dst), 0, "evicted");
        assert_eq!(r.read_at(0, G as u64, &mut dst), 1);
        assert_eq!(r.bytes_held.load(Ordering::Relaxed), 2 * G as u64);
        assert_eq!(Arc::strong_count(&groups[2]), 2, "shared, not copied");
        // An evicted buffer nobody else holds comes back for reuse.
        drop(groups);
        let r2 = Recent::new(2 * G);
        for i in 0..3 {
            let _ = r2.push(0, (i * G) as u64, &group(0, G));
        }
        let mapped = || r2.buffers_mapped.load(Ordering::Relaxed);
        let _reused = r2.buffer(G);
        assert_eq!(mapped(), 0, "the evicted buffer came back");
        let _new = r2.buffer(G);
        assert_eq!(mapped(), 1, "none left to reuse: a new one");
        let tiny = Recent::new(1);
        let _ = tiny.push(0, 0, &group(0, 100));
        assert_eq!(tiny.read_at(0, 0, &mut dst), 1, "the newest is always kept");
    }

    #[test]
    fn a_burst_of_evictions_is_kept_for_reuse_up_to_the_bound() {
        const G: usize = SHARE_BYTES_MIN;
        let r = Recent::new(16 * G);
        for i in 0..16 {
            let _ = r.push(0, (i * G) as u64, &group(0, G));
        }
        // One entry costing the whole bound pushes the sixteen out at once; the next
        // pushes it out, beyond what is kept.
        let _ = r.push(0, (16 * G) as u64, &group(0, 16 * G));
        let evicted = r.push(0, (32 * G) as u64, &group(0, 16 * G));
        assert_eq!(
            evicted._gone.len(),
            1,
            "kept would exceed the bound: let go"
        );
        let mapped = || r.buffers_mapped.load(Ordering::Relaxed);
        let kept: Vec<_> = (0..16).map(|_| r.buffer(G)).collect();
        assert_eq!(mapped(), 0, "all sixteen (the bound) came back");
        assert!(kept.iter().all(|b| b.capacity() == G));
        let _ = r.buffer(G);
        assert_eq!(mapped(), 1, "none left: a new one");
    }

    /// The writer's use, two groups taking turns as `Group::reset` does (a group whose
    /// buffer the window shares takes another), with group sizes that vary as they do
    /// under load: once the window has filled, next to nothing is mapped. With four
    /// buffers kept, as before, this mapped one buffer in six groups (342 in the last
    /// 2,000; now none).
    #[test]
    fn varying_groups_map_next_to_nothing_once_the_window_has_filled() {
        const CAP: usize = 4 << 20;
        let r = Recent::new(16 << 20);
        let mut groups: Vec<Arc<AlignedBuf>> =
            (0..2).map(|_| Arc::new(AlignedBuf::new(CAP))).collect();
        let mut seed = 7u64;
        let mut pos = 0u64;
        let mut mapped_at = Vec::new();
        for i in 0..4000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // 64 KiB to 320 KiB, and one group in fifty of 1 to 2 MiB (a stall).
            let len = if (seed >> 33).is_multiple_of(50) {
                (1 << 20) + (seed >> 40) as usize % (1 << 20)
            } else {
                (64 << 10) + (seed >> 40) as usize % (256 << 10)
            };
            let g = &mut groups[i % 2];
            if Arc::get_mut(g).is_none() {
                *g = Arc::new(r.buffer(CAP));
            }
            let b = Arc::get_mut(g).expect("unshared");
            b.clear();
            b.extend_from_slice(&vec![1; len]);
            drop(r.push(0, pos, g));
            pos += len as u64;
            if i % 1000 == 999 {
                mapped_at.push(r.buffers_mapped.load(Ordering::Relaxed));
            }
        }
        let steady = mapped_at[3] - mapped_at[1];
        assert!(
            steady <= 20,
            "{steady} buffers mapped in the last 2,000 groups (after each 1,000: {mapped_at:?})"
        );
    }

    /// A window too small to hold a buffer's touched bytes still keeps
    /// [`REUSABLE_MIN`] buffers: a writer with one group in flight at a time (the
    /// same group reset after each commit, while the window still shares its last
    /// buffer) maps none per group.
    #[test]
    fn a_small_window_still_keeps_a_few_buffers() {
        const G: usize = SHARE_BYTES_MIN;
        let r = Recent::new(G);
        let mut group = Arc::new(AlignedBuf::new(4 * G));
        for i in 0..100 {
            let g = &mut group;
            if Arc::get_mut(g).is_none() {
                *g = Arc::new(r.buffer(4 * G));
            }
            let b = Arc::get_mut(g).expect("unshared");
            b.clear();
            b.extend_from_slice(&vec![1; 2 * G]);
            drop(r.push(0, (i * 2 * G) as u64, g));
        }
        assert!(
            r.buffers_mapped.load(Ordering::Relaxed) <= 2,
            "{} mapped",
            r.buffers_mapped.load(Ordering::Relaxed)
        );
    }

    /// The writer gets the kept buffer with the fewest touched bytes, so that an
    /// ordinary group is shared, not copied; over the bound, the costliest goes.
    #[test]
    fn the_buffer_given_is_the_least_touched_and_the_most_touched_goes_first() {
        const G: usize = SHARE_BYTES_MIN;
        const CAP: usize = 32 * G;
        let r = Recent::new(40 * G);
        let filled = |len| {
            let mut b = AlignedBuf::new(CAP);
            b.extend_from_slice(&vec![1; len]);
            Arc::new(b)
        };
        let mut at = 0;
        let mut push = |len: usize| {
            let evicted = r.push(0, at, &filled(len));
            at += len as u64;
            evicted
        };
        for _ in 0..5 {
            let _ = push(G);
        }
        let _ = push(16 * G);
        // Pushes all six out, all kept (21 G of touched bytes, within 40 G).
        let _ = push(32 * G);
        let b = r.buffer(CAP);
        assert_eq!(b.touched(), G, "the least touched first");
        // Pushes the 32 G one out: kept, 52 G would be over the bound, so the
        // costliest (itself) goes and the others stay.
        let evicted = push(32 * G);
        assert_eq!(evicted._gone.len(), 1);
        assert!(evicted._gone.iter().all(|b| b.len() == 32 * G));
        assert_eq!(r.buffer(CAP).touched(), G);
        assert_eq!(r.buffers_mapped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn small_groups_and_groups_in_a_mostly_empty_buffer_are_copied() {
        let r = Recent::new(1 << 20);
        let small = group(0, 100);
        let _ = r.push(0, 0, &small);
        assert_eq!(Arc::strong_count(&small), 1, "small: copied");
        let mut big = AlignedBuf::new(1 << 20);
        big.extend_from_slice(&vec![9; 1 << 20]);
        big.clear();
        big.extend_from_slice(&vec![5; SHARE_BYTES_MIN]);
        let big = Arc::new(big);
        let _ = r.push(0, 100, &big);
        assert_eq!(
            Arc::strong_count(&big),
            1,
            "a quarter of its touched bytes: copied"
        );
        assert_eq!(
            r.bytes_held.load(Ordering::Relaxed),
            100 + SHARE_BYTES_MIN as u64
        );
    }
}
