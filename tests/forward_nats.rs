//! Forwarding into NATS JetStream with the real servers: `nats-server` (single and a
//! 3-node JetStream cluster) and HAProxy in front of two ringstash nodes. What a user
//! relies on: every acked record lands in JetStream once per Nats-Msg-Id, with its
//! bytes, its subject and headers, in offset order per partition, across SIGKILLs of
//! ringstash and outages of NATS servers.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Server, assert_contains, metric, require_tool};

/// A loopback port free now (the servers here need theirs in their config files).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_connectable(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One nats-server with JetStream, its config written by the test.
struct Nats {
    bin: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    /// `routes`: the cluster ports of every member (empty = a single server).
    fn new(bin: &Path, dir: &Path, name: &str, port: u16, cluster: Option<(u16, &[u16])>) -> Nats {
        let store = dir.join(format!("js-{name}"));
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
            store.display()
        );
        if let Some((cport, all)) = cluster {
            let routes: Vec<String> = all
                .iter()
                .filter(|p| **p != cport)
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: rs-test\n  listen: 127.0.0.1:{cport}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut n = Nats {
            bin: bin.to_owned(),
            conf: path,
            port,
            child: None,
        };
        n.start();
        n
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        wait_connectable(self.port, Duration::from_secs(10));
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One message as JetStream stored it.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    /// The Ringstash-Received-Ns header (absent on the direct publishes of the
    /// JetStream check).
    received_ns: Option<u64>,
    payload: Vec<u8>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Stream `name` and its state. A cluster that has just lost a server may take a few
/// seconds to answer JetStream API requests (its meta leader moves): those time out,
/// and are asked again for up to 30 s; what the tests assert is what is stored.
async fn stream_and_info(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> (
    async_nats::jetstream::stream::Stream,
    async_nats::jetstream::stream::Info,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = match js.get_stream(name).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => Ok(info.clone()),
                Err(e) => Err(e.to_string()),
            }
            .map(|info| (stream, info)),
            Err(e) => Err(e.to_string()),
        };
        match got {
            Ok(both) => return both,
            Err(e) if Instant::now() < deadline => {
                println!("stream {name}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("stream {name} not readable after 30 s: {e}"),
        }
    }
}

/// Every message of JetStream stream `name`, in stream order, read by sequence.
fn read_stream(url: &str, name: &str) -> Vec<Stored> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let (stream, info) = stream_and_info(&js, name).await;
        let state = info.state;
        let mut out = Vec::with_capacity(state.messages as usize);
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let m = stream.get_raw_message(seq).await.expect("get message");
            let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_string());
            out.push(Stored {
                subject: m.subject.to_string(),
                msg_id: h("Nats-Msg-Id").expect("Nats-Msg-Id"),
                received_ns: h("Ringstash-Received-Ns").map(|v| v.parse().unwrap()),
                payload: m.payload.to_vec(),
            });
        }
        out
    })
}

/// The server name of the leader of JetStream stream `name` in a cluster.
fn stream_leader(url: &str, name: &str) -> String {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let (_, info) = stream_and_info(&js, name).await;
        let cluster = info.cluster.expect("a clustered stream");
        cluster.leader.expect("a leader")
    })
}

fn as_strs(f: &[String]) -> Vec<&str> {
    f.iter().map(String::as_str).collect()
}

/// The offset a Nats-Msg-Id names, after checking its node, stream and partition.
fn offset_in(msg_id: &str, node: &str, partition: u32) -> u64 {
    let rest = msg_id
        .strip_prefix(&format!("{node}.default.{partition}."))
        .unwrap_or_else(|| panic!("msg id {msg_id} is not {node}'s partition {partition}"));
    rest.parse().unwrap()
}

/// Waits until `name` in /metrics satisfies `ok`; its last value.
#[track_caller]
fn wait_metric(addr: SocketAddr, name: &str, within: Duration, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(addr, name);
        if ok(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} = {v} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const CURSOR: &str = r#"ringstash_forward_cursor_offset{stream="default",partition="0"}"#;
const LAG: &str = r#"ringstash_forward_lag_records{stream="default",partition="0"}"#;

fn lines(tag: &str, range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("{tag}-{i}\n")).collect()
}

