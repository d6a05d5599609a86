//! `--plot FILE.svg`: the report's time series and latency distribution as one
//! self-contained SVG, written by hand (a few hundred lines of SVG do not need a
//! plotting crate and its dependencies).
//!
//! Three panels, each a `<g id="panel-...">` with one `<polyline data-series="...">`
//! per line, one point per series entry (latency lines skip seconds without
//! completions):
//!
//! 1. `panel-throughput`: records/s sent and acked (and landed, with `--landed-*`)
//!    over time (an entry's count over its `span_s`, drawn at the middle of the
//!    entry);
//! 2. `panel-latency`: corrected latency p50, p99 and p99.9 over time, log scale;
//! 3. `panel-distribution`: the latency percentile distribution, x on the usual
//!    `1/(1-p)` log axis (90 %, 99 %, 99.9 % equally spaced), y log scale.
//!
//! A caption holds the command line, the date and the headline figures.

use std::fmt::Write;

use super::{Report, thousands};
use crate::series::SeriesPoint;

const WIDTH: f64 = 960.0;
/// Left edge and width of every plot area; the legend sits right of it.
const PLOT_X: f64 = 90.0;
const PLOT_W: f64 = 660.0;
const PLOT_H: f64 = 200.0;
/// Height of a panel: title, plot area, axis labels.
const PANEL_H: f64 = 300.0;

const SENT: &str = "#1f77b4";
const ACKED: &str = "#ff7f0e";
const P50: &str = "#2ca02c";
const P99: &str = "#d62728";
const P99_9: &str = "#9467bd";
const MAX: &str = "#555";
const LANDED: &str = "#17becf";

/// The SVG plot of `report`. `command` is the run's command line and `unix_s` when it
/// ran, both for the caption.
pub fn plot_svg(report: &Report, command: &str, unix_s: u64) -> String {
    let caption = caption_lines(report, command, unix_s);
    let top = 24.0 + 18.0 * caption.len() as f64;
    let height = top + 3.0 * PANEL_H + 10.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>
<g id="caption">
"#
    );
    for (i, line) in caption.iter().enumerate() {
        let (size, weight) = if i == 0 { (15, "bold") } else { (12, "normal") };
        let _ = writeln!(
            s,
            r#"<text x="16" y="{}" font-size="{size}" font-weight="{weight}">{}</text>"#,
            22.0 + 18.0 * i as f64,
            esc(line)
        );
    }
    s.push_str("</g>\n");
    let series = &report.series;
    let window_s = series.iter().map(|p| p.span_s).sum::<f64>().max(1.0);
    throughput_panel(&mut s, top, series, window_s);
    latency_panel(&mut s, top + PANEL_H, series, window_s);
    distribution_panel(&mut s, top + 2.0 * PANEL_H, report);
    s.push_str("</svg>\n");
    s
}

/// The caption: headline, command line (wrapped), date.
fn caption_lines(r: &Report, command: &str, unix_s: u64) -> Vec<String> {
    let mut lines = vec![
        format!(
            "loadtest {} -> {}: {} records/s",
            r.run.mode,
            r.run.target,
            thousands(r.records_per_s as u64),
        ),
        format!(
            "corrected latency p50 {}, p99 {}, p99.9 {}, max {}; {} records ok, {} failed, {} errors",
            fmt_us(r.latency_us.p50),
            fmt_us(r.latency_us.p99),
            fmt_us(r.latency_us.p99_9),
            fmt_us(r.latency_us.max),
            thousands(r.records),
            thousands(r.failed_records_total),
            thousands(r.errors_total),
        ),
    ];
    let mut cur = String::from("$");
    for word in command.split(' ') {
        if cur.len() + word.len() > 130 {
            lines.push(std::mem::replace(&mut cur, String::from("   ")));
        }
        cur.push(' ');
        cur.push_str(word);
    }
    lines.push(cur);
    lines.push(format!(
        "{} UTC; {:.3} s measured after {} s warm-up; {} conn, {} records/batch, {} load",
        utc_date(unix_s),
        r.duration_s,
        r.run.warmup_s,
        r.run.connections,
        r.run.batch_records,
        r.run.load,
    ));
    lines
}

