//! CPU time and resident memory of a process, read from `/proc/<pid>`.

use std::{fs, io, time::Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// Process id.
    pub pid: u32,
    /// When it was taken.
    pub at: Instant,
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
    /// Resident set size now (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Peak resident set size so far (`VmHWM`), bytes.
    pub rss_bytes_peak: u64,
}

/// The change between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcDelta {
    /// Process id.
    pub pid: u32,
    /// Wall time between the samples, seconds.
    pub wall_s: f64,
    /// CPU time used between them, seconds.
    pub cpu_s: f64,
    /// RSS at the first sample, bytes.
    pub rss_bytes_start: u64,
    /// RSS at the second, bytes.
    pub rss_bytes_end: u64,
    /// `VmHWM` at the second, bytes.
    pub rss_bytes_peak: u64,
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Parses utime + stime (clock ticks) out of the text of `/proc/<pid>/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parses a `Name:   1234 kB` line of `/proc/<pid>/status` into bytes.
pub fn parse_status_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Reads `pid`'s CPU time and memory now.
///
/// # Errors
/// The process does not exist or `/proc` cannot be read.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let at = Instant::now();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc format");
    let ticks = parse_stat_cpu_ticks(&stat).ok_or_else(bad)?;
    Ok(ProcSample {
        pid,
        at,
        cpu_s: ticks as f64 / clock_ticks_per_s(),
        rss_bytes: parse_status_kb(&status, "VmRSS").unwrap_or(0),
        rss_bytes_peak: parse_status_kb(&status, "VmHWM").unwrap_or(0),
    })
}

impl ProcSample {
    /// What happened between `self` and the later sample `end`.
    pub fn delta(&self, end: &ProcSample) -> ProcDelta {
        ProcDelta {
            pid: self.pid,
            wall_s: end.at.duration_since(self.at).as_secs_f64(),
            cpu_s: (end.cpu_s - self.cpu_s).max(0.0),
            rss_bytes_start: self.rss_bytes,
            rss_bytes_end: end.rss_bytes,
            rss_bytes_peak: end.rss_bytes_peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (ring stash) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
    }

    #[test]
    fn samples_itself() {
        let pid = std::process::id();
        let a = sample(pid).unwrap();
        // Busy until this thread alone has used 200 ms of CPU (by its own clock), however
        // long other load makes that take: the sample must count a good part of it (the
        // kernel charges CPU time tick by tick, 10 ms each, so allow for a few missed).
        let thread_cpu = || {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: writes into the timespec we own; the result is checked.
            assert_eq!(
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
                0
            );
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        };
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < 0.2 {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let b = sample(pid).unwrap();
        let d = a.delta(&b);
        assert!(d.rss_bytes_end > 0 && d.rss_bytes_peak >= d.rss_bytes_end);
        assert!(d.wall_s >= 0.2, "{d:?}");
        assert!(
            d.cpu_s >= 0.1,
            "200 ms of this thread's CPU counted as {} s for the process",
            d.cpu_s
        );
    }
}
