//! The latency distribution in HdrHistogram's percentile text format (`--hgrm`), as
//! Java HdrHistogram's `outputPercentileDistribution` writes it: the layout the
//! HdrHistogram plotter reads.

use std::io;

use hdrhistogram::Histogram;

/// Writes `h` (recorded in µs) in HdrHistogram's percentile-distribution text format,
/// values divided by `scale` (1000.0 gives milliseconds, what the HdrHistogram
/// plotter expects), with 5 ticks per half distance like `outputPercentileDistribution`.
///
/// # Errors
/// Errors of `out`.
pub fn write_hgrm(h: &Histogram<u64>, scale: f64, out: &mut dyn io::Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / scale;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / scale, h.stdev() / scale, h.max() as f64 / scale)
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    // Sub-buckets per bucket: the power of two that holds 2 * 10^sigfig values.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::stats;

    #[test]
    fn hgrm_format() {
        let mut out = Vec::new();
        write_hgrm(&stats().latency_us, 1000.0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<&str> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        assert!(rows.len() > 50);
        let first: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        assert!(
            text.contains("#[Mean    =        5.001, StdDeviation   =        2.887]"),
            "{text}"
        );
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }
}
