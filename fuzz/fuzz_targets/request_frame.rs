//! The hot path's peeks at a request frame: `body_len`, `RequestPrefix::parse`, `produce_acks`
//! and `response_correlation_id`.
//!
//! Input: a request frame as read from a socket (length prefix, then body). The Produce version
//! is the one the frame's own header names, and that version modulo 14.
//!
//! Checks: nothing panics; `body_len` answers what its arguments allow; the prefixes read the
//! fixed fields; every partial read of the body asks for more or answers what the whole body
//! does; and where kafka-protocol decodes the request, `produce_acks` found its `acks`.
#![no_main]

use kafka_protocol::messages::{ApiKey, ProduceRequest};
use kaos::wire::codec::decode_request;
use kaos::wire::frame::{self, FrameError, LENGTH_PREFIX, REQUEST_PREFIX, RequestPrefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let declared = data.first_chunk::<LENGTH_PREFIX>().map(|b| i32::from_be_bytes(*b));
    for (min, max) in [(REQUEST_PREFIX, 100 << 20), (0, usize::MAX), (0, 0)] {
        match frame::body_len(data, min, max) {
            Ok(None) => assert!(declared.is_none()),
            Ok(Some(size)) => {
                assert_eq!(Some(size as i64), declared.map(i64::from));
                assert!((min..=max).contains(&size));
            }
            Err(FrameError::Negative(size)) => assert!(size < 0 && Some(size) == declared),
            Err(FrameError::TooLarge { size, max: m }) => assert!(m == max && size > max),
            Err(FrameError::TooSmall { size, min: m }) => assert!(m == min && size < min),
            Err(FrameError::BadHeader(why)) => panic!("body_len read a header: {why}"),
        }
    }

    let body = data.get(LENGTH_PREFIX..).unwrap_or_default();
    let prefix = RequestPrefix::parse(body);
    assert_eq!(prefix.is_some(), body.len() >= REQUEST_PREFIX);
    if let Some(prefix) = prefix {
        assert_eq!(prefix.api_key.to_be_bytes(), body[0..2]);
        assert_eq!(prefix.api_version.to_be_bytes(), body[2..4]);
        assert_eq!(prefix.correlation_id.to_be_bytes(), body[4..8]);
    }
    let correlation_id = frame::response_correlation_id(body);
    assert_eq!(correlation_id.map(i32::to_be_bytes).as_ref().map(|b| &b[..]), body.get(..4));

    let named = prefix.map_or(0, |p| p.api_version);
    for version in [named, named.rem_euclid(14)] {
        let whole = frame::produce_acks(body, version);
        // The connection loop calls it on partial reads: a prefix of the body asks for more
        // or answers what the whole body does.
        for cut in cuts(body.len()) {
            let part = frame::produce_acks(&body[..cut], version);
            assert!(part == Ok(None) || part == whole, "v{version} cut {cut}: {part:?} vs {whole:?}");
        }
        if let Ok((_, request)) = decode_request::<ProduceRequest>(ApiKey::Produce, version, body) {
            // kaos refuses varints longer than five bytes, as Kafka does; kafka-protocol reads
            // the fifth byte's continuation bit as the end.
            let overlong = whole == Err(FrameError::BadHeader("varint longer than 5 bytes"));
            assert!(
                overlong || whole == Ok(Some(request.acks)),
                "v{version}: {whole:?}, kafka-protocol decodes it"
            );
        }
    }
});

/// Where to cut the body for partial reads: every byte of a short head, then a few spread out.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = (len / 16).max(1);
    (0..len.min(64)).chain((64..len).step_by(step))
}
