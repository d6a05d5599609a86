//! Enrichment and validation of JSON log objects (`POST /v1/logs`), without I/O.
//!
//! Enrichment (`json_enrich`, on by default) sets three fields on every object, server
//! side, so producers need no instrumentation for them: `received_at` (RFC 3339 UTC,
//! microseconds), `client_ip` (the TCP peer), `node_id` (the `node_id` setting, by
//! default the host name). They overwrite fields of the same name.
//!
//! Validation (`json_validate`, off by default) refuses the whole request (400) when an
//! object has an empty or missing `service` or `message`, a `level` outside the known
//! set, or a `timestamp` that is not RFC 3339 or is further than
//! `json_timestamp_skew_ms_max` from the server's clock.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

/// Levels accepted by validation (case-insensitive).
pub const LEVELS: [&str; 7] = [
    "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL",
];

/// What to do to each JSON log object of a request.
#[derive(Debug, Clone)]
pub struct JsonPolicy {
    /// Set received_at, client_ip, node_id.
    pub enrich: bool,
    /// Check service, message, level, timestamp.
    pub validate: bool,
    /// Largest distance of `timestamp` from now, under validation.
    pub timestamp_skew_max: Duration,
    /// This node's id.
    pub node_id: String,
}

/// Per-request values for enrichment, computed once per request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// RFC 3339 receive time.
    pub received_at: String,
    /// The client's IP address.
    pub client_ip: String,
    /// When the request was received, for the timestamp check.
    pub now: SystemTime,
}

impl JsonPolicy {
    /// Validates then enriches `obj` (element `index` of the request).
    ///
    /// # Errors
    /// A sentence naming the element and the field that failed validation.
    pub fn apply(
        &self,
        index: usize,
        obj: &mut Map<String, Value>,
        req: &RequestInfo,
    ) -> Result<(), String> {
        if self.validate {
            self.check(obj, req.now)
                .map_err(|why| format!("log object {index}: {why}"))?;
        }
        if self.enrich {
            obj.insert("received_at".into(), Value::String(req.received_at.clone()));
            obj.insert("client_ip".into(), Value::String(req.client_ip.clone()));
            obj.insert("node_id".into(), Value::String(self.node_id.clone()));
        }
        Ok(())
    }

    fn check(&self, obj: &Map<String, Value>, now: SystemTime) -> Result<(), String> {
        for field in ["service", "message"] {
            match obj.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                Some(Value::String(_)) => return Err(format!("`{field}` is empty")),
                Some(_) => return Err(format!("`{field}` is not a string")),
                None => return Err(format!("`{field}` is missing")),
            }
        }
        if let Some(level) = obj.get("level") {
            let ok = level
                .as_str()
                .is_some_and(|l| LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l)));
            if !ok {
                return Err(format!(
                    "`level` {level} is not one of {}",
                    LEVELS.join(", ")
                ));
            }
        }
        if let Some(ts) = obj.get("timestamp") {
            let text = ts.as_str().ok_or("`timestamp` is not a string")?;
            let t = humantime::parse_rfc3339_weak(text)
                .map_err(|e| format!("`timestamp` {text:?} is not RFC 3339: {e}"))?;
            let skew = t
                .duration_since(now)
                .or_else(|_| now.duration_since(t))
                .unwrap_or_default();
            if skew > self.timestamp_skew_max {
                return Err(format!(
                    "`timestamp` {text:?} is {} s from the server's clock (json_timestamp_skew_ms_max {} ms)",
                    skew.as_secs(),
                    self.timestamp_skew_max.as_millis()
                ));
            }
        }
        Ok(())
    }
}

/// The host name, for the default `node_id`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A policy and a request for the unit tests of the modules that apply a policy.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Enriching as node `n1`, validating if asked, with a skew bound of 7 days.
    pub fn policy(validate: bool) -> JsonPolicy {
        JsonPolicy {
            enrich: true,
            validate,
            timestamp_skew_max: Duration::from_secs(7 * 86_400),
            node_id: "n1".into(),
        }
    }

    /// A request from 127.0.0.1 received at 2026-11-22T00:00:00Z.
    pub fn req() -> RequestInfo {
        RequestInfo {
            received_at: "2026-11-22T00:00:00.000000Z".into(),
            client_ip: "127.0.0.1".into(),
            now: humantime::parse_rfc3339("2026-11-22T00:00:00Z").unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        fixtures::{policy, req},
        *,
    };

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn enriches_and_overwrites() {
        let mut o = obj(serde_json::json!({"message": "m", "node_id": "spoofed"}));
        policy(false).apply(0, &mut o, &req()).unwrap();
        assert_eq!(o["node_id"], "n1");
        assert_eq!(o["client_ip"], "127.0.0.1");
        assert_eq!(o["received_at"], "2026-11-22T00:00:00.000000Z");
    }

    #[test]
    fn validation_names_the_field() {
        let p = policy(true);
        let ok = serde_json::json!({"service": "auth", "message": "m", "level": "warn", "timestamp": "2026-11-21T12:00:00.5Z"});
        p.apply(0, &mut obj(ok), &req()).unwrap();
        let cases = [
            (serde_json::json!({"message": "m"}), "`service` is missing"),
            (
                serde_json::json!({"service": " ", "message": "m"}),
                "`service` is empty",
            ),
            (
                serde_json::json!({"service": "s", "message": "m", "level": "LOUD"}),
                "`level`",
            ),
            (
                serde_json::json!({"service": "s", "message": "m", "timestamp": "yesterday"}),
                "not RFC 3339",
            ),
            (
                serde_json::json!({"service": "s", "message": "m", "timestamp": "2020-01-01T00:00:00Z"}),
                "from the server's clock",
            ),
        ];
        for (v, want) in cases {
            let err = p.apply(3, &mut obj(v), &req()).unwrap_err();
            assert!(
                err.starts_with("log object 3: ") && err.contains(want),
                "{err}"
            );
        }
    }
}