/// A plot area: maps data to pixels.
struct Area {
    /// Top of the plot area, px.
    top: f64,
    x_min: f64,
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

impl Area {
    fn x(&self, v: f64) -> f64 {
        PLOT_X + (v - self.x_min) / (self.x_max - self.x_min).max(1e-12) * PLOT_W
    }
    fn y(&self, v: f64) -> f64 {
        let f = ((v - self.y_min) / (self.y_max - self.y_min).max(1e-12)).clamp(0.0, 1.0);
        self.top + PLOT_H - f * PLOT_H
    }
}

/// Opens a panel's group: title, frame and axis labels (the plot area starts 36 px
/// below `top`).
fn panel_frame(s: &mut String, id: &str, top: f64, title: &str, x_label: &str, y_label: &str) {
    let plot_top = top + 36.0;
    let _ = write!(
        s,
        r#"<g id="{id}" class="panel">
<text x="{PLOT_X}" y="{}" font-size="14" font-weight="bold">{}</text>
<rect x="{PLOT_X}" y="{plot_top}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">{}</text>
"#,
        top + 22.0,
        esc(title),
        PLOT_X + PLOT_W / 2.0,
        plot_top + PLOT_H + 34.0,
        esc(x_label),
        plot_top + PLOT_H / 2.0,
        plot_top + PLOT_H / 2.0,
        esc(y_label),
    );
}

/// A tick on the x axis at data `v`, labelled `label`, with a light grid line.
fn x_tick(s: &mut String, a: &Area, v: f64, label: &str) {
    let x = a.x(v);
    let bottom = a.top + PLOT_H;
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
        a.top,
        bottom + 16.0,
        esc(label)
    );
}

/// A tick on the y axis at data `v`.
fn y_tick(s: &mut String, a: &Area, v: f64, label: &str) {
    let y = a.y(v);
    let _ = writeln!(
        s,
        r##"<line x1="{PLOT_X}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
        PLOT_X + PLOT_W,
        PLOT_X - 6.0,
        y + 4.0,
        esc(label)
    );
}

/// One line: a polyline through `points` (data coordinates), and dots when there
/// are few enough to tell apart.
fn line(s: &mut String, a: &Area, name: &str, color: &str, width: f64, points: &[(f64, f64)]) {
    let mut pts = String::with_capacity(points.len() * 14);
    for (x, y) in points {
        let _ = write!(pts, "{:.1},{:.1} ", a.x(*x), a.y(*y));
    }
    let _ = writeln!(
        s,
        r#"<polyline data-series="{name}" points="{}" fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round"/>"#,
        pts.trim_end()
    );
    if points.len() <= 60 {
        for (x, y) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                a.x(*x),
                a.y(*y)
            );
        }
    }
}

/// The legend right of the plot area: one coloured swatch and label per entry.
fn legend(s: &mut String, a: &Area, entries: &[(&str, String)]) {
    let x = PLOT_X + PLOT_W + 16.0;
    for (i, (color, label)) in entries.iter().enumerate() {
        let y = a.top + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 22.0,
            x + 28.0,
            y + 4.0,
            esc(label)
        );
    }
}

/// Time ticks: whole seconds, at most about 10.
fn time_ticks(s: &mut String, a: &Area) {
    let step = nice_step(a.x_max / 10.0).max(1.0);
    let mut t = 0.0;
    while t <= a.x_max + 1e-9 {
        x_tick(s, a, t, &format!("{t}"));
        t += step;
    }
}

/// Ticks at the powers of ten between `a.y_min` and `a.y_max` (log10 of µs).
fn log_latency_ticks(s: &mut String, a: &Area) {
    for e in a.y_min as i32..=a.y_max as i32 {
        y_tick(s, a, f64::from(e), &fmt_us(10u64.pow(e as u32)));
    }
}

