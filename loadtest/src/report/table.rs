//! The report as a table for people (what `loadtest run` prints without `--json`).

use std::fmt::Write as _;

use super::{E2eInfo, LatencySummary, Report, thousands};

impl Report {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        self.write_run(&mut s);
        self.write_counts(&mut s);
        self.write_resources(&mut s);
        if let Some(e) = &self.e2e {
            write_e2e(&mut s, e);
        }
        if let Some(l) = &self.landed {
            let _ = writeln!(
                s,
                "  landed      {} of {} bytes in {} after {:.3} s: {} records/s, {:.1} MB/s{}",
                thousands(l.bytes_landed),
                thousands(l.bytes_expected),
                l.file,
                l.elapsed_s,
                thousands(l.records_per_s as u64),
                l.mb_per_s,
                if l.complete { "" } else { "  (INCOMPLETE)" }
            );
        }
        s
    }

    /// What was driven, how, and the measurement window.
    fn write_run(&self, s: &mut String) {
        let r = &self.run;
        let load = match r.rate_target {
            Some(rate) => format!("open loop at {} records/s", thousands(rate.round() as u64)),
            None => "closed loop".to_owned(),
        };
        let size = if r.record_bytes[0] == r.record_bytes[1] {
            format!("{} B", r.record_bytes[0])
        } else {
            format!("{}-{} B", r.record_bytes[0], r.record_bytes[1])
        };
        let _ = writeln!(s, "loadtest {} -> {}", r.mode, r.target);
        let _ = writeln!(
            s,
            "  load        {load}, {} conn x {} in flight, {} records/batch, {size} {} records, {} thread(s)",
            r.connections, r.inflight, r.batch_records, r.format, r.threads
        );
        if let Some(t) = &r.tls {
            let _ = writeln!(
                s,
                "  tls         {} {}, server name {}{}; set-up before the clock: median {:.2} ms, max {:.1} ms",
                t.protocol,
                t.cipher_suite,
                t.server_name,
                if t.client_cert {
                    ", client certificate"
                } else {
                    ""
                },
                t.setup_us_median as f64 / 1000.0,
                t.setup_us_max as f64 / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "  window      {:.3} s measured{}",
            self.duration_s,
            if r.warmup_s > 0.0 {
                format!(" after {:.1} s warm-up", r.warmup_s)
            } else {
                String::new()
            }
        );
    }

    /// Records, throughput, latency percentiles, errors and reconnects.
    fn write_counts(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  records     {} ok in window, {} failed; {} sent, {} ok in total{}",
            thousands(self.records),
            thousands(self.failed_records_total),
            thousands(self.sent_records_total),
            thousands(self.completed_records_total),
            if self.server_acked_total > 0 {
                format!(", {} acked by server", thousands(self.server_acked_total))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  throughput  {} records/s   {:.1} MB/s   ({} batches)",
            thousands(self.records_per_s as u64),
            self.mb_per_s,
            thousands(self.batches)
        );
        let _ = writeln!(
            s,
            "  latency µs  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
            "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
        );
        latency_row(s, "corrected ", &self.latency_us);
        latency_row(s, "service   ", &self.service_time_us);
        if self.errors.is_empty() {
            let _ = writeln!(s, "  errors      none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                s,
                "  errors      {} ({})",
                self.errors_total,
                list.join(", ")
            );
        }
        if self.reconnects > 0 {
            let _ = writeln!(s, "  reconnects  {}", self.reconnects);
        }
    }

    /// The server's and the harness's CPU and memory, when known.
    fn write_resources(&self, s: &mut String) {
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server      pid {}: cpu {:.2} s ({:.0} % of a core, {:.2} µs/record), rss {:.1} MB (max {:.1}, peak {:.1})",
                sv.pid,
                sv.cpu_s,
                sv.cpu_percent,
                sv.cpu_us_per_record,
                sv.rss_bytes_end as f64 / 1e6,
                sv.rss_bytes_max as f64 / 1e6,
                sv.rss_bytes_peak as f64 / 1e6
            );
        }
        if let Some(c) = &self.client {
            let _ = writeln!(
                s,
                "  client      cpu {:.2} s ({:.0} % of a core)",
                c.cpu_s, c.cpu_percent
            );
        }
    }
}

