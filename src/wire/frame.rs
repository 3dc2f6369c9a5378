//! Kafka framing: the 4-byte length prefix and the few header bytes the hot path peeks at.
//!
//! Nothing here allocates. Every function takes the bytes read so far and answers `Ok(None)` when
//! it needs more, so the connection loop can call it on partial reads.

use std::fmt;

/// Bytes of the big-endian length that prefixes every Kafka frame.
pub const LENGTH_PREFIX: usize = 4;
/// A request starts with api_key (i16), api_version (i16) and correlation_id (i32).
pub const REQUEST_PREFIX: usize = 8;
/// A response starts with correlation_id (i32).
pub const RESPONSE_PREFIX: usize = 4;

const PRODUCE: i16 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Negative(i32),
    TooLarge { size: usize, max: usize },
    TooSmall { size: usize, min: usize },
    BadHeader(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Negative(size) => write!(f, "negative frame length {size}"),
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds --max-frame-bytes {max}")
            }
            FrameError::TooSmall { size, min } => {
                write!(f, "frame of {size} bytes is shorter than its {min}-byte header")
            }
            FrameError::BadHeader(why) => write!(f, "malformed header: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads the length prefix: the size of the frame body that follows it.
pub fn body_len(buf: &[u8], min: usize, max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(*prefix);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    if size < min {
        return Err(FrameError::TooSmall { size, min });
    }
    Ok(Some(size))
}

/// The fixed first fields of a request, enough to route and track it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Parses the prefix from a frame body (after the length prefix).
    pub fn parse(body: &[u8]) -> Option<RequestPrefix> {
        let bytes = body.first_chunk::<REQUEST_PREFIX>()?;
        Some(RequestPrefix {
            api_key: i16::from_be_bytes([bytes[0], bytes[1]]),
            api_version: i16::from_be_bytes([bytes[2], bytes[3]]),
            correlation_id: i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
    }

    pub fn is_produce(&self) -> bool {
        self.api_key == PRODUCE
    }
}

/// The `client.id` of a request (header v1 and later: a nullable string after the prefix);
/// `None` when it is null or not all there.
pub fn request_client_id(body: &[u8]) -> Option<&[u8]> {
    let length = body.get(REQUEST_PREFIX..REQUEST_PREFIX + 2)?;
    let length = usize::try_from(i16::from_be_bytes([length[0], length[1]])).ok()?;
    body.get(REQUEST_PREFIX + 2..REQUEST_PREFIX + 2 + length)
}

/// The correlation id at the start of a response body.
pub fn response_correlation_id(body: &[u8]) -> Option<i32> {
    body.first_chunk::<RESPONSE_PREFIX>().map(|b| i32::from_be_bytes(*b))
}

/// Reads `acks` from a Produce request body, walking past client_id, the header's tagged fields
/// (request header v2, Produce v9+) and transactional_id (v3+). `Ok(None)`: more bytes needed.
pub fn produce_acks(body: &[u8], version: i16) -> Result<Option<i16>, FrameError> {
    let mut cursor = Cursor { buf: body, pos: REQUEST_PREFIX, topics_started: false };
    let parsed = (|| {
        cursor.skip_nullable_string()?;
        if version >= 9 {
            cursor.skip_tagged_fields()?;
        }
        if version >= 9 {
            cursor.skip_compact_nullable_string()?;
        } else if version >= 3 {
            cursor.skip_nullable_string()?;
        }
        cursor.i16()
    })();
    match parsed {
        Ok(acks) => Ok(Some(acks)),
        Err(Short::NeedMore) => Ok(None),
        Err(Short::Invalid(why)) => Err(FrameError::BadHeader(why)),
    }
}

/// A topic as a request names it: by name, or by id from Produce v13 and Fetch v13 on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id([u8; 16]),
}

/// What the first bytes of a Produce request tell about its topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceTopics {
    /// Every topic the request writes to.
    All(Vec<TopicRef>),
    /// More bytes are needed to reach the first topic.
    NeedMore,
    /// Topics after the first sit behind its records: only the whole frame tells.
    BeyondHead,
}

