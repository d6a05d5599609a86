//! `query`: the read API's and the stream's query strings ([`filter::parse`]), with
//! the pieces around it: `access_token` taken out first ([`auth::take_access_token`]),
//! percent-decoding, the filter applied to a record, and the Origin check.

use ringstash::{
    auth,
    query::filter::{self, Encoding},
};

/// Parameters: read API or stream (`allow_limit`), `read_records_max` 1..=256,
/// `filter_bytes_max` 16..=1036. Then the query string (lossily UTF-8: it arrives as a
/// `&str` from the request head).
///
/// Asserts: a `limit` is only accepted on the read API and within `1..=limit_max`;
/// `format=` only on the stream; an empty filter passes every record and a filter
/// without service or level ignores the record's fields; percent-decoding never grows
/// a string; the query left after `take_access_token` holds no `access_token` pair
/// and no more bytes; the Origin check lets through `*` and requests without Origin.
pub fn query(data: &[u8]) {
    let ([a, b, c], rest) = crate::params::<3>(data);
    let allow_limit = a & 1 == 1;
    let limit_max = 1 + usize::from(b);
    let filter_bytes_max = 16 + 4 * usize::from(c);
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();

    if let Ok(d) = filter::percent_decode(text) {
        assert!(d.len() <= text.len(), "percent-decoding grew the string");
    }
    let query = match auth::take_access_token(text) {
        Ok((_, q)) => {
            assert!(q.len() <= text.len());
            assert!(
                q.split('&').all(|p| !p.starts_with("access_token=")),
                "access_token left in {q:?}"
            );
            q
        }
        Err(_) => text.to_owned(),
    };
    if let Ok(q) = filter::parse(&query, allow_limit, limit_max, filter_bytes_max) {
        if let Some(n) = q.limit {
            assert!(allow_limit && (1..=limit_max).contains(&n));
        }
        if q.encoding == Encoding::Binary {
            assert!(!allow_limit, "format= accepted by the read API");
        }
        let f = &q.filter;
        if f.is_empty() {
            assert!(f.matches(rest, None, None));
        }
        if !f.needs_fields() {
            assert_eq!(
                f.matches(rest, None, None),
                f.matches(rest, Some("api"), Some("error"))
            );
        }
        let (service, level) = filter::json_fields(rest);
        let _ = f.matches(rest, service.as_deref(), level.as_deref());
    }
    // The Origin check, with the query's own text as setting, origin and host.
    let mut parts = text.splitn(3, '\n');
    let (allowed, origin, host) = (parts.next(), parts.next(), parts.next());
    let allowed = allowed.unwrap_or("");
    let got = filter::origin_allowed(allowed, origin, host);
    if origin.is_none() || allowed.trim() == "*" {
        assert!(got, "no Origin, or `*`, must be allowed");
    }
}
