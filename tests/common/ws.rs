//! Shared harness of the `fanout_*` tests: real WebSocket clients (tungstenite) on
//! `/v1/stream` and the parsing of what they receive.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use tungstenite::{Message, WebSocket};

use super::{Server, tcp_send_all};

pub type Ws = WebSocket<TcpStream>;

/// One delivered record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub offset: u64,
    pub data: String,
    pub service: Option<String>,
    pub level: Option<String>,
}

pub fn ws_addr(s: &Server) -> SocketAddr {
    s.ws.expect("the server prints ws=")
}

/// Opens a subscription; panics on a refused handshake.
pub fn subscribe(addr: SocketAddr, query: &str) -> Ws {
    subscribe_on(TcpStream::connect(addr).expect("connect ws"), addr, query)
}

pub fn subscribe_on(stream: TcpStream, addr: SocketAddr, query: &str) -> Ws {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = format!("ws://{addr}/v1/stream?{query}");
    let (ws, resp) = tungstenite::client::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("subscribe {url}: {e:?}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The refusal of a subscription: status and JSON body.
pub fn refused(
    addr: SocketAddr,
    path_and_query: &str,
    origin: Option<&str>,
) -> (u16, serde_json::Value) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}{path_and_query}"
    ))
    .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tungstenite::client::client(req, stream) {
        Ok(_) => panic!("{path_and_query} was accepted"),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&body)));
            (resp.status().as_u16(), json)
        }
        Err(e) => panic!("{path_and_query}: unexpected {e:?}"),
    }
}

pub fn parse_message(text: &str) -> (Vec<Rec>, u64, u64) {
    let v: serde_json::Value = serde_json::from_str(text).expect("message is JSON");
    let recs = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| Rec {
            offset: r["offset"].as_u64().unwrap(),
            data: r["data"].as_str().unwrap().to_owned(),
            service: r["service"].as_str().map(str::to_owned),
            level: r["level"].as_str().map(str::to_owned),
        })
        .collect();
    (
        recs,
        v["next"].as_u64().unwrap(),
        v["committed_end"].as_u64().unwrap(),
    )
}

/// Reads messages until `n` records arrived (or panics after `within`), handing each
/// data message to `parse` for (records, next, committed_end). Returns the records and
/// the last `next`.
pub fn read_until<T>(
    ws: &mut Ws,
    n: usize,
    within: Duration,
    mut parse: impl FnMut(Message) -> Option<(Vec<T>, u64, u64)>,
) -> (Vec<T>, u64) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut next = 0;
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        match ws.read() {
            Ok(m) => {
                let Some((recs, nx, end)) = parse(m) else {
                    continue;
                };
                assert!(nx <= end, "next {nx} beyond committed_end {end}");
                assert!(!recs.is_empty(), "empty message");
                next = nx;
                out.extend(recs);
            }
            Err(e) => panic!("subscription failed after {} records: {e}", out.len()),
        }
    }
    (out, next)
}

/// JSON records until `n` arrived; see [`read_until`].
pub fn read_records(ws: &mut Ws, n: usize, within: Duration) -> (Vec<Rec>, u64) {
    read_until(ws, n, within, |m| match m {
        Message::Text(t) => Some(parse_message(&t)),
        _ => None,
    })
}

/// Ingests `lines` over one TCP connection and returns (count, last_offset) of the ack.
pub fn ingest_lines(s: &Server, lines: &[String]) -> (u64, u64) {
    let mut payload = lines.join("\n");
    payload.push('\n');
    let acks = tcp_send_all(s.tcp_acked, payload.as_bytes());
    super::last_ack(&acks).unwrap_or_else(|| panic!("no ack in {acks:?}"))
}

pub fn stats(s: &Server) -> serde_json::Value {
    super::stats_json(s.http)
}

pub fn assert_exact(recs: &[Rec], first: u64, expected: &[String]) {
    assert_eq!(recs.len(), expected.len(), "record count");
    for (i, (r, e)) in recs.iter().zip(expected).enumerate() {
        assert_eq!(r.offset, first + i as u64, "offset of record {i}");
        assert_eq!(&r.data, e, "payload of offset {}", r.offset);
    }
}
