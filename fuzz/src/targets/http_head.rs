//! `http_head`: a request head ([`http_proto::parse_head`]), its body framed by
//! `Content-Length` or decoded by [`ChunkedDecoder`], then its `Content-Encoding`
//! undone ([`http_proto::decode_body`], gzip included).

use ringstash::http_proto::{self, BodyKind, ChunkedDecoder, HttpError};

/// Parameters: `http_header_bytes_max` 64..=4144, the read size 1..=64, the body bound
/// 1..=4096 and the decoded-body bound 1..=16384. Then the request's bytes.
///
/// Asserts: the head consumed is within the input and the bound, and a proper prefix of
/// a complete head is not complete; the chunked decoder consumes within each buffer,
/// never yields more than the body bound, and gives the same body (or the same
/// refusal) whether the bytes come at once or `step` at a time, as reads would; a
/// decoded body is within its bound, and an identity body is returned unchanged.
pub fn http_head(data: &[u8]) {
    let ([a, b, c, d], input) = crate::params::<4>(data);
    let header_bytes_max = 64 + 16 * usize::from(a);
    let step = 1 + usize::from(b % 64);
    let body_bytes_max = 1 + 16 * usize::from(c);
    let decoded_bytes_max = 1 + 64 * usize::from(d);
    let (head, consumed) = match http_proto::parse_head(input, header_bytes_max) {
        Ok(Some(h)) => h,
        Ok(None) | Err(_) => return,
    };
    assert!(consumed <= input.len() && consumed <= header_bytes_max);
    assert!(
        matches!(
            http_proto::parse_head(&input[..consumed - 1], header_bytes_max),
            Ok(None) | Err(_)
        ),
        "a proper prefix of a head is complete"
    );
    let rest = &input[consumed..];
    let body = match head.body {
        BodyKind::None => Vec::new(),
        BodyKind::Length(n) => {
            if n > body_bytes_max as u64 {
                return; // refused before reading: `http_proto::too_large`
            }
            rest[..rest.len().min(n as usize)].to_vec()
        }
        BodyKind::Chunked => {
            let whole = chunked_at_once(rest, body_bytes_max);
            let pieces = chunked_in_reads(rest, step, body_bytes_max);
            assert_eq!(
                whole, pieces,
                "chunked decoding depends on how the body was split"
            );
            match whole {
                Ok((body, true)) => body,
                Ok((_, false)) | Err(_) => return,
            }
        }
    };
    let coding = head.content_encoding.as_deref();
    if let Ok(decoded) = http_proto::decode_body(coding, body.clone(), decoded_bytes_max) {
        if coding.is_none() {
            assert_eq!(decoded, body, "identity body changed");
        } else {
            assert!(
                decoded.len() <= decoded_bytes_max,
                "decoded body over its bound"
            );
        }
    }
}

/// The body and whether the decoder finished, from all of `rest` in one call.
fn chunked_at_once(rest: &[u8], max: usize) -> Result<(Vec<u8>, bool), HttpError> {
    let mut dec = ChunkedDecoder::default();
    let mut body = Vec::new();
    let used = dec.decode(rest, &mut body, max)?;
    assert!(used <= rest.len());
    assert!(body.len() <= max, "chunked body over body_bytes_max");
    Ok((body, dec.is_done()))
}

/// The same, reading `step` bytes at a time into a buffer that keeps what the decoder
/// did not consume, as `net::http` does.
fn chunked_in_reads(rest: &[u8], step: usize, max: usize) -> Result<(Vec<u8>, bool), HttpError> {
    let mut dec = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut buf = Vec::new();
    for read in rest.chunks(step) {
        buf.extend_from_slice(read);
        let used = dec.decode(&buf, &mut body, max)?;
        assert!(used <= buf.len());
        assert!(body.len() <= max, "chunked body over body_bytes_max");
        buf.drain(..used);
        if dec.is_done() {
            break;
        }
    }
    Ok((body, dec.is_done()))
}
