//! `lines`: raw TCP newline framing ([`LineFramer`]), fed as reads of a connection.

use ringstash::{
    net::{
        framing::{Framing, Target},
        lines::LineFramer,
    },
    wal::{
        BatchBuilder,
        format::{Decoded, RECORD_HEADER_BYTES, decode_record, stamp_offsets},
    },
};

/// Parameters: `record_bytes_max` 1..=256, the read size 1..=64, `batch_bytes_max`
/// 24..=1044. Then the connection's bytes, read `step` at a time into a buffer that
/// keeps what [`Framing::frame`] did not consume, as `net::tcp` does; the rest goes to
/// [`Framing::finish`] at the end of the stream.
///
/// Asserts: nothing consumed past the buffer; the partial line kept never exceeds
/// `record_bytes_max + 1` (the buffer bound); a batch over `batch_bytes_max` holds one
/// record; every framed record decodes, is non-empty, holds no LF and is at most
/// `record_bytes_max`; the records counted are the records framed; refused line
/// numbers only grow.
pub fn lines(data: &[u8]) {
    let ([a, b, c], input) = crate::params::<3>(data);
    let record_bytes_max = 1 + usize::from(a);
    let step = 1 + usize::from(b % 64);
    let batch_bytes_max = RECORD_HEADER_BYTES + 4 * usize::from(c);
    let mut framer = LineFramer::new(record_bytes_max);
    let mut batch = BatchBuilder::new(4096, record_bytes_max);
    let mut rejected: Vec<u64> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut counted = 0u64;
    let mut framed = 0u64;
    for read in input.chunks(step) {
        buf.extend_from_slice(read);
        loop {
            let mut on_reject = |n| rejected.push(n);
            let mut to = Target::new(&mut batch, 1, batch_bytes_max, &mut on_reject);
            let out = framer.frame(&buf, &mut to);
            assert!(out.consumed <= buf.len(), "consumed past the input");
            counted += u64::from(out.records);
            if batch.records() > 1 {
                assert!(
                    batch.bytes() <= batch_bytes_max,
                    "a batch of {} records is {} bytes, over {batch_bytes_max}",
                    batch.records(),
                    batch.bytes()
                );
            }
            buf.drain(..out.consumed);
            if !out.batch_full {
                break;
            }
            assert!(batch.records() > 0, "batch_full with an empty batch");
            framed += check_batch(&mut batch, record_bytes_max);
        }
        assert!(
            buf.len() <= record_bytes_max + 1,
            "{} bytes kept for a partial line, over record_bytes_max + 1 ({})",
            buf.len(),
            record_bytes_max + 1
        );
    }
    let mut on_reject = |n| rejected.push(n);
    let mut to = Target::new(&mut batch, 1, usize::MAX, &mut on_reject);
    counted += u64::from(framer.finish(&buf, &mut to));
    framed += check_batch(&mut batch, record_bytes_max);
    assert_eq!(counted, framed, "records counted vs records in the batches");
    assert!(
        rejected.windows(2).all(|w| w[0] < w[1]),
        "refused line numbers out of order: {rejected:?}"
    );
}

/// Takes the batch, stamps offsets as the writer would, decodes every frame and checks
/// each payload; returns the number of records.
fn check_batch(batch: &mut BatchBuilder, record_bytes_max: usize) -> u64 {
    let (mut frames, records) = batch.take();
    let stamped = stamp_offsets(&mut frames, 0, |_, _| {});
    assert_eq!(stamped, u64::from(records));
    let mut pos = 0;
    while pos < frames.len() {
        let Decoded::Record(r) = decode_record(&frames[pos..], record_bytes_max) else {
            panic!("a framed record does not decode at {pos}");
        };
        assert!(!r.payload.is_empty(), "an empty record was framed");
        assert!(r.payload.len() <= record_bytes_max, "record over the bound");
        assert!(!r.payload.contains(&b'\n'), "a record holds a LF");
        pos += r.frame_bytes();
    }
    stamped
}
