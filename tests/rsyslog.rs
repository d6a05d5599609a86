//! A private `rsyslogd` forwarding to ringstash's syslog listener with `omfwd`, in
//! both RFC 6587 framings: what an rsyslog user switching to ringstash runs. The
//! records stored are checked one by one. (RELP, with `omrelp`: `tests/relp.rs`.)

mod common;

use std::time::Duration;

use common::{
    Server, http,
    rsyslog::{Rsyslog, check_order, order_index, orders, require_rsyslogd},
    wait_records,
};

/// Feeds `n` messages to rsyslog and checks that ringstash stored each one, whole and
/// once, with its fields.
fn forwards_every_message(framing: &str) {
    let Some(rsyslogd) = require_rsyslogd() else {
        return;
    };
    const N: usize = 100_000;
    let (dir, s) = Server::start_in_tempdir(&[]);
    let rdir = dir.path().join("rsyslog");
    std::fs::create_dir(&rdir).unwrap();
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{}" protocol="tcp" TCP_Framing="{framing}" template="RSYSLOG_SyslogProtocol23Format")"#,
        s.syslog.port()
    );
    let r = Rsyslog::start(&rsyslogd, &rdir, &[], &action);
    r.feed(&orders(0, N));
    let mut records = wait_records(&s, N, Duration::from_secs(120), || framing.to_owned());
    assert_eq!(records.len(), N, "no more than were sent");
    // rsyslog's queue may reorder; every message must be there exactly once.
    records.sort_by_key(order_index);
    for (i, r) in records.iter().enumerate() {
        check_order(i, r, "rfc5424");
    }
    let errors = http(
        s.http,
        "GET",
        "/v1/logs?from=earliest&service=shop&level=error&limit=10000",
        &[],
        b"",
    )
    .json();
    assert_eq!(errors["records"].as_array().unwrap().len(), N / 10);
}

#[test]
fn rsyslog_omfwd_octet_counted_lands_every_message() {
    forwards_every_message("octet-counted");
}

#[test]
fn rsyslog_omfwd_lf_framed_lands_every_message() {
    forwards_every_message("traditional");
}