/// Sends through the acked listener; the number of records acked.
fn send_acked(addr: SocketAddr, tag: &str, range: std::ops::Range<u64>) -> u64 {
    common::acked_count(addr, &lines(tag, range)).unwrap_or(0)
}

fn forward_flags<'a>(url: &'a str, node: &'a str) -> Vec<&'a str> {
    vec![
        "--nats-url",
        url,
        "--node-id",
        node,
        "--nats-ack-timeout-ms",
        "1000",
        "--nats-retry-backoff-ms-max",
        "200",
    ]
}

/// Checks JetStream's own order of checks, which the forwarder's design rests on
/// (docs/scale-out.md): a resend of a stored message is answered as a duplicate even
/// when its Nats-Expected-Last-Msg-Id is stale, and a publish whose expectation is
/// not the stream's last id is refused.
#[test]
fn jetstream_checks_duplicates_before_the_expected_last_id() {
    let Some(bin) = require_tool("nats-server", "nats-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::new(&bin, dir.path(), "solo", free_port(), None);
    runtime().block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "order".into(),
            subjects: vec!["order.x".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let publish = |id: &'static str, expect: Option<&'static str>| {
            let js = js.clone();
            async move {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", id);
                if let Some(e) = expect {
                    h.insert("Nats-Expected-Last-Msg-Id", e);
                }
                js.publish_with_headers("order.x", h, id.as_bytes().to_vec().into())
                    .await
                    .unwrap()
                    .await
            }
        };
        assert!(!publish("a.0", None).await.unwrap().duplicate);
        assert!(!publish("a.1", Some("a.0")).await.unwrap().duplicate);
        assert!(!publish("a.2", Some("a.1")).await.unwrap().duplicate);
        // Resends after a restart: stale expectations, yet duplicates, not refusals.
        let dup = publish("a.1", Some("a.0")).await.unwrap();
        assert!(dup.duplicate, "{dup:?}");
        assert_eq!(dup.sequence, 2);
        assert!(publish("a.0", None).await.unwrap().duplicate);
        // A publish after a lost one: refused, not stored out of order.
        let err = publish("a.4", Some("a.3")).await.unwrap_err();
        assert_eq!(
            err.kind(),
            async_nats::jetstream::context::PublishErrorKind::WrongLastMessageId
        );
        assert!(!publish("a.3", Some("a.2")).await.unwrap().duplicate);
    });
    let stored = read_stream(&nats.url(), "order");
    let ids: Vec<&str> = stored.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids, ["a.0", "a.1", "a.2", "a.3"]);
}