fn throughput_panel(s: &mut String, top: f64, series: &[SeriesPoint], window_s: f64) {
    panel_frame(
        s,
        "panel-throughput",
        top,
        "Throughput over time",
        "time since the end of warm-up (s)",
        "records/s",
    );
    let rate = |n: u64, p: &SeriesPoint| n as f64 / p.span_s.max(1e-3);
    let mid = |p: &SeriesPoint| f64::from(p.t_s) + p.span_s / 2.0;
    let sent: Vec<(f64, f64)> = series.iter().map(|p| (mid(p), rate(p.sent, p))).collect();
    let acked: Vec<(f64, f64)> = series.iter().map(|p| (mid(p), rate(p.acked, p))).collect();
    let landed: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|p| p.landed.map(|n| (mid(p), rate(n, p))))
        .collect();
    let peak = sent
        .iter()
        .chain(&acked)
        .chain(&landed)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let y_max = nice_max(peak);
    let a = Area {
        top: top + 36.0,
        x_min: 0.0,
        x_max: window_s,
        y_min: 0.0,
        y_max,
    };
    time_ticks(s, &a);
    let step = y_max / 5.0;
    for i in 0..=5 {
        let v = step * f64::from(i);
        y_tick(s, &a, v, &fmt_si(v));
    }
    // Sent is drawn wide under acked: in closed loop they coincide.
    line(s, &a, "sent", SENT, 5.0, &sent);
    line(s, &a, "acked", ACKED, 1.8, &acked);
    let mut entries = vec![
        (SENT, "sent".to_owned()),
        (ACKED, "acked (completed)".to_owned()),
    ];
    if !landed.is_empty() {
        line(s, &a, "landed", LANDED, 1.8, &landed);
        entries.push((LANDED, "landed".to_owned()));
    }
    legend(s, &a, &entries);
    s.push_str("</g>\n");
}

fn latency_panel(s: &mut String, top: f64, series: &[SeriesPoint], window_s: f64) {
    panel_frame(
        s,
        "panel-latency",
        top,
        "Corrected latency over time",
        "time since the end of warm-up (s)",
        "latency (log scale)",
    );
    let mid = |p: &SeriesPoint| f64::from(p.t_s) + p.span_s / 2.0;
    let pick = |f: fn(&SeriesPoint) -> Option<u64>| -> Vec<(f64, f64)> {
        series
            .iter()
            .filter_map(|p| f(p).map(|v| (mid(p), (v.max(1) as f64).log10())))
            .collect()
    };
    let lines = [
        ("p50", P50, pick(|p| p.p50_us)),
        ("p99", P99, pick(|p| p.p99_us)),
        ("p99.9", P99_9, pick(|p| p.p99_9_us)),
    ];
    let (lo, hi) = log_range(lines.iter().flat_map(|l| l.2.iter().map(|p| p.1)));
    let a = Area {
        top: top + 36.0,
        x_min: 0.0,
        x_max: window_s,
        y_min: lo,
        y_max: hi,
    };
    time_ticks(s, &a);
    log_latency_ticks(s, &a);
    for (name, color, pts) in &lines {
        line(s, &a, name, color, 1.8, pts);
    }
    legend(
        s,
        &a,
        &[
            (P50, "p50".to_owned()),
            (P99, "p99".to_owned()),
            (P99_9, "p99.9".to_owned()),
        ],
    );
    s.push_str("</g>\n");
}

fn distribution_panel(s: &mut String, top: f64, r: &Report) {
    panel_frame(
        s,
        "panel-distribution",
        top,
        "Corrected latency by percentile (whole window)",
        "percentile",
        "latency (log scale)",
    );
    // 100 % is at infinity on this axis: the maximum is in the legend instead.
    let pts: Vec<(f64, f64)> = r
        .distribution
        .iter()
        .filter(|d| d.percentile < 100.0)
        .map(|d| {
            (
                (100.0 / (100.0 - d.percentile)).log10(),
                (d.latency_us.max(1) as f64).log10(),
            )
        })
        .collect();
    let (lo, hi) = log_range(pts.iter().map(|p| p.1));
    let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let a = Area {
        top: top + 36.0,
        x_min: 0.0,
        x_max,
        y_min: lo,
        y_max: hi,
    };
    for k in 0..=x_max as u32 {
        // 1/(1-p) = 10^k: 0 %, 90 %, 99 %, 99.9 % ...
        let label = if k == 0 {
            "0%".to_owned()
        } else {
            format!("{}%", 100.0 - 100.0 / 10f64.powi(k as i32))
        };
        x_tick(s, &a, f64::from(k), &label);
    }
    log_latency_ticks(s, &a);
    line(s, &a, "distribution", SENT, 1.8, &pts);
    let max_y = a.y((r.latency_us.max.max(1) as f64).log10());
    let _ = writeln!(
        s,
        r#"<line x1="{PLOT_X}" y1="{max_y:.1}" x2="{}" y2="{max_y:.1}" stroke="{MAX}" stroke-dasharray="6 4"/>"#,
        PLOT_X + PLOT_W
    );
    legend(
        s,
        &a,
        &[
            (SENT, format!("{} batches", thousands(r.latency_us.count))),
            (MAX, format!("max {}", fmt_us(r.latency_us.max))),
        ],
    );
    s.push_str("</g>\n");
}