/// One row of the latency table: `name` is 10 characters wide.
fn latency_row(s: &mut String, name: &str, l: &LatencySummary) {
    let _ = writeln!(
        s,
        "  {name}  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11.1}",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean
    );
}

/// The `ws-e2e` lines: subscriptions, the producer's latency row, each subscriber
/// (the first two and a summary of the rest when there are more than four), and the
/// delivery verdict.
fn write_e2e(s: &mut String, e: &E2eInfo) {
    let _ = writeln!(
        s,
        "  e2e         {}: {} live + {} stalled subscriber(s), producer {}; latency above = send -> receipt on every live subscriber",
        e.ws_target, e.subscribers, e.stalled_subscribers, e.send
    );
    latency_row(s, "producer  ", &e.producer_latency_us);
    let show = if e.per_subscriber.len() <= 4 {
        e.per_subscriber.len()
    } else {
        2
    };
    for (i, sub) in e.per_subscriber.iter().enumerate().take(show) {
        let _ = writeln!(
            s,
            "  sub {i:<7} {} of {} delivered, {} missed, {} duplicated; p50 {} p99 {} max {} µs{}",
            thousands(sub.delivered),
            thousands(e.expected_records),
            sub.missed + sub.undelivered,
            sub.duplicates,
            sub.latency_us.p50,
            sub.latency_us.p99,
            sub.latency_us.max,
            sub.error
                .as_deref()
                .map(|x| format!("  ({x})"))
                .unwrap_or_default()
        );
    }
    if show < e.per_subscriber.len() {
        write_more_subscribers(s, e, show);
    }
    let _ = writeln!(
        s,
        "  delivery    {} (last record {:.3} s after sending ended)",
        if e.ok && e.allow_lag {
            "in order, no gaps, no duplicates (--allow-lag: behind is not a failure)"
        } else if e.ok {
            "every live subscriber got every record exactly once"
        } else {
            "FAILED: a live subscriber missed or duplicated records"
        },
        e.drain_s
    );
}

/// One summary line for the subscribers after the first `shown`.
fn write_more_subscribers(s: &mut String, e: &E2eInfo, shown: usize) {
    let d = e.per_subscriber.iter().map(|x| x.delivered);
    let p99 = e.per_subscriber.iter().map(|x| x.latency_us.p99);
    let _ = writeln!(
        s,
        "  subs        {} more: delivered {}..{} of {}, {} missed, {} duplicated, p99 {}..{} µs",
        e.per_subscriber.len() - shown,
        thousands(d.clone().min().unwrap_or(0)),
        thousands(d.max().unwrap_or(0)),
        thousands(e.expected_records),
        e.per_subscriber
            .iter()
            .map(|x| x.missed + x.undelivered)
            .sum::<u64>(),
        e.per_subscriber.iter().map(|x| x.duplicates).sum::<u64>(),
        p99.clone().min().unwrap_or(0),
        p99.max().unwrap_or(0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        procstat::ProcDelta,
        report::tests::{run_info, stats},
    };

    #[test]
    fn table_reads_well() {
        let mut r = Report::new(run_info(), &stats(), 0.5);
        r.set_server(
            &ProcDelta {
                pid: 42,
                wall_s: 0.5,
                cpu_s: 0.25,
                rss_bytes_start: 10_000_000,
                rss_bytes_end: 20_000_000,
                rss_bytes_peak: 21_000_000,
            },
            0,
        );
        let t = r.to_table();
        assert!(t.contains("2,000,000 records/s"), "{t}");
        assert!(t.contains("256.0 MB/s"), "{t}");
        assert!(t.contains("http_503=1"), "{t}");
        assert!(
            t.contains("pid 42: cpu 0.25 s (50 % of a core, 0.25 µs/record)"),
            "{t}"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