/// One nats-server: records land with their subject, headers and bytes, in order;
/// a SIGKILLed ringstash resumes without loss or duplicates; while NATS is down the
/// lag grows in /metrics, and drains to 0 once it is back.
#[test]
fn records_reach_a_single_jetstream_server_across_kills_and_outages() {
    let Some(bin) = require_tool("nats-server", "nats-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::new(&bin, dir.path(), "solo", free_port(), None);
    let url = nats.url();
    let data = dir.path().join("data");
    let ports = [free_port(), free_port()];
    let acked_addr = format!("127.0.0.1:{}", ports[0]);
    let http_addr = format!("127.0.0.1:{}", ports[1]);
    let mut flags = forward_flags(&url, "n1");
    flags.extend(["--tcp-acked-addr", &acked_addr, "--http-addr", &http_addr]);
    let s = Server::start(&data, &flags);
    assert_eq!(metric(s.http, "ringstash_forward_enabled"), 1);
    assert_eq!(send_acked(s.tcp_acked, "a", 0..500), 500);
    wait_metric(s.http, CURSOR, Duration::from_secs(20), |v| v == 500);
    assert_eq!(metric(s.http, LAG), 0);
    assert_eq!(metric(s.http, "ringstash_forward_connected"), 1);
    let stored = read_stream(&url, "ringstash_n1_default_0");
    assert_eq!(stored.len(), 500);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(m.subject, "ringstash.n1.default.0");
        assert_eq!(m.msg_id, format!("n1.default.0.{i}"));
        assert_eq!(m.payload, format!("a-{i}").as_bytes());
        let received = m.received_ns.expect("Ringstash-Received-Ns");
        assert!(received <= now_ns && received > now_ns - 120_000_000_000);
    }
    // The labelled per-partition families pass Prometheus's own checker.
    let text = common::metrics(s.http);
    common::assert_promtool_clean(&text);
    assert_contains(
        &text,
        "ringstash_forward_errors_total{stream=\"default\",partition=\"0\",reason=\"out_of_order\"} 0\n",
    );
    // The cursor file holds the confirmed position (docs/format.md).
    let cursor = std::fs::read(data.join("nats.cursor")).unwrap();
    assert_eq!(&cursor[0..4], b"RSNC");
    assert_eq!(u64::from_le_bytes(cursor[8..16].try_into().unwrap()), 500);

    // SIGKILL while a burst is being forwarded, then restart on the same directory.
    assert_eq!(send_acked(s.tcp_acked, "b", 0..3000), 3000);
    s.kill9();
    let s = Server::restart_after_kill(&data, &flags);
    assert_eq!(send_acked(s.tcp_acked, "c", 0..500), 500);
    wait_metric(s.http, CURSOR, Duration::from_secs(30), |v| v == 4000);

    // NATS down: ingest goes on, the lag grows and is visible, then drains.
    nats.kill();
    assert_eq!(send_acked(s.tcp_acked, "d", 0..300), 300);
    wait_metric(
        s.http,
        "ringstash_forward_connected",
        Duration::from_secs(10),
        |v| v == 0,
    );
    wait_metric(s.http, LAG, Duration::from_secs(10), |v| v >= 300);
    nats.start();
    wait_metric(s.http, LAG, Duration::from_secs(30), |v| v == 0);
    assert_eq!(metric(s.http, CURSOR), 4300);
    assert_eq!(metric(s.http, "ringstash_forward_connected"), 1);

    let stored = read_stream(&url, "ringstash_n1_default_0");
    let want: Vec<String> = (0..500)
        .map(|i| format!("a-{i}"))
        .chain((0..3000).map(|i| format!("b-{i}")))
        .chain((0..500).map(|i| format!("c-{i}")))
        .chain((0..300).map(|i| format!("d-{i}")))
        .collect();
    assert_eq!(
        stored.len(),
        want.len(),
        "one message per record, no duplicates"
    );
    for (i, (m, w)) in stored.iter().zip(&want).enumerate() {
        assert_eq!(m.msg_id, format!("n1.default.0.{i}"));
        assert_eq!(m.payload, w.as_bytes());
    }
    assert_eq!(s.stop().code(), Some(0));
    let cursor = std::fs::read(data.join("nats.cursor")).unwrap();
    assert_eq!(u64::from_le_bytes(cursor[8..16].try_into().unwrap()), 4300);

    // A reset data directory under the same node_id: the stream is ahead of the new
    // log, whose records would be dropped as duplicates; the forwarder refuses, counts
    // it and lets the lag show.
    std::fs::remove_dir_all(&data).unwrap();
    let s = Server::start(&data, &flags);
    assert_eq!(send_acked(s.tcp_acked, "e", 0..10), 10);
    let errors =
        r#"ringstash_forward_errors_total{stream="default",partition="0",reason="stream"}"#;
    wait_metric(s.http, errors, Duration::from_secs(10), |v| v >= 1);
    assert_eq!(metric(s.http, LAG), 10);
    // The log line follows the count (and the first refusal may have come before the
    // ten records were committed, so its figure is not checked).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.stderr_text().contains("beyond this log's committed end") {
        assert!(Instant::now() < deadline, "{}", s.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read_stream(&url, "ringstash_n1_default_0").len(), 4300);
    assert_eq!(s.stop().code(), Some(0));
}

