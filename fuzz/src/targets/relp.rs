//! `relp`: RELP frames ([`relp::parse`]) and the session's rules ([`Session::step`])
//! over one connection's bytes, with the server's answers.

use ringstash::syslog::relp::{self, Parsed, Session, Step};

/// Parameter: the DATALEN bound, 0..=1020 in steps of 4. Then the client's bytes.
///
/// Asserts: a frame is consumed within the input, and its data is within the bound;
/// the frame's proper prefix parses as `Incomplete` (a frame split across reads is
/// never refused); the session's answers (`rsp 200` to `open` with our offers, `rsp
/// 500` to a refusal) parse back as `rsp` frames with the refused TXNR; after an
/// accepted frame the expected TXNR is the next one (wrapping at `TXNR_MAX`).
pub fn relp(data: &[u8]) {
    let ([a], input) = crate::params::<1>(data);
    let data_bytes_max = 4 * usize::from(a);
    let mut session = Session::new();
    let mut at = 0;
    let mut answer = Vec::new();
    while at < input.len() {
        let rest = &input[at..];
        let (frame, n) = match relp::parse(rest, data_bytes_max) {
            Ok(Parsed::Incomplete) => return,
            Ok(Parsed::Frame(f, n)) => (f, n),
            Err(e) => {
                if let Some(txnr) = e.txnr() {
                    answer.clear();
                    relp::write_rsp(&mut answer, txnr, 500, &e.to_string(), b"");
                    check_answer(&answer, txnr);
                }
                return;
            }
        };
        assert!(
            n > 0 && n <= rest.len(),
            "frame of {n} bytes in {}",
            rest.len()
        );
        assert!(frame.data.len() <= data_bytes_max, "DATALEN over the bound");
        assert!(!frame.command.is_empty());
        assert!(
            matches!(
                relp::parse(&rest[..n - 1], data_bytes_max),
                Ok(Parsed::Incomplete)
            ),
            "a proper prefix of a frame is not Incomplete: {:?}",
            relp::parse(&rest[..n - 1], data_bytes_max)
        );
        at += n;
        let txnr = frame.txnr;
        answer.clear();
        match session.step(frame) {
            Ok(Step::Hint) => assert_eq!(txnr, 0),
            Ok(Step::Open { txnr }) => {
                relp::write_open_ok(&mut answer, txnr);
                check_answer(&answer, txnr);
            }
            Ok(Step::Syslog { txnr, message }) => {
                assert!(message.len() <= data_bytes_max);
                relp::write_ok(&mut answer, txnr);
                check_answer(&answer, txnr);
            }
            Ok(Step::Close { txnr }) => {
                relp::write_ok(&mut answer, txnr);
                check_answer(&answer, txnr);
            }
            Err(e) => {
                assert_eq!(e.txnr(), txnr);
                relp::write_rsp(&mut answer, txnr, 500, &e.to_string(), b"");
                check_answer(&answer, txnr);
                return;
            }
        }
        if txnr != 0 {
            assert_eq!(session.expected_txnr(), relp::next_txnr(txnr));
        }
    }
}

/// Our answer must be exactly one well-formed `rsp` frame for `txnr`.
fn check_answer(answer: &[u8], txnr: u32) {
    match relp::parse(answer, usize::MAX) {
        Ok(Parsed::Frame(f, n)) => {
            assert_eq!(n, answer.len(), "answer is more than one frame");
            assert_eq!(f.command, b"rsp");
            assert_eq!(f.txnr, txnr);
        }
        other => panic!(
            "our answer {:?} does not parse: {other:?}",
            String::from_utf8_lossy(answer)
        ),
    }
}
