//! The per-second time series, the percentile distribution and the `--plot` SVG, from
//! a real run against the real `ringstash serve`.

mod support;

use serde_json::Value;
use support::{Server, f, lt, serial, u};

/// A 3-second closed-loop run: one series entry per second whose counts add up to the
/// report's totals, percentiles in order in every entry and in the distribution, and
/// an SVG with the three panels drawing exactly those points.
#[test]
fn series_sums_to_the_totals_and_the_plot_draws_it() {
    let _g = serial();
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("run.svg");
    let r = lt(&format!(
        "--mode tcp-acked --addr {} -d 3s -c 2 --batch 256 --plot {}",
        srv.tcp,
        svg_path.display()
    ));
    let series = r["series"].as_array().expect("series is an array");
    let duration = f(&r, "duration_s");
    assert!((3.0..3.5).contains(&duration), "{r}");
    assert_eq!(series.len(), 3, "one entry per second: {r}");
    let sum = |k: &str| series.iter().map(|e| e[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("acked"), u(&r, "records"), "acked adds up to records");
    assert_eq!(sum("bytes"), u(&r, "bytes"));
    assert_eq!(sum("batches"), u(&r, "batches"));
    // No warm-up: every batch sent is measured.
    assert_eq!(sum("sent"), u(&r, "sent_records_total"));
    let spans: f64 = series.iter().map(|e| e["span_s"].as_f64().unwrap()).sum();
    assert!((spans - duration).abs() < 0.003, "{spans} vs {duration}");
    let max_us = u(&r, "latency_us.max");
    for (i, e) in series.iter().enumerate() {
        assert_eq!(e["t_s"], i, "{e}");
        assert!(
            e["acked"].as_u64().unwrap() > 0,
            "a second without acks: {e}"
        );
        let p: Vec<u64> = ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
            .iter()
            .map(|k| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}")))
            .collect();
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "not monotone: {e}");
        assert!(p[0] >= 1 && p[4] <= max_us, "{e} vs max {max_us}");
    }
    // A closed-loop second acks about what it sends.
    let mid = &series[1];
    let (sent, acked) = (
        mid["sent"].as_u64().unwrap(),
        mid["acked"].as_u64().unwrap(),
    );
    assert!(acked * 2 > sent && sent * 2 > acked, "{mid}");

    let dist = r["distribution"].as_array().expect("distribution");
    assert!(dist.len() > 10, "{r}");
    for w in dist.windows(2) {
        let (p0, p1) = (w[0]["percentile"].as_f64(), w[1]["percentile"].as_f64());
        assert!(p0 < p1, "percentiles increase: {w:?}");
        assert!(
            w[0]["latency_us"].as_u64() <= w[1]["latency_us"].as_u64(),
            "latency does not decrease: {w:?}"
        );
    }
    let last = dist.last().unwrap();
    assert_eq!(last["percentile"], 100.0);
    assert_eq!(last["latency_us"].as_u64().unwrap(), max_us);
    let p50 = u(&r, "latency_us.p50");
    let at50 = dist
        .iter()
        .find(|d| d["percentile"].as_f64().unwrap() >= 50.0)
        .unwrap();
    assert_eq!(at50["latency_us"].as_u64().unwrap(), p50);

    let svg = std::fs::read_to_string(&svg_path).expect("the plot was written");
    check_well_formed(&svg);
    for id in ["panel-throughput", "panel-latency", "panel-distribution"] {
        assert!(svg.contains(&format!(r#"<g id="{id}""#)), "no {id}");
    }
    for name in ["sent", "acked", "p50", "p99", "p99.9"] {
        let pts = polyline(&svg, name);
        assert_eq!(pts.len(), series.len(), "{name}: {pts:?}");
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "{name}: x grows");
    }
    let below_100 = dist
        .iter()
        .filter(|d| d["percentile"].as_f64().unwrap() < 100.0)
        .count();
    assert_eq!(polyline(&svg, "distribution").len(), below_100);
    // Axis labels with units, legend, and the caption's command line.
    for text in [
        "records/s",
        "time since the end of warm-up (s)",
        "latency (log scale)",
        "percentile",
        "99.9%",
        "acked (completed)",
        "--mode tcp-acked",
        " UTC; ",
    ] {
        assert!(svg.contains(text), "no {text:?} in the plot");
    }
    // Higher throughput is drawn higher (smaller y): the sent line's points are in
    // the order of the series' rates.
    let sent_pts = polyline(&svg, "sent");
    let rate = |e: &Value| e["sent"].as_f64().unwrap() / e["span_s"].as_f64().unwrap();
    for i in 0..series.len() {
        for j in 0..series.len() {
            if rate(&series[i]) > rate(&series[j]) * 1.01 {
                assert!(sent_pts[i].1 < sent_pts[j].1, "{i} vs {j}");
            }
        }
    }
}

/// The points of `<polyline data-series="name" points="...">`.
fn polyline(svg: &str, name: &str) -> Vec<(f64, f64)> {
    let start = svg
        .find(&format!(r#"<polyline data-series="{name}""#))
        .unwrap_or_else(|| panic!("no {name} polyline"));
    let tag = &svg[start..start + svg[start..].find("/>").unwrap()];
    let pts = tag
        .split(r#"points=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    pts.split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Panics unless `doc` is well-formed XML as the plot writes it: an XML declaration,
/// one root element, balanced tags, quoted attributes, and `&` only in the five
/// predefined entities or numeric references.
fn check_well_formed(doc: &str) {
    let rest = doc
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .expect("XML declaration");
    let b = rest.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            let end = rest[i..].find('<').map_or(b.len(), |n| i + n);
            let text = &rest[i..end];
            assert!(
                !stack.is_empty() || text.trim().is_empty(),
                "text outside the root: {text:?}"
            );
            check_entities(text);
            i = end;
            continue;
        }
        if rest[i..].starts_with("<!--") {
            i += rest[i..].find("-->").expect("unterminated comment") + 3;
            continue;
        }
        let end = i + rest[i..].find('>').expect("unterminated tag");
        let tag = &rest[i + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let (name, mut attrs) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            assert!(
                !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b':'),
                "bad tag name {name:?}"
            );
            let mut seen = Vec::new();
            loop {
                attrs = attrs.trim_start();
                if attrs.is_empty() {
                    break;
                }
                let (key, after) = attrs.split_once("=\"").expect("attribute key=\"value\"");
                assert!(!seen.contains(&key), "duplicate attribute {key} on {name}");
                seen.push(key);
                let (value, after) = after.split_once('"').expect("closing quote");
                assert!(!value.contains('<'), "< in attribute {key}");
                check_entities(value);
                attrs = after;
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        i = end + 1;
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1, "one root element");
}

fn check_entities(text: &str) {
    for (at, _) in text.match_indices('&') {
        let ent = &text[at..at + text[at..].find(';').expect("entity without ;") + 1];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent) || ent.starts_with("&#"),
            "bad entity {ent}"
        );
    }
}

/// With `--landed-metric` (a receiver's own count of stored records), every entry says
/// how many records landed in it, they add up to at most what landed in all, and the
/// plot draws them as a third throughput line.
#[test]
fn landed_records_per_second_with_landed_metric() {
    let _g = serial();
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("landed.svg");
    // Fire and forget to the acked listener, paced, so that only the server's
    // counter says what was stored.
    let r = lt(&format!(
        "--mode tcp --addr {} -d 2s -c 2 --batch 256 --rate 50000 --landed-metric {}/ringstash_records_committed_total --plot {}",
        srv.tcp,
        srv.http,
        svg_path.display()
    ));
    let series = r["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{r}");
    let landed: Vec<u64> = series
        .iter()
        .map(|e| {
            e["landed"]
                .as_u64()
                .unwrap_or_else(|| panic!("landed in {e}"))
        })
        .collect();
    assert_eq!(r["landed"]["complete"], true, "{r}");
    let landed_total = u(&r, "landed.bytes_landed") / 128;
    let records = u(&r, "records");
    let sum: u64 = landed.iter().sum();
    assert!(sum <= landed_total, "{landed:?} vs {landed_total}");
    assert!(sum * 2 >= records, "{landed:?} vs {records} records");
    assert!(landed.iter().all(|&n| n > 0), "{landed:?}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    check_well_formed(&svg);
    assert_eq!(polyline(&svg, "landed").len(), 2);
    // Without --landed-*, `landed` is null.
    let plain = lt(&format!("--mode tcp-acked --addr {} -d 1s -c 1", srv.tcp));
    assert!(plain["series"][0]["landed"].is_null(), "{plain}");
}