/// HAProxy in front of two ringstash nodes, health-checked on GET /healthz.
struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// Frontends `acked` and `http`, each balancing over the nodes' listeners.
    fn start(bin: &Path, dir: &Path, acked: u16, http: u16, nodes: &[(u16, u16)]) -> Haproxy {
        let mut conf = String::from(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\n",
        );
        for (name, port, which) in [("acked", acked, 0), ("http", http, 1)] {
            conf.push_str(&format!(
                "frontend {name}\n  bind 127.0.0.1:{port}\n  default_backend {name}_nodes\nbackend {name}_nodes\n  balance roundrobin\n  option httpchk GET /healthz\n  http-check expect status 200\n"
            ));
            for (i, n) in nodes.iter().enumerate() {
                let target = if which == 0 { n.0 } else { n.1 };
                conf.push_str(&format!(
                    "  server node{i} 127.0.0.1:{target} check port {} inter 200ms fall 1 rise 1\n",
                    n.1
                ));
            }
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        wait_connectable(acked, Duration::from_secs(10));
        Haproxy { child }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `count` records on one connection through `addr`; the payloads acked (the
/// acks are cumulative and in order, so the first `count` acked lines).
fn send_through(addr: SocketAddr, tag: &str, count: u64) -> Vec<String> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Vec::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payloads: Vec<String> = (0..count).map(|i| keyed(tag, i)).collect();
    let body: String = payloads.iter().map(|p| format!("{p}\n")).collect();
    if s.write_all(body.as_bytes()).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return Vec::new();
    }
    let mut acked = 0;
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        if let Some((n, _)) = common::parse_ack(&line) {
            acked = n;
        }
    }
    payloads.into_iter().take(acked as usize).collect()
}

/// A record keyed by one of 7 services (placed by FNV-1a of it in a partitioned
/// stream), with a unique id.
fn keyed(tag: &str, i: u64) -> String {
    format!(r#"{{"service":"svc-{}","id":"{tag}-{i}"}}"#, i % 7)
}

/// FNV-1a, 32 bits, from its published definition (docs/streams.md).
fn fnv1a32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(16_777_619)
    })
}

/// Partitions of the default stream in the cluster scenario.
const PARTITIONS: u32 = 3;

/// Sends one record with HTTP POST /ingest through `addr`; its payload if answered 2xx.
fn post_through(addr: SocketAddr, payload: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = format!("{payload}\n");
    s.write_all(&common::request(
        "POST",
        "/ingest",
        &[("Connection", "close")],
        body.as_bytes(),
    ))
    .ok()?;
    let r = common::read_response(&mut BufReader::new(s))?;
    (200..300).contains(&r.status).then(|| payload.to_string())
}