/// Whole powers of ten around log10 values (at least one decade).
fn log_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if lo > hi {
        return (0.0, 3.0);
    }
    let lo = lo.floor();
    let hi = hi.ceil().max(lo + 1.0);
    (lo, hi)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for 0), with a
/// hair of slack so that a peak of exactly 2 M is not rounded up to 5 M by float error.
fn nice_max(v: f64) -> f64 {
    nice_at_least(v * (1.0 - 1e-9))
}

/// A 1, 2 or 5 step near `v`.
fn nice_step(v: f64) -> f64 {
    nice_at_least(v)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for 0).
fn nice_at_least(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

/// `1500000` as `1.5M`.
fn fmt_si(v: f64) -> String {
    let (d, unit) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = v / d;
    let x = (x * 100.0).round() / 100.0;
    format!("{x}{unit}")
}

/// µs in the unit that reads best: `850 µs`, `12.3 ms`, `1.2 s`.
fn fmt_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{} ms", round_sig(us as f64 / 1e3)),
        _ => format!("{} s", round_sig(us as f64 / 1e6)),
    }
}

/// Three significant digits at most.
fn round_sig(x: f64) -> f64 {
    let scale = if x >= 100.0 {
        1.0
    } else if x >= 10.0 {
        10.0
    } else {
        100.0
    };
    (x * scale).round() / scale
}

/// `s` with the five XML special characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c < ' ' && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `unix_s` as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_date(unix_s: u64) -> String {
    let (y, m, d) = crate::workload::civil_from_days((unix_s / 86_400) as i64);
    let secs = unix_s % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{run_info, stats};

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_date(1_796_562_000), "2026-12-06 13:00:00");
    }

    #[test]
    fn units_and_scales() {
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(12_345), "12.3 ms");
        assert_eq!(fmt_us(1_000_000), "1 s");
        assert_eq!(fmt_si(1_500_000.0), "1.5M");
        assert_eq!(nice_max(1_700_000.0), 2_000_000.0);
        assert_eq!(nice_max(2_000_000.0), 2_000_000.0);
        assert_eq!(log_range([1.2, 3.5].into_iter()), (1.0, 4.0));
        assert_eq!(esc(r#"a<b & "c'"#), "a&lt;b &amp; &quot;c&apos;");
    }

    #[test]
    fn one_point_per_entry_and_escaped_command() {
        let mut r = Report::new(run_info(), &stats(), 3.0);
        r.series = (0..3)
            .map(|t| SeriesPoint {
                t_s: t,
                span_s: 1.0,
                sent: 100,
                acked: 90,
                bytes: 900,
                batches: 9,
                landed: None,
                p50_us: (t != 1).then_some(10),
                p90_us: (t != 1).then_some(20),
                p99_us: (t != 1).then_some(30),
                p99_9_us: (t != 1).then_some(40),
                max_us: (t != 1).then_some(50),
            })
            .collect();
        let svg = plot_svg(&r, "loadtest run --path '/a&b'", 0);
        assert!(svg.contains("/a&amp;b"));
        let count = |name: &str| {
            let at = svg
                .find(&format!(r#"data-series="{name}" points=""#))
                .unwrap();
            let rest = &svg[at..];
            let pts = rest.split('"').nth(3).unwrap();
            pts.split(' ').count()
        };
        assert_eq!(count("sent"), 3);
        assert_eq!(count("acked"), 3);
        assert_eq!(count("p99"), 2);
        let below_100 = r
            .distribution
            .iter()
            .filter(|d| d.percentile < 100.0)
            .count();
        assert_eq!(count("distribution"), below_100);
    }
}
