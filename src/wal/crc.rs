//! CRC-32C of three frames at once, for the reactors' batch building.
//!
//! Why: each record's checksum is a chain of `crc32` instructions, one per 8 bytes,
//! each waiting for the one before (3 cycles of latency, one issued per cycle). A
//! 152-byte frame is 19 links: the core idles two cycles in three. Three frames'
//! chains interleaved issue one instruction a cycle, about three times the checksum
//! throughput on the same core; one frame at a time (the `crc32c` crate, whose
//! three-way split pays for itself only on kilobytes) the checksums were 15-17 % of the
//! server's CPU at the one-way peak (`perf`, docs/benchmarks.md).
//!
//! The result is exactly the `crc32c` crate's (Castagnoli, reflected, initial and final
//! XOR `!0`): the raw `crc32` instruction from `!0` over the frames' common
//! 8-byte-aligned length, interleaved, then each frame's rest alone (8 bytes, then 1, at
//! a time), the register inverted at the end. A unit test compares the two over every
//! combination of short, odd and long lengths; the CPUs without SSE4.2 (and other
//! architectures) use the crate.

/// CRC-32C of `a`, `b` and `c`, as `crc32c::crc32c` of each.
pub(crate) fn crc32c_3(a: &[u8], b: &[u8], c: &[u8]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `x86::crc32c_3` needs SSE4.2 (its target feature), checked just above.
        return unsafe { x86::crc32c_3(a, b, c) };
    }
    [crc32c::crc32c(a), crc32c::crc32c(b), crc32c::crc32c(c)]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};

    /// Callable (unsafely) only where the CPU has SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c_3(a: &[u8], b: &[u8], c: &[u8]) -> [u32; 3] {
        let common = a.len().min(b.len()).min(c.len()) & !7;
        let start = u64::from(!0u32);
        let (mut ca, mut cb, mut cc) = (start, start, start);
        let mut i = 0;
        while i < common {
            ca = _mm_crc32_u64(ca, word(a, i));
            cb = _mm_crc32_u64(cb, word(b, i));
            cc = _mm_crc32_u64(cc, word(c, i));
            i += 8;
        }
        [
            !rest(ca, a, common),
            !rest(cb, b, common),
            !rest(cc, c, common),
        ]
    }

    /// The raw register after `s[from..]`, from `raw`, one chain.
    #[target_feature(enable = "sse4.2")]
    fn rest(mut raw: u64, s: &[u8], from: usize) -> u32 {
        let mut i = from;
        while i + 8 <= s.len() {
            raw = _mm_crc32_u64(raw, word(s, i));
            i += 8;
        }
        let mut raw = raw as u32;
        for &byte in &s[i..] {
            raw = _mm_crc32_u8(raw, byte);
        }
        raw
    }

    #[inline(always)]
    fn word(s: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_at_once_is_the_crate_one_at_a_time() {
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lens = [
            0usize, 1, 7, 8, 9, 15, 16, 17, 63, 128, 152, 153, 1000, 4096,
        ];
        for &la in &lens {
            for &lb in &lens {
                for &lc in &lens {
                    // Different starts, so the three are different bytes.
                    let (a, b, c) = (
                        &data[..la],
                        &data[data.len() - lb..],
                        &data[(4096 - lc) / 2..][..lc],
                    );
                    assert_eq!(
                        crc32c_3(a, b, c),
                        [crc32c::crc32c(a), crc32c::crc32c(b), crc32c::crc32c(c)],
                        "lengths {la} {lb} {lc}"
                    );
                }
            }
        }
    }
}