/// The issue's scenario: a 3-node JetStream cluster (file storage, R3), two ringstash
/// nodes behind HAProxy, producers through HAProxy; one ringstash node SIGKILLed and
/// restarted and one nats-server killed during the run. A consumer then finds every
/// acked record exactly once per Nats-Msg-Id, in offset order per partition.
#[test]
fn two_nodes_behind_haproxy_forward_into_a_jetstream_cluster() {
    let Some(nats_bin) = require_tool("nats-server", "nats-server") else {
        return;
    };
    let Some(haproxy_bin) = require_tool("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client_ports = [free_port(), free_port(), free_port()];
    let cluster_ports = [free_port(), free_port(), free_port()];
    let mut nats: Vec<Nats> = (0..3)
        .map(|i| {
            Nats::new(
                &nats_bin,
                dir.path(),
                &format!("n{i}"),
                client_ports[i],
                Some((cluster_ports[i], &cluster_ports)),
            )
        })
        .collect();
    let urls: Vec<String> = nats.iter().map(Nats::url).collect();
    let url = urls.join(",");
    let node_ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let names = ["node-a", "node-b"];
    let flags: Vec<Vec<String>> = (0..2)
        .map(|i| {
            let mut f: Vec<String> = forward_flags(&url, names[i])
                .into_iter()
                .map(String::from)
                .collect();
            f.extend(
                [
                    "--nats-replicas",
                    "3",
                    "--streams",
                    "default:partitions=3",
                    "--tcp-acked-addr",
                    &format!("127.0.0.1:{}", node_ports[i].0),
                    "--http-addr",
                    &format!("127.0.0.1:{}", node_ports[i].1),
                ]
                .map(String::from),
            );
            f
        })
        .collect();
    let data: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let mut nodes: Vec<Option<Server>> = (0..2)
        .map(|i| Some(Server::start(&data[i], &as_strs(&flags[i]))))
        .collect();
    let (lb_acked, lb_http) = (free_port(), free_port());
    let _lb = Haproxy::start(&haproxy_bin, dir.path(), lb_acked, lb_http, &node_ports);
    let lb_acked: SocketAddr = format!("127.0.0.1:{lb_acked}").parse().unwrap();
    let lb_http: SocketAddr = format!("127.0.0.1:{lb_http}").parse().unwrap();

    // Producers through HAProxy until told to stop: acked TCP and HTTP.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let got = if p == 0 {
                        send_through(lb_acked, &format!("tcp{round}"), 200)
                    } else {
                        post_through(lb_http, &keyed("http", round))
                            .into_iter()
                            .collect()
                    };
                    acked.lock().unwrap().extend(got);
                    round += 1;
                    std::thread::sleep(Duration::from_millis(if p == 0 { 20 } else { 5 }));
                }
            })
        })
        .collect();
    let acked_now = || acked.lock().unwrap().len();
    let wait_acked = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked_now() < n {
            assert!(
                Instant::now() < deadline,
                "producers stalled at {}",
                acked_now()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acked(1500);
    // Both nodes forwarding every partition (the cluster has elected its leaders, the
    // streams exist) before anything is killed.
    for n in nodes.iter().flatten() {
        for k in 0..PARTITIONS {
            let cursor =
                format!(r#"ringstash_forward_cursor_offset{{stream="default",partition="{k}"}}"#);
            wait_metric(n.http, &cursor, Duration::from_secs(20), |v| v > 0);
        }
    }
    nodes[0].take().unwrap().kill9();
    wait_acked(acked_now() + 800);
    // The server leading node-b's stream (node-b forwards meanwhile): its publishes
    // in flight are lost or stored as the leadership moves.
    let leader = stream_leader(&urls[0], "ringstash_node-b_default_0");
    let killed: usize = leader.trim_start_matches('n').parse().unwrap();
    nats[killed].kill();
    wait_acked(acked_now() + 800);
    nodes[0] = Some(Server::restart_after_kill(&data[0], &as_strs(&flags[0])));
    wait_acked(acked_now() + 1500);
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Both nodes drain into the cluster (two of three servers up: R3 has its quorum).
    // committed[node][partition]: each partition's committed end, its own offsets.
    let mut committed: Vec<Vec<u64>> = Vec::new();
    for n in nodes.iter().flatten() {
        for k in 0..PARTITIONS {
            let lag =
                format!(r#"ringstash_forward_lag_records{{stream="default",partition="{k}"}}"#);
            let deadline = Instant::now() + Duration::from_secs(30);
            while metric(n.http, &lag) != 0 {
                assert!(
                    Instant::now() < deadline,
                    "partition {k}: lag {} after 30 s; stderr:\n{}",
                    metric(n.http, &lag),
                    n.stderr_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let st = common::stats_json(n.http);
        let parts = st["streams"]["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), PARTITIONS as usize);
        committed.push(
            parts
                .iter()
                .map(|p| p["committed_end"].as_u64().unwrap())
                .collect(),
        );
    }
    for (n, name) in nodes.iter().flatten().zip(names) {
        for f in common::stats_json(n.http)["forward"]["partitions"]
            .as_array()
            .unwrap()
        {
            println!("{name}: forward {f}");
        }
    }
    let mut seen_ids = HashSet::new();
    let mut payloads: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        for k in 0..PARTITIONS {
            let stored = read_stream(
                &urls[(killed + 1) % 3],
                &format!("ringstash_{name}_default_{k}"),
            );
            let subject = format!("ringstash.{name}.default.{k}");
            // Every record committed in the partition once, in offset order, nothing
            // else; each where FNV-1a of its service puts it.
            assert_eq!(
                stored.len() as u64,
                committed[i][k as usize],
                "{name} partition {k}: one message per record"
            );
            for (o, m) in stored.iter().enumerate() {
                assert_eq!(m.subject, subject);
                assert_eq!(
                    offset_in(&m.msg_id, name, k),
                    o as u64,
                    "{name} partition {k}: offsets in order"
                );
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let service = v["service"].as_str().unwrap();
                assert_eq!(fnv1a32(service.as_bytes()) % PARTITIONS, k, "{service}");
                assert!(seen_ids.insert(m.msg_id.clone()), "{} twice", m.msg_id);
                *payloads.entry(m.payload.clone()).or_default() += 1;
            }
        }
    }
    assert!(acked.len() >= 4600, "{} acked", acked.len());
    for p in &acked {
        match payloads.get(p.as_bytes()) {
            Some(1) => {}
            other => panic!("acked record {p} found {other:?} times in JetStream"),
        }
    }
    for n in nodes.into_iter().flatten() {
        assert_eq!(n.stop().code(), Some(0));
    }
    drop(nats);
}