/// Lists a Produce request's topics without decoding records. `body` is the frame after its
/// length prefix, whole or in part; a request for one topic is known from its first bytes.
pub fn produce_topics(body: &[u8], version: i16) -> Result<ProduceTopics, FrameError> {
    let mut cursor = Cursor { buf: body, pos: REQUEST_PREFIX, topics_started: false };
    let flexible = version >= 9;
    let walked = (|| {
        cursor.skip_nullable_string()?;
        if flexible {
            cursor.skip_tagged_fields()?;
            cursor.skip_compact_nullable_string()?;
        } else if version >= 3 {
            cursor.skip_nullable_string()?;
        }
        cursor.take(2 + 4)?; // acks, timeout_ms
        let count = cursor.array_len(flexible)?;
        let mut topics = Vec::with_capacity(count.min(64));
        for index in 0..count {
            topics.push(if version >= 13 {
                TopicRef::Id(cursor.take(16)?.try_into().expect("16 bytes"))
            } else {
                TopicRef::Name(cursor.string(flexible)?)
            });
            cursor.topics_started = true;
            if index + 1 == count {
                break;
            }
            for _ in 0..cursor.array_len(flexible)? {
                cursor.take(4)?; // partition index
                cursor.skip_bytes(flexible)?;
                if flexible {
                    cursor.skip_tagged_fields()?;
                }
            }
            if flexible {
                cursor.skip_tagged_fields()?;
            }
        }
        Ok(topics)
    })();
    match walked {
        Ok(topics) => Ok(ProduceTopics::All(topics)),
        Err(Short::NeedMore) if cursor.topics_started => Ok(ProduceTopics::BeyondHead),
        Err(Short::NeedMore) => Ok(ProduceTopics::NeedMore),
        Err(Short::Invalid(why)) => Err(FrameError::BadHeader(why)),
    }
}

