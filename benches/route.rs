//! Placing records in partitions on one core: the work a reactor does per batch for a
//! partitioned stream (`streams::route`), beyond what a stream of one partition does
//! (nothing: its batches go on unread).
//!
//! Run with `cargo bench --bench route` (about half a minute).
//!
//! | group | what one iteration is | throughput unit |
//! |-------|-----------------------|-----------------|
//! | `route_split` | framing a batch of 1024 JSON records of about 128 bytes (loadtest's `--format json`, 8 services; CRC-32C included, as a reactor does) and `Placement::split` of it into 1, 4 or 16 partitions by `service`; `p1` hands the batch on unread, so `pN` - `p1` is the cost of placing | records |

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringstash::{
    streams::{Dest, SyslogRules, route::Placement},
    wal::BatchBuilder,
};

const SERVICES: [&str; 8] = [
    "auth_service",
    "billing_worker",
    "notification_service",
    "event_creator",
    "search_api",
    "gateway",
    "inventory",
    "reports",
];

fn split(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_split");
    g.throughput(Throughput::Elements(1024));
    let records: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2026-12-06T15:08:48.000113Z","level":"INFO","service":"{}","message":"refund issue {i}","pad":"3n7x"}}"#,
                SERVICES[i % SERVICES.len()]
            )
        })
        .collect();
    for partitions in [1u32, 4, 16] {
        let specs = format!("p:partitions={partitions}")
            .parse()
            .expect("streams");
        let placement = Placement::new(&specs, &SyslogRules::default());
        let dest = Dest {
            stream: 1,
            syslog_rules: false,
        };
        let mut builder = BatchBuilder::new(1 << 20, 1 << 20);
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("p{partitions}")),
            &records,
            |b, records| {
                b.iter(|| {
                    for r in records {
                        builder.push(1, r.as_bytes()).expect("fits");
                    }
                    let (frames, n) = builder.take();
                    black_box(placement.split(dest, frames, n, 3))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, split);
criterion_main!(benches);
