//! Syslog ingest on one core: RFC 6587 framing and message → JSON record, the work a
//! reactor does per syslog frame beyond raw lines.
//!
//! Run with `cargo bench --bench syslog` (about a minute).
//!
//! | group | what one iteration is | throughput unit |
//! |-------|-----------------------|-----------------|
//! | `syslog_render` | a listener's `syslog::record::Renderer` rendering one 128-byte message (RFC 3164, RFC 5424 with and without structured data, not syslog), with the three enrichment fields; `rfc5424_each_timestamp_new` alternates two messages whose timestamps differ, as microsecond stamps do | records |
//! | `syslog_frame` | `SyslogFramer::split` over 1024 frames of 128 bytes (LF or octet-counted) | records |

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstash::syslog::{
    frame::{Split, SyslogFramer},
    record,
};

/// Messages as forwarders send them, about 128 bytes each.
const MESSAGES: [(&str, &str); 4] = [
    (
        "rfc3164",
        "<14>Dec  6 04:27:01 web-03 auth_service[4211]: INFO req-3f2a9c1e user login succeeded for id 1234 in 12 ms",
    ),
    (
        "rfc5424",
        "<14>1 2026-12-06T04:27:01.123456Z web-03 auth_service 4211 LOGIN - user login succeeded for id 1234 in 12 ms",
    ),
    (
        "rfc5424_sd",
        "<14>1 2026-12-06T04:27:01.123Z web-03 auth 4211 LOGIN [req@32473 id=\"3f2a9c1e\" ms=\"12\"] user login ok for 1234",
    ),
    (
        "unparsed",
        "2026-12-06T04:27:01.123456Z INFO auth_service req-3f2a9c1e user login succeeded for id 1234 in 12 ms, ok",
    ),
];

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("syslog_render");
    g.throughput(Throughput::Elements(1));
    let mut renderer = record::Renderer::new(record::this_year());
    renderer.set_extra(&[
        ("received_at", "2026-12-06T04:27:01.123456789Z"),
        ("client_ip", "127.0.0.1"),
        ("node_id", "bench"),
    ]);
    let mut out = Vec::with_capacity(1024);
    for (name, msg) in MESSAGES {
        g.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            b.iter(|| {
                renderer.render(black_box(msg.as_bytes()), &mut out);
                black_box(out.len())
            })
        });
    }
    // RFC 5424 stamps in microseconds: consecutive messages rarely share a timestamp,
    // so the renderer's last-timestamp text is no help (two messages, alternating).
    let pair = [
        MESSAGES[1].1.as_bytes(),
        b"<14>1 2026-12-06T04:27:01.123457Z web-03 auth_service 4211 LOGIN - user login succeeded for id 1234 in 12 ms".as_slice(),
    ];
    let mut i = 0;
    g.bench_function("rfc5424_each_timestamp_new", |b| {
        b.iter(|| {
            i ^= 1;
            renderer.render(black_box(pair[i]), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn frame(c: &mut Criterion) {
    const N: usize = 1024;
    let msg = MESSAGES[0].1;
    let lf: Vec<u8> = (0..N)
        .flat_map(|_| format!("{msg}\n").into_bytes())
        .collect();
    let counted: Vec<u8> = (0..N)
        .flat_map(|_| format!("{} {msg}", msg.len()).into_bytes())
        .collect();
    let mut g = c.benchmark_group("syslog_frame");
    g.throughput(Throughput::Elements(N as u64));
    for (name, input) in [("lf", &lf), ("octet_counted", &counted)] {
        g.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| {
                let mut framer = SyslogFramer::new(64 << 10);
                let (mut at, mut frames) = (0, 0);
                loop {
                    let (n, split) = framer.split(&input[at..]);
                    at += n;
                    match split {
                        Split::Incomplete => break,
                        Split::Frame(f) => frames += black_box(f).len(),
                        _ => {}
                    }
                }
                frames
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render, frame);
criterion_main!(benches);
