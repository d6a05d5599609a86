//! Limits per source: open connections per client IP, and token-bucket rates
//! (records/s and bytes/s) per connection and per client IP.
//!
//! A producer over its rate is never dropped silently: a stream connection (raw TCP,
//! syslog, RELP) waits before handing its next batch to the log, and so stops reading,
//! which TCP turns into backpressure on the producer; an HTTP request is answered 429
//! with `Retry-After` and nothing of it is stored. Every wait and refusal is counted.
//!
//! The buckets let a source go into debt: a batch is taken whole (a batch larger than
//! the bucket would otherwise never pass), and the next one waits until the debt is
//! paid. Over any stretch longer than the burst allowance a source is therefore held
//! to its rate, whatever its batch sizes.
//!
//! The per-IP state is shared by every reactor (one mutex, taken once per batch, not
//! per record). An IP's entry outlives its last connection while its buckets are
//! below full, so that reconnecting does not reset its rate; entries without a
//! connection are pruned once the map holds more than twice `connections_max`
//! (those refilled first, then, if still over, all of them, forgetting their debt),
//! so the map stays bounded by that setting.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use super::NetCtx;

/// A token bucket: `rate` tokens a second, up to `burst` saved up; may go into debt.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: f64,
    burst: f64,
    /// Tokens now (negative: debt).
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate_per_s: u64, burst: Duration, now: Instant) -> Bucket {
        let rate = rate_per_s as f64;
        let burst = (rate * burst.as_secs_f64()).max(1.0);
        Bucket {
            rate,
            burst,
            level: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes `n`; how long until the level is back to zero (zero if not in debt).
    fn take(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= n as f64;
        self.debt_wait()
    }

    fn debt_wait(&self) -> Duration {
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.rate)
        }
    }
}

/// A records/s and a bytes/s bucket, either absent when its rate is 0 (no limit).
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    records: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Rates {
    fn new(records_per_s: u64, bytes_per_s: u64, burst: Duration, now: Instant) -> Rates {
        let make = |rate| (rate > 0).then(|| Bucket::new(rate, burst, now));
        Rates {
            records: make(records_per_s),
            bytes: make(bytes_per_s),
        }
    }

    /// Whether both buckets are full again (nothing of their use left to remember).
    fn full(&mut self, now: Instant) -> bool {
        [&mut self.records, &mut self.bytes]
            .into_iter()
            .flatten()
            .all(|b| {
                b.refill(now);
                b.level >= b.burst
            })
    }

    /// How long until neither bucket is in debt (zero: now).
    fn clear(&mut self, now: Instant) -> Duration {
        let mut wait = Duration::ZERO;
        for b in [&mut self.records, &mut self.bytes].into_iter().flatten() {
            b.refill(now);
            wait = wait.max(b.debt_wait());
        }
        wait
    }

    fn take(&mut self, records: u64, bytes: u64, now: Instant) -> Duration {
        let r = self
            .records
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(records, now));
        let b = self
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(bytes, now));
        r.max(b)
    }
}

/// One client IP: its open connections and its rates.
#[derive(Debug)]
struct Source {
    conns: usize,
    rates: Rates,
}

/// Every client IP with a connection open, shared by the reactors.
#[derive(Debug, Default)]
pub struct Sources {
    by_ip: Mutex<HashMap<IpAddr, Source>>,
    /// The rates of each token name that presented itself (HTTP, tokens on); pruned
    /// of refilled entries beyond `auth_tokens_max` names (tokens removed by a reload).
    by_token: Mutex<HashMap<String, Rates>>,
}

/// Why a source was limited, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Its connection's own rate.
    Connection,
    /// Its client IP's rate (all its connections together).
    Ip,
    /// Its token's rate (every request presenting it).
    Token,
}

/// A connection's hold on its source: counted in its IP's connections until dropped,
/// with its own rates.
#[derive(Debug)]
pub struct SourceGuard {
    ctx: Arc<NetCtx>,
    ip: IpAddr,
    conn: Rates,
}