enum Short {
    NeedMore,
    Invalid(&'static str),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Set once a topic was read: running short after that means later topics are not here yet.
    topics_started: bool,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short::Invalid("length overflow"))?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short::NeedMore)?;
        self.pos = end;
        Ok(bytes)
    }

    fn i16(&mut self) -> Result<i16, Short> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn unsigned_varint(&mut self) -> Result<u32, Short> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Short::Invalid("varint longer than 5 bytes"))
    }

    fn skip_nullable_string(&mut self) -> Result<(), Short> {
        match self.i16()? {
            -1 => Ok(()),
            len if len < 0 => Err(Short::Invalid("negative string length")),
            len => self.take(len as usize).map(drop),
        }
    }

    fn skip_compact_nullable_string(&mut self) -> Result<(), Short> {
        let len_plus_one = self.unsigned_varint()? as usize;
        self.take(len_plus_one.saturating_sub(1)).map(drop)
    }

    fn i32(&mut self) -> Result<i32, Short> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length: i32, or unsigned varint + 1 in flexible versions. Null counts as empty.
    fn array_len(&mut self, flexible: bool) -> Result<usize, Short> {
        if flexible {
            return Ok((self.unsigned_varint()? as usize).saturating_sub(1));
        }
        match self.i32()? {
            -1 => Ok(0),
            n if n < 0 => Err(Short::Invalid("negative array length")),
            n => Ok(n as usize),
        }
    }

    fn string(&mut self, flexible: bool) -> Result<String, Short> {
        let len = if flexible {
            (self.unsigned_varint()? as usize).checked_sub(1).ok_or(Short::Invalid("null topic name"))?
        } else {
            usize::try_from(self.i16()?).map_err(|_| Short::Invalid("null topic name"))?
        };
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Short::Invalid("topic name is not UTF-8"))
    }

    fn skip_bytes(&mut self, flexible: bool) -> Result<(), Short> {
        let len = if flexible {
            (self.unsigned_varint()? as usize).saturating_sub(1)
        } else {
            match self.i32()? {
                -1 => 0,
                n if n < 0 => return Err(Short::Invalid("negative bytes length")),
                n => n as usize,
            }
        };
        self.take(len).map(drop)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), Short> {
        for _ in 0..self.unsigned_varint()? {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kaos_testkit::{Produce, Topic};

    /// A Produce request with no topics: the fixed fields, the client id, from v9 an unknown
    /// tagged field in the header (tag 5, two bytes) that readers must skip, from v3 the
    /// transactional id, then acks and a 30 s timeout.
    fn produce_body(version: i16, client_id: &str, transactional_id: Option<&str>, acks: i16) -> Bytes {
        Produce::new(version)
            .correlation_id(7)
            .client_id(client_id)
            .transactional_id(transactional_id)
            .acks(acks)
            .timeout_ms(30_000)
            .header_tagged_field(5, vec![0xaa, 0xbb])
            .body()
    }

    #[test]
    fn length_prefix_is_bounded() {
        assert_eq!(body_len(&[0, 0], 8, 100), Ok(None));
        assert_eq!(body_len(&[0, 0, 0, 20, 1], 8, 100), Ok(Some(20)));
        assert_eq!(body_len(&[0xff, 0xff, 0xff, 0xff], 8, 100), Err(FrameError::Negative(-1)));
        assert_eq!(body_len(&[0, 0, 1, 0], 8, 100), Err(FrameError::TooLarge { size: 256, max: 100 }));
        assert_eq!(body_len(&[0, 0, 0, 3], 8, 100), Err(FrameError::TooSmall { size: 3, min: 8 }));
    }

    #[test]
    fn request_prefix_reads_the_fixed_fields() {
        let body = produce_body(7, "me", None, 1);
        let prefix = RequestPrefix::parse(&body).unwrap();
        assert_eq!((prefix.api_key, prefix.api_version, prefix.correlation_id), (0, 7, 7));
        assert!(RequestPrefix::parse(&body[..7]).is_none());
        assert_eq!(response_correlation_id(&[0, 0, 1, 2, 9]), Some(258));
    }

    #[test]
    fn acks_are_found_in_every_produce_version() {
        for version in 0..=13 {
            for (txn, acks) in [(None, 0), (Some("txn-1"), -1), (None, 1)] {
                let body = produce_body(version, "client-x", txn, acks);
                assert_eq!(produce_acks(&body, version), Ok(Some(acks)), "v{version} {txn:?}");
            }
        }
    }

    #[test]
    fn truncated_produce_headers_ask_for_more() {
        let body = produce_body(9, "client-x", Some("t"), 0);
        // After acks: the timeout (4 bytes), no topics (1) and no request tagged fields (1).
        let acks_end = body.len() - 6;
        for cut in 0..acks_end {
            assert_eq!(produce_acks(&body[..cut], 9), Ok(None), "cut at {cut}");
        }
        assert_eq!(produce_acks(&body[..acks_end], 9), Ok(Some(0)));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = body_len(&bytes, 8, 1 << 20);
            let _ = RequestPrefix::parse(&bytes);
            let _ = response_correlation_id(&bytes);
            for version in [0, 3, 9, 13] {
                let _ = produce_acks(&bytes, version);
                let _ = produce_topics(&bytes, version);
            }
        }
    }

    /// A Produce request for `topics`, named below v13 and with ids `[i + 1; 16]` from v13, each
    /// with two partitions of 300 opaque record bytes.
    fn produce_request_body(version: i16, topics: &[&str]) -> Bytes {
        let mut produce = Produce::new(version).correlation_id(0).client_id("peek").acks(-1).timeout_ms(0);
        for (i, name) in topics.iter().enumerate() {
            let topic = Topic::new(name, [i as u8 + 1; 16]);
            produce = produce.topic(topic.partition(0, vec![7u8; 300]).partition(1, vec![7u8; 300]));
        }
        produce.body()
    }

    #[test]
    fn produce_topics_are_read_without_decoding_records() {
        for version in 3..=13 {
            let names = ["orders", "payments", "audit"];
            let expected: Vec<TopicRef> = (0..3)
                .map(|i| {
                    if version >= 13 {
                        TopicRef::Id([i as u8 + 1; 16])
                    } else {
                        TopicRef::Name(names[i].into())
                    }
                })
                .collect();
            let body = produce_request_body(version, &names);
            assert_eq!(
                produce_topics(&body, version),
                Ok(ProduceTopics::All(expected.clone())),
                "v{version}"
            );
            // One topic is known from the head alone, long before its records end.
            let single = produce_request_body(version, &names[..1]);
            let head = &single[..single.len() - 500];
            assert_eq!(
                produce_topics(head, version),
                Ok(ProduceTopics::All(expected[..1].to_vec())),
                "v{version}"
            );
            assert_eq!(produce_topics(&body[..20], version), Ok(ProduceTopics::NeedMore), "v{version}");
            assert_eq!(produce_topics(&body[..200], version), Ok(ProduceTopics::BeyondHead), "v{version}");
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let mut body = produce_body(9, "", None, 1).to_vec();
        body.truncate(REQUEST_PREFIX + 2);
        body.extend_from_slice(&[0xff; 6]);
        assert_eq!(produce_acks(&body, 9), Err(FrameError::BadHeader("varint longer than 5 bytes")));
    }
}