impl SourceGuard {
    /// Counts a new connection from `ip`, or refuses it (None) when
    /// `connections_per_ip_max` are open from there already (counted).
    pub fn admit(ctx: &Arc<NetCtx>, ip: IpAddr) -> Option<SourceGuard> {
        let ip = source_of(ip);
        let s = &ctx.settings;
        let now = Instant::now();
        let burst = Duration::from_millis(s.rate_burst_ms);
        let mut by_ip = ctx.sources.by_ip.lock().expect("sources lock");
        if by_ip.len() > 2 * s.connections_max {
            by_ip.retain(|_, src| src.conns > 0 || !src.rates.full(now));
            if by_ip.len() > 2 * s.connections_max {
                by_ip.retain(|_, src| src.conns > 0);
            }
        }
        let src = by_ip.entry(ip).or_insert_with(|| Source {
            conns: 0,
            rates: Rates::new(s.ip_records_per_s_max, s.ip_bytes_per_s_max, burst, now),
        });
        if s.connections_per_ip_max > 0 && src.conns >= s.connections_per_ip_max {
            ctx.stats
                .connections_per_ip_refused_total
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        src.conns += 1;
        Some(SourceGuard {
            ctx: ctx.clone(),
            ip,
            conn: Rates::new(s.conn_records_per_s_max, s.conn_bytes_per_s_max, burst, now),
        })
    }

    /// Whether rates are configured at all (most setups: no; then nothing is locked).
    fn limited(&self) -> bool {
        let s = &self.ctx.settings;
        s.conn_records_per_s_max > 0
            || s.conn_bytes_per_s_max > 0
            || s.ip_records_per_s_max > 0
            || s.ip_bytes_per_s_max > 0
            || s.token_records_per_s_max > 0
            || s.token_bytes_per_s_max > 0
    }

    /// A stream connection's batch of `records` and `bytes`: takes them from its
    /// buckets; how long the connection must wait (reading nothing) until its source
    /// is back within its rates.
    fn pace_wait(&mut self, records: u64, bytes: u64) -> Duration {
        if !self.limited() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let conn_wait = self.conn.take(records, bytes, now);
        let ip_wait = self.with_ip(|r| r.take(records, bytes, now));
        let (wait, why) = if conn_wait >= ip_wait {
            (conn_wait, Limited::Connection)
        } else {
            (ip_wait, Limited::Ip)
        };
        if wait > Duration::ZERO {
            self.count(why);
            self.ctx
                .stats
                .rate_limited_wait_ms_total
                .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        }
        wait
    }

    /// An HTTP request of `records` and `bytes`, presenting token `token` (its name)
    /// if tokens are on: taken if none of the connection, its IP and its token is in
    /// debt (a request may then go into debt itself); otherwise refused with how long
    /// to wait (counted by the limit with the longest wait), and nothing taken.
    pub fn admit_request(
        &mut self,
        records: u64,
        bytes: u64,
        token: Option<&str>,
    ) -> Result<(), Duration> {
        if !self.limited() {
            return Ok(());
        }
        let now = Instant::now();
        let waits = [
            (self.conn.clear(now), Limited::Connection),
            (self.with_ip(|r| r.clear(now)), Limited::Ip),
            (
                token.map_or(Duration::ZERO, |t| {
                    self.with_token(t, now, |r| r.clear(now))
                }),
                Limited::Token,
            ),
        ];
        let (wait, why) = waits
            .into_iter()
            .fold((Duration::ZERO, None), |acc, (w, why)| {
                if w > acc.0 { (w, Some(why)) } else { acc }
            });
        if let Some(why) = why {
            self.count(why);
            return Err(wait);
        }
        self.conn.take(records, bytes, now);
        self.with_ip(|r| r.take(records, bytes, now));
        if let Some(t) = token {
            self.with_token(t, now, |r| r.take(records, bytes, now));
        }
        Ok(())
    }

    fn with_token<T>(&self, name: &str, now: Instant, f: impl FnOnce(&mut Rates) -> T) -> T {
        let s = &self.ctx.settings;
        let mut by_token = self.ctx.sources.by_token.lock().expect("sources lock");
        if !by_token.contains_key(name) && by_token.len() >= s.auth_tokens_max {
            by_token.retain(|_, r| !r.full(now));
        }
        let burst = Duration::from_millis(s.rate_burst_ms);
        let rates = by_token.entry(name.to_owned()).or_insert_with(|| {
            Rates::new(
                s.token_records_per_s_max,
                s.token_bytes_per_s_max,
                burst,
                now,
            )
        });
        f(rates)
    }

    fn with_ip<T>(&self, f: impl FnOnce(&mut Rates) -> T) -> T {
        let mut by_ip = self.ctx.sources.by_ip.lock().expect("sources lock");
        let src = by_ip
            .get_mut(&self.ip)
            .expect("a guard's IP stays in the map");
        f(&mut src.rates)
    }

    fn count(&self, why: Limited) {
        let c = match why {
            Limited::Connection => &self.ctx.stats.rate_limited_conn_total,
            Limited::Ip => &self.ctx.stats.rate_limited_ip_total,
            Limited::Token => &self.ctx.stats.rate_limited_token_total,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream connection's batch of `records` and `bytes` (see [`SourceGuard`]): waits
/// out its source's debt. The wait counts as activity for the idle watchdog
/// (`last_activity` is moved to its end): a producer held back by its rate is not idle.
pub async fn pace(
    source: &std::cell::RefCell<SourceGuard>,
    last_activity: &std::cell::Cell<Instant>,
    records: u64,
    bytes: u64,
) {
    let wait = source.borrow_mut().pace_wait(records, bytes);
    if wait > Duration::ZERO {
        last_activity.set(Instant::now() + wait);
        tokio::time::sleep(wait).await;
    }
}

/// The payload bytes of a batch of `records` records framed in `frames` bytes.
pub fn payload_bytes(frames: usize, records: u32) -> u64 {
    (frames - records as usize * crate::wal::format::RECORD_HEADER_BYTES) as u64
}

/// The source an address belongs to: an IPv4 address itself (an IPv4-mapped IPv6
/// one as IPv4), an IPv6 address's /64, the block one host or site is given, so that
/// one client does not escape its limits by using many addresses of its block.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut by_ip = self.ctx.sources.by_ip.lock().expect("sources lock");
        if let Some(src) = by_ip.get_mut(&self.ip) {
            src.conns -= 1;
            // Kept while its use is remembered: reconnecting must not reset a rate.
            if src.conns == 0 && src.rates.full(Instant::now()) {
                by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(source_of(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_bucket_holds_a_source_to_its_rate_whatever_its_batches() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, Duration::from_millis(100), t0);
        // The burst (100) passes at once; a batch of 300 then owes 300 tokens: 0.3 s.
        assert_eq!(b.take(100, t0), Duration::ZERO);
        let w = b.take(300, t0);
        assert!((w.as_secs_f64() - 0.3).abs() < 1e-9, "{w:?}");
        // After the wait the debt is paid; the refill never exceeds the burst.
        let t1 = t0 + w;
        assert_eq!(b.take(0, t1), Duration::ZERO);
        b.refill(t1 + Duration::from_secs(10));
        assert!((b.level - 100.0).abs() < 1e-9);
        // 10 s of batches of 50 at whatever pace: at most rate x time + burst pass.
        let mut t = t1 + Duration::from_secs(10);
        let end = t + Duration::from_secs(10);
        let mut taken = 0u64;
        while t < end {
            t += b.take(50, t).max(Duration::from_micros(1));
            taken += 50;
        }
        let allowed = 1000.0 * 10.0 + 100.0 + 50.0;
        assert!((taken as f64) <= allowed, "{taken} > {allowed}");
        assert!((taken as f64) >= 1000.0 * 10.0 * 0.99, "{taken}");
    }
}
