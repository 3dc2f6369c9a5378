//! Unit tests of `Lane` with scripted in-memory streams and small routers.

use std::io::ErrorKind;
use std::task::Waker;
use std::time::Duration;

use super::*;
use crate::proxy::pace::Shape;

/// Most `step` calls one drive may take: every test settles far below it.
const MAX_STEPS: usize = 100_000;
/// A max_frame that never gets in the way.
const ROOMY: usize = 64 * 1024 * 1024;

/// What the scripted source does on one read.
#[derive(Debug)]
enum Read {
    /// Bytes: as many as the lane has room for, the rest on the next read.
    Data(Vec<u8>),
    Pending,
    Eof,
    Fail(ErrorKind),
}

/// A source that plays a script; once it is played out, nothing more arrives (`Pending`).
struct Source {
    script: VecDeque<Read>,
    polls: usize,
}

impl Source {
    fn new(script: impl IntoIterator<Item = Read>) -> Source {
        Source { script: script.into_iter().collect(), polls: 0 }
    }

    fn chunks(chunks: impl IntoIterator<Item = Vec<u8>>) -> Source {
        Source::new(chunks.into_iter().map(Read::Data))
    }

    fn played_out(&self) -> bool {
        self.script.is_empty()
    }
}

impl AsyncRead for Source {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.polls += 1;
        // A socket read into no room returns 0, which reads as EOF.
        assert!(!buf.is_empty(), "the lane read into an empty buffer");
        match self.script.pop_front() {
            None | Some(Read::Pending) => Poll::Pending,
            Some(Read::Eof) => Poll::Ready(Ok(0)),
            Some(Read::Fail(kind)) => Poll::Ready(Err(kind.into())),
            Some(Read::Data(mut chunk)) => {
                assert!(!chunk.is_empty(), "an empty chunk would read as EOF");
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.script.push_front(Read::Data(chunk.split_off(n)));
                }
                Poll::Ready(Ok(n))
            }
        }
    }
}

/// What the scripted destination does on one write.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// Takes at most this many bytes.
    Accept(usize),
    Pending,
    /// Claims success while taking nothing.
    Zero,
    Fail(ErrorKind),
}

/// A destination that plays a script, then does `then` on every later write, and records
/// what it took.
struct Sink {
    script: VecDeque<Write>,
    then: Write,
    written: Vec<u8>,
    /// Size of every write that took bytes, in order.
    writes: Vec<usize>,
    /// How many times the script (not `then`) answered `Pending`.
    scripted_pending: usize,
}

impl Sink {
    fn new(script: impl IntoIterator<Item = Write>, then: Write) -> Sink {
        Sink {
            script: script.into_iter().collect(),
            then,
            written: Vec::new(),
            writes: Vec::new(),
            scripted_pending: 0,
        }
    }

    fn unlimited() -> Sink {
        Sink::new([], Write::Accept(usize::MAX))
    }

    fn limited(limit: usize) -> Sink {
        Sink::new([], Write::Accept(limit))
    }
}

impl AsyncWrite for Sink {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        assert!(!buf.is_empty(), "the lane wrote an empty slice");
        let action = match self.script.pop_front() {
            Some(Write::Pending) => {
                self.scripted_pending += 1;
                Write::Pending
            }
            Some(action) => action,
            None => self.then,
        };
        match action {
            Write::Accept(limit) => {
                let n = limit.min(buf.len());
                assert!(n > 0, "use Write::Zero to accept nothing");
                self.written.extend_from_slice(&buf[..n]);
                self.writes.push(n);
                Poll::Ready(Ok(n))
            }
            Write::Pending => Poll::Pending,
            Write::Zero => Poll::Ready(Ok(0)),
            Write::Fail(kind) => Poll::Ready(Err(kind.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// A Kafka frame: big-endian length prefix, then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = i32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A body of `len` bytes that starts with `tag`; the rest tells frames apart.
fn body(tag: u8, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(tag) << 32 | len as u64);
    (0..len).map(|i| if i == 0 { tag } else { rng.u8(..) }).collect()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One chunk per byte.
fn bytewise(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.iter().map(|&b| vec![b]).collect()
}

fn step<R: Router>(
    lane: &mut Lane,
    src: &mut Source,
    dst: &mut Sink,
    router: &mut R,
) -> Result<Progress, LaneError> {
    lane.step(src, dst, router, &mut cx())
}

/// Steps until a step makes no progress, with the source played out and no scripted `Pending`
/// from the destination in the way; panics if that takes more than `MAX_STEPS`. Returns what
/// every step reported.
fn drive<R: Router>(
    lane: &mut Lane,
    src: &mut Source,
    dst: &mut Sink,
    router: &mut R,
) -> Result<Vec<Progress>, LaneError> {
    let mut steps = Vec::new();
    for _ in 0..MAX_STEPS {
        let pending = dst.scripted_pending;
        let progress = step(lane, src, dst, router)?;
        steps.push(progress);
        if !progress.any() && src.played_out() && dst.scripted_pending == pending {
            return Ok(steps);
        }
    }
    panic!("the lane did not settle in {MAX_STEPS} steps");
}

/// Forwards every frame and records what each `on_frame` call was shown.
#[derive(Default)]
struct Pass<const MIN: usize> {
    seen: Vec<(usize, Vec<u8>, Instant)>,
}

impl<const MIN: usize> Router for Pass<MIN> {
    fn min_body(&self) -> usize {
        MIN
    }

    fn on_frame(&mut self, body_len: usize, head: &[u8], read_at: Instant) -> Result<Verdict, ProtocolError> {
        self.seen.push((body_len, head.to_vec(), read_at));
        Ok(Verdict::Forward)
    }

    fn on_whole(&mut self, _body: &[u8]) -> Result<Emit, ProtocolError> {
        Err(ProtocolError::Lost("Pass gathers nothing"))
    }
}

/// Gathers every frame whole and sends `copies` copies of it in its place (none drops it).
struct Gather {
    copies: usize,
    bodies: Vec<Vec<u8>>,
    waiting: bool,
}

impl Gather {
    fn new(copies: usize) -> Gather {
        Gather { copies, bodies: Vec::new(), waiting: false }
    }
}

impl Router for Gather {
    fn min_body(&self) -> usize {
        1
    }

    fn on_frame(&mut self, _body_len: usize, _head: &[u8], _at: Instant) -> Result<Verdict, ProtocolError> {
        assert!(!self.waiting, "on_frame called again for a frame judged Whole");
        self.waiting = true;
        Ok(Verdict::Whole)
    }

    fn on_whole(&mut self, body: &[u8]) -> Result<Emit, ProtocolError> {
        assert!(self.waiting, "on_whole called for a frame not judged Whole");
        self.waiting = false;
        self.bodies.push(body.to_vec());
        Ok(Emit::frames(vec![BytesMut::from(&frame(body)[..]); self.copies], None))
    }
}

/// Forwards the first `pass` frames; holds the next one while `hold` is set.
struct Holding {
    hold: bool,
    pass: usize,
    forwarded: usize,
    held: usize,
}

impl Router for Holding {
    fn min_body(&self) -> usize {
        1
    }

    fn on_frame(&mut self, _body_len: usize, _head: &[u8], _at: Instant) -> Result<Verdict, ProtocolError> {
        if self.hold && self.forwarded >= self.pass {
            self.held += 1;
            return Ok(Verdict::Hold);
        }
        self.forwarded += 1;
        Ok(Verdict::Forward)
    }

    fn on_whole(&mut self, _body: &[u8]) -> Result<Emit, ProtocolError> {
        Err(ProtocolError::Lost("Holding gathers nothing"))
    }
}

/// Decides once it has 8 header bytes, forwarding then; records each head length it saw.
#[derive(Default)]
struct Header {
    heads: Vec<usize>,
}

impl Router for Header {
    fn min_body(&self) -> usize {
        4
    }

    fn on_frame(&mut self, _body_len: usize, head: &[u8], _at: Instant) -> Result<Verdict, ProtocolError> {
        self.heads.push(head.len());
        Ok(if head.len() < 8 { Verdict::NeedMore } else { Verdict::Forward })
    }

    fn on_whole(&mut self, _body: &[u8]) -> Result<Emit, ProtocolError> {
        Err(ProtocolError::Lost("Header gathers nothing"))
    }
}

// What `Tagged` does with a frame, by its first body byte.
const FORWARD: u8 = 0;
const ORIGINAL: u8 = 1;
const DROP: u8 = 2;
const TWICE: u8 = 3;
const REPLACE: u8 = 4;

/// The frame `Tagged` sends in place of a `REPLACE` frame: another size, other bytes.
fn replacement(body: &[u8]) -> Vec<u8> {
    let mut other: Vec<u8> = body.iter().rev().map(|b| !b).collect();
    other.extend_from_slice(b"replaced");
    frame(&other)
}

/// What reaches the destination for `body` sent through `Tagged`.
fn tagged_output(body: &[u8]) -> Vec<u8> {
    match body[0] {
        FORWARD | ORIGINAL => frame(body),
        DROP => Vec::new(),
        TWICE => frame(body).repeat(2),
        REPLACE => replacement(body),
        tag => panic!("no tag {tag}"),
    }
}

/// Routes by a frame's first body byte; gathered frames are emitted not before `not_before`.
#[derive(Default)]
struct Tagged {
    hold: bool,
    not_before: Option<Instant>,
    gathering: Option<u8>,
    /// Every gathered body, in order.
    bodies: Vec<Vec<u8>>,
}

impl Router for Tagged {
    fn min_body(&self) -> usize {
        1
    }

    fn on_frame(&mut self, _body_len: usize, head: &[u8], _at: Instant) -> Result<Verdict, ProtocolError> {
        assert!(self.gathering.is_none(), "on_frame called again for a frame judged Whole");
        if self.hold {
            return Ok(Verdict::Hold);
        }
        let Some(&tag) = head.first() else {
            return Ok(Verdict::NeedMore);
        };
        if tag == FORWARD {
            return Ok(Verdict::Forward);
        }
        self.gathering = Some(tag);
        Ok(Verdict::Whole)
    }

    fn on_whole(&mut self, body: &[u8]) -> Result<Emit, ProtocolError> {
        let tag = self.gathering.take().ok_or(ProtocolError::Lost("not gathering"))?;
        assert_eq!(body[0], tag, "on_whole was handed another frame");
        self.bodies.push(body.to_vec());
        let frames = |frames: Vec<Vec<u8>>| frames.iter().map(|f| BytesMut::from(&f[..])).collect();
        Ok(match tag {
            ORIGINAL => Emit::original(self.not_before),
            DROP => Emit::frames(Vec::new(), self.not_before),
            TWICE => Emit::frames(frames(vec![frame(body), frame(body)]), self.not_before),
            REPLACE => Emit::frames(frames(vec![replacement(body)]), self.not_before),
            tag => panic!("no tag {tag}"),
        })
    }
}

#[test]
fn frames_read_one_byte_at_a_time_arrive_intact_and_in_order() {
    let bodies = [body(1, 1), body(2, 5), body(3, 300), body(4, 4)];
    let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let mut script = Vec::new();
    for (i, byte) in input.iter().enumerate() {
        script.push(Read::Data(vec![*byte]));
        if i % 7 == 3 {
            script.push(Read::Pending);
        }
    }
    let mut src = Source::new(script);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    let steps = drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert_eq!(dst.written, input);
    assert!(steps.iter().all(|p| p.read <= 1));
    assert_eq!(steps.iter().map(|p| p.read).sum::<usize>(), input.len());
    // Each frame is judged once, as soon as its prefix is complete (the head is empty then).
    let seen: Vec<(usize, usize)> = router.seen.iter().map(|(len, head, _)| (*len, head.len())).collect();
    assert_eq!(seen, [(1, 0), (5, 0), (300, 0), (4, 0)]);
    assert!(lane.is_flushed());
    assert!(!lane.eof);
}

#[test]
fn frames_written_one_byte_at_a_time_arrive_intact() {
    let input = concat(&[&frame(&body(1, 40)), &frame(&body(2, 3)), &frame(&body(3, 1000))]);
    let mut src = Source::chunks(input.chunks(97).map(<[u8]>::to_vec));
    let script = (0..50).map(|i| if i % 3 == 0 { Write::Pending } else { Write::Accept(1) });
    let mut dst = Sink::new(script, Write::Accept(1));
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert_eq!(dst.written, input);
    assert!(dst.writes.iter().all(|&n| n == 1));
    assert!(lane.is_flushed());
}

#[test]
fn length_prefix_split_across_two_reads_is_reassembled() {
    let body = body(9, 33);
    let input = frame(&body);
    for split in 1..LENGTH_PREFIX {
        let script =
            [Read::Data(input[..split].to_vec()), Read::Pending, Read::Data(input[split..].to_vec())];
        let mut src = Source::new(script);
        let mut dst = Sink::unlimited();
        let mut router = Pass::<1>::default();
        let mut lane = Lane::new(ROOMY);

        let first = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        assert_eq!(first.read, split);
        let idle = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        assert!(!idle.any(), "split {split}");
        assert!(router.seen.is_empty(), "judged on a partial prefix (split {split})");
        assert!(dst.written.is_empty());

        let before_read = Instant::now();
        let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        assert_eq!(second.read, input.len() - split);
        assert_eq!(router.seen.len(), 1, "split {split}");
        let (len, head, read_at) = &router.seen[0];
        assert_eq!((*len, &head[..]), (body.len(), &body[..]), "split {split}");
        assert!(*read_at < before_read, "a frame arrives with the read of its first byte, not its last");

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        assert_eq!(dst.written, input, "split {split}");
        assert!(lane.is_flushed());
    }
}

#[test]
fn frames_in_one_read_leave_in_one_write() {
    // A zero-length body is a frame too, when the router allows it.
    let input = concat(&[&frame(&body(1, 10)), &frame(&[]), &frame(&body(2, 1)), &frame(&body(3, 71))]);
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<0>::default();
    let mut lane = Lane::new(ROOMY);

    let first = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!((first.read, first.wrote), (input.len(), false));
    assert_eq!(router.seen.len(), 4, "every frame in the read is judged at once");
    let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!((second.read, second.wrote), (0, true));
    assert_eq!(dst.writes, [input.len()]);
    assert_eq!(dst.written, input);
    assert!(lane.is_flushed());
    assert!(!step(&mut lane, &mut src, &mut dst, &mut router).unwrap().any());
}

#[test]
fn frames_in_one_read_leave_in_as_few_writes_as_the_writer_allows() {
    let input: Vec<u8> = (1..=6).flat_map(|i| frame(&body(i, 10 * usize::from(i)))).collect();
    assert_eq!(input.len(), 234);
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::limited(64);
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(second.wrote);
    // One step writes until the writer stops taking bytes.
    assert_eq!(dst.writes, [64, 64, 64, 42]);
    assert_eq!(dst.written, input);
}

#[test]
fn frames_read_while_the_writer_is_blocked_leave_together() {
    let a = frame(&body(1, 20));
    let b = frame(&body(2, 30));
    let mut src = Source::chunks([a.clone(), b.clone()]);
    let mut dst = Sink::new([Write::Pending], Write::Accept(usize::MAX));
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    let first = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(first.read, a.len());
    let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!((second.read, second.wrote), (b.len(), false));
    assert!(!lane.is_flushed());
    let third = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(third.wrote);
    assert_eq!(dst.writes, [a.len() + b.len()]);
    assert_eq!(dst.written, concat(&[&a, &b]));
}

#[test]
fn hold_stops_at_the_frame_boundary_until_released() {
    let a = frame(&body(1, 12));
    let b = frame(&body(2, 50));
    let c = frame(&body(3, 7));
    let mut src = Source::chunks([concat(&[&a, &b, &c])]);
    let mut dst = Sink::unlimited();
    let mut router = Holding { hold: true, pass: 1, forwarded: 0, held: 0 };
    let mut lane = Lane::new(ROOMY);

    for _ in 0..10 {
        step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    }
    assert_eq!(dst.written, a, "only the frame before the hold leaves");
    assert_eq!(router.forwarded, 1);
    assert!(router.held > 0);
    // Everything cleared is out: the held frame is at the boundary, not under way.
    assert!(lane.is_flushed());

    router.hold = false;
    let released = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(router.forwarded, 3);
    assert!(released.wrote, "released frames are judged and written in the same step");
    assert_eq!(dst.written, concat(&[&a, &b, &c]));
    assert_eq!(dst.writes, [a.len(), b.len() + c.len()]);
}

#[test]
fn hold_lets_the_frame_under_way_finish() {
    let a = frame(&body(1, 100));
    let b = frame(&body(2, 10));
    let mut src =
        Source::new([Read::Data(a[..30].to_vec()), Read::Pending, Read::Data(concat(&[&a[30..], &b]))]);
    let mut dst = Sink::unlimited();
    let mut router = Holding { hold: false, pass: 1, forwarded: 0, held: 0 };
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(router.forwarded, 1);
    router.hold = true;
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, a, "the frame under way finishes, the one after it waits");
    assert!(router.held > 0);

    router.hold = false;
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, concat(&[&a, &b]));
}

#[test]
fn write_of_zero_bytes_is_a_write_zero_error() {
    let mut src = Source::chunks([frame(&body(1, 10))]);
    let mut dst = Sink::new([Write::Zero], Write::Accept(usize::MAX));
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    match step(&mut lane, &mut src, &mut dst, &mut router) {
        Err(LaneError::Io(e)) => assert_eq!(e.kind(), ErrorKind::WriteZero),
        other => panic!("expected WriteZero, got {other:?}"),
    }
}

#[test]
fn write_of_zero_bytes_of_an_emitted_frame_is_a_write_zero_error() {
    let mut src = Source::chunks([frame(&body(1, 10))]);
    let mut dst = Sink::new([Write::Accept(3), Write::Zero], Write::Accept(usize::MAX));
    let mut router = Gather::new(2);
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    match step(&mut lane, &mut src, &mut dst, &mut router) {
        Err(LaneError::Io(e)) => assert_eq!(e.kind(), ErrorKind::WriteZero),
        other => panic!("expected WriteZero, got {other:?}"),
    }
    assert_eq!(dst.written.len(), 3);
}

#[test]
fn read_and_write_errors_surface_as_io() {
    let mut src = Source::new([Read::Fail(ErrorKind::ConnectionReset)]);
    let mut dst = Sink::unlimited();
    let mut lane = Lane::new(ROOMY);
    match step(&mut lane, &mut src, &mut dst, &mut Pass::<1>::default()) {
        Err(LaneError::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }

    let mut src = Source::chunks([frame(&body(1, 10))]);
    let mut dst = Sink::new([Write::Fail(ErrorKind::BrokenPipe)], Write::Accept(usize::MAX));
    let mut lane = Lane::new(ROOMY);
    let mut router = Pass::<1>::default();
    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    match step(&mut lane, &mut src, &mut dst, &mut router) {
        Err(LaneError::Io(e)) => assert_eq!(e.kind(), ErrorKind::BrokenPipe),
        other => panic!("expected a broken pipe, got {other:?}"),
    }
}

#[test]
fn whole_frame_larger_than_the_buffer_is_gathered_completely() {
    let big = body(REPLACE, 3 * LANE_BUFFER + 17);
    let small = body(TWICE, 9);
    let before = frame(&body(FORWARD, 5000));
    let after = frame(&body(FORWARD, 20));
    let input = concat(&[&before, &frame(&big), &frame(&small), &after]);
    let expected = concat(&[&before, &replacement(&big), &frame(&small).repeat(2), &after]);
    // Small reads, or reads as large as the lane allows; a writer that lags behind, so the
    // buffer holds unsent bytes when the big frame must fit.
    for chunk in [50_000, input.len()] {
        let mut src = Source::chunks(input.chunks(chunk).map(<[u8]>::to_vec));
        let script = (0..20).map(|i| if i % 2 == 0 { Write::Pending } else { Write::Accept(1000) });
        let mut dst = Sink::new(script, Write::Accept(usize::MAX));
        let mut router = Tagged::default();
        let mut lane = Lane::new(4 * LANE_BUFFER);

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert_eq!(router.bodies.len(), 2, "chunk {chunk}");
        assert!(router.bodies[0] == big, "the router did not see the whole body (chunk {chunk})");
        assert_eq!(router.bodies[1], small);
        assert!(dst.written == expected, "output differs (chunk {chunk})");
        assert!(lane.is_flushed());
    }
}

#[test]
fn gathered_frame_of_exactly_max_frame_is_accepted() {
    let big = body(1, LANE_BUFFER + 1);
    let input = frame(&big);
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::unlimited();
    let mut router = Gather::new(1);
    let mut lane = Lane::new(big.len());

    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert!(router.bodies == [big]);
    assert!(dst.written == input);
}

#[test]
fn frame_over_max_frame_is_a_frame_error() {
    let mut src = Source::chunks([frame(&body(1, 100)), 101i32.to_be_bytes().to_vec()]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(100);

    // A frame of exactly max_frame passes; the next announces one byte more.
    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    match step(&mut lane, &mut src, &mut dst, &mut router) {
        Err(LaneError::Frame(FrameError::TooLarge { size: 101, max: 100 })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(dst.written, frame(&body(1, 100)));
}

#[test]
fn negative_length_is_a_frame_error() {
    for (prefix, size) in [([0xff; 4], -1), ([0x80, 0, 0, 0], i32::MIN)] {
        let mut src = Source::chunks([prefix.to_vec()]);
        let mut dst = Sink::unlimited();
        let mut lane = Lane::new(ROOMY);
        match step(&mut lane, &mut src, &mut dst, &mut Pass::<0>::default()) {
            Err(LaneError::Frame(FrameError::Negative(got))) => assert_eq!(got, size),
            other => panic!("expected Negative({size}), got {other:?}"),
        }
        assert!(dst.written.is_empty());
    }
}

#[test]
fn frame_shorter_than_min_body_is_a_frame_error() {
    let mut src = Source::chunks([frame(&body(1, 3))]);
    let mut dst = Sink::unlimited();
    let mut lane = Lane::new(ROOMY);
    match step(&mut lane, &mut src, &mut dst, &mut Pass::<8>::default()) {
        Err(LaneError::Frame(FrameError::TooSmall { size: 3, min: 8 })) => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }

    // MIN_BODY itself is fine.
    let mut src = Source::chunks([frame(&body(1, 8))]);
    let mut lane = Lane::new(ROOMY);
    drive(&mut lane, &mut src, &mut dst, &mut Pass::<8>::default()).unwrap();
    assert_eq!(dst.written, frame(&body(1, 8)));
}

#[test]
fn need_more_waits_for_header_bytes() {
    let body = body(5, 20);
    let input = frame(&body);
    let mut src = Source::new([
        Read::Data(input[..LENGTH_PREFIX + 3].to_vec()),
        Read::Pending,
        Read::Data(input[LENGTH_PREFIX + 3..LENGTH_PREFIX + 6].to_vec()),
        Read::Pending,
        Read::Data(input[LENGTH_PREFIX + 6..].to_vec()),
    ]);
    let mut dst = Sink::unlimited();
    let mut router = Header::default();
    let mut lane = Lane::new(ROOMY);

    for _ in 0..4 {
        step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        assert!(dst.written.is_empty(), "bytes left before the router decided");
        assert!(lane.is_flushed(), "nothing is cleared while the router waits");
    }
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert_eq!(dst.written, input);
    let mut heads = router.heads.clone();
    heads.dedup();
    assert_eq!(heads, [3, 6, 20], "the router sees every header byte that arrived");
}

#[test]
fn need_more_on_a_complete_frame_is_a_truncated_header() {
    let mut src = Source::chunks([frame(&body(5, 6))]);
    let mut dst = Sink::unlimited();
    let mut lane = Lane::new(ROOMY);
    match step(&mut lane, &mut src, &mut dst, &mut Header::default()) {
        Err(LaneError::Protocol(ProtocolError::TruncatedHeader(6))) => {}
        other => panic!("expected TruncatedHeader(6), got {other:?}"),
    }
}

#[test]
fn eof_sets_eof_once_the_bytes_before_it_are_read() {
    let input = frame(&body(1, 10));
    let mut src = Source::new([Read::Data(input.clone()), Read::Eof]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    let first = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(first.read, input.len());
    assert!(!lane.eof);
    let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!((second.read, second.wrote), (0, true));
    assert!(lane.eof);
    assert_eq!(dst.written, input);

    // The source is not read again.
    let polls = src.polls;
    assert!(!step(&mut lane, &mut src, &mut dst, &mut router).unwrap().any());
    assert_eq!(src.polls, polls);
    assert!(lane.eof);
}

#[test]
fn eof_inside_a_frame_sets_eof_and_leaves_the_lane_unflushed() {
    let input = frame(&body(1, 50));
    let mut src = Source::new([Read::Data(input[..20].to_vec()), Read::Eof]);
    let mut dst = Sink::unlimited();
    let mut lane = Lane::new(ROOMY);

    drive(&mut lane, &mut src, &mut dst, &mut Pass::<1>::default()).unwrap();

    assert!(lane.eof);
    assert_eq!(dst.written, input[..20], "the part that arrived is streamed");
    assert!(!lane.is_flushed(), "the rest of the frame never came");
}

#[test]
fn delayed_emit_holds_output_until_not_before() {
    let delay = Duration::from_millis(300);
    let not_before = Instant::now() + delay;
    let a = frame(&body(FORWARD, 10));
    let gathered = body(REPLACE, 40);
    let b = frame(&body(FORWARD, 15));
    let mut src = Source::chunks([concat(&[&a, &frame(&gathered), &b])]);
    let mut dst = Sink::unlimited();
    let mut router = Tagged { not_before: Some(not_before), ..Tagged::default() };
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(lane.held_until(), None);
    let taken = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(taken.wrote);
    assert_eq!(router.bodies, std::slice::from_ref(&gathered));
    let mut checked = 0;
    for _ in 0..5 {
        let progress = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        if Instant::now() < not_before {
            assert!(!progress.any());
            assert_eq!(lane.held_until(), Some(not_before));
            assert_eq!(dst.written, a, "bytes left before not_before");
            assert!(!lane.is_flushed());
            checked += 1;
        }
    }
    assert!(checked > 0, "the test ran too slowly to see the hold");

    std::thread::sleep(not_before.saturating_duration_since(Instant::now()));
    let released = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(released.wrote);
    assert_eq!(lane.held_until(), None);
    // The replacement takes the gathered frame's place, ahead of the frame behind it.
    assert_eq!(dst.written, concat(&[&a, &replacement(&gathered), &b]));
    assert!(lane.is_flushed());
}

#[test]
fn delayed_original_holds_the_frames_behind_it() {
    let not_before = Instant::now() + Duration::from_millis(200);
    let a = frame(&body(ORIGINAL, 10));
    let b = frame(&body(FORWARD, 15));
    let c = frame(&body(FORWARD, 3));
    let mut src = Source::new([Read::Data(a.clone()), Read::Pending, Read::Data(concat(&[&b, &c]))]);
    let mut dst = Sink::unlimited();
    let mut router = Tagged { not_before: Some(not_before), ..Tagged::default() };
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(router.bodies.is_empty(), "gathered before everything before it was sent");
    assert_eq!(lane.held_until(), None);
    let mut checked = 0;
    for _ in 0..6 {
        step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        if Instant::now() < not_before {
            assert_eq!(router.bodies.len(), 1);
            assert!(dst.written.is_empty(), "bytes left before not_before");
            assert_eq!(lane.held_until(), Some(not_before));
            checked += 1;
        }
    }
    assert!(checked > 0, "the test ran too slowly to see the hold");
    assert!(src.played_out(), "frames behind a delay are still read");

    std::thread::sleep(not_before.saturating_duration_since(Instant::now()));
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, concat(&[&a, &b, &c]));
    assert_eq!(dst.writes.len(), 1, "the held frames leave together");
    assert_eq!(lane.held_until(), None);
}

#[test]
fn emitted_frames_take_the_gathered_frames_place() {
    let bodies = [
        body(FORWARD, 8),
        body(TWICE, 30),
        body(FORWARD, 9),
        body(DROP, 12),
        body(REPLACE, 25),
        body(ORIGINAL, 4),
        body(FORWARD, 2),
    ];
    let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let expected: Vec<u8> = bodies.iter().flat_map(|b| tagged_output(b)).collect();
    for writer_limit in [1, 7, usize::MAX] {
        let mut src = Source::chunks(input.chunks(11).map(<[u8]>::to_vec));
        let script = (0..30).map(|i| if i % 4 == 0 { Write::Pending } else { Write::Accept(writer_limit) });
        let mut dst = Sink::new(script, Write::Accept(writer_limit));
        let mut router = Tagged::default();
        let mut lane = Lane::new(ROOMY);

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert_eq!(dst.written, expected, "writer limit {writer_limit}");
        let gathered: Vec<&Vec<u8>> = bodies.iter().filter(|b| b[0] != FORWARD).collect();
        assert_eq!(router.bodies.iter().collect::<Vec<_>>(), gathered);
        assert!(lane.is_flushed());
    }
}

#[test]
fn gathered_frames_emitted_twice_or_not_at_all() {
    let bodies = [body(1, 10), body(2, 1), body(3, 200)];
    let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    for copies in [0, 2] {
        let mut src = Source::chunks(bytewise(&input));
        let mut dst = Sink::unlimited();
        let mut router = Gather::new(copies);
        let mut lane = Lane::new(ROOMY);

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert_eq!(router.bodies, bodies, "copies {copies}");
        let expected: Vec<u8> = bodies.iter().flat_map(|b| frame(b).repeat(copies)).collect();
        assert_eq!(dst.written, expected, "copies {copies}");
        assert!(lane.is_flushed());
    }
}

#[test]
fn large_forwarded_frame_streams_before_it_is_complete() {
    let big = frame(&body(1, 2 * LANE_BUFFER));
    let mut src = Source::chunks(big.chunks(10_000).map(<[u8]>::to_vec));
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    let second = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(second.wrote);
    assert_eq!(dst.written, big[..10_000], "the frame is cut through, not gathered");
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(dst.written == big);
    assert_eq!(router.seen.len(), 1);
}

#[test]
fn reads_stop_when_the_buffer_is_full_and_nothing_leaves() {
    let frames: Vec<Vec<u8>> = (0..40u8).map(|i| frame(&body(i, 30_000))).collect();
    let input = frames.concat();
    let mut src = Source::chunks(frames);
    let mut dst = Sink::new([], Write::Pending);
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    let mut read = 0;
    for _ in 0..100 {
        read += step(&mut lane, &mut src, &mut dst, &mut router).unwrap().read;
    }
    assert_eq!(read, LANE_BUFFER, "a blocked writer must stop reads at the buffer size");
    let polls = src.polls;
    assert!(!step(&mut lane, &mut src, &mut dst, &mut router).unwrap().any());
    assert_eq!(src.polls, polls, "a full buffer is not read into");

    dst.then = Write::Accept(usize::MAX);
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(dst.written == input);
}

#[test]
fn buffer_returns_to_its_default_size_after_a_large_gather() {
    let big = body(REPLACE, 3 * LANE_BUFFER);
    let rest: Vec<Vec<u8>> = (0..40u8).map(|i| frame(&body(FORWARD, 30_000 + usize::from(i)))).collect();
    let mut src = Source::chunks([vec![frame(&big)], rest.clone()].concat());
    // The writer takes nothing once the replacement is due.
    let mut dst = Sink::new([], Write::Pending);
    let mut router = Tagged::default();
    let mut lane = Lane::new(ROOMY);

    let mut read = 0;
    for _ in 0..100 {
        let progress = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        if !router.bodies.is_empty() {
            read += progress.read;
        }
    }
    assert!(router.bodies == std::slice::from_ref(&big));
    assert_eq!(read, LANE_BUFFER, "reads after the gather must stop at the default buffer size");

    dst.then = Write::Accept(usize::MAX);
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(dst.written == [replacement(&big), rest.concat()].concat());
}

#[test]
fn inject_waits_for_a_frame_boundary_with_nothing_unsent() {
    let a = frame(&body(1, 10));
    let b = frame(&body(2, 10));
    let own = frame(&body(3, 6));
    let mut src =
        Source::new([Read::Data(concat(&[&a, &b[..5]])), Read::Pending, Read::Data(b[5..].to_vec())]);
    let mut dst = Sink::new([Write::Pending], Write::Accept(usize::MAX));
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(!lane.inject(vec![BytesMut::from(&own[..])], None), "injected before earlier bytes left");
    let blocked = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(!blocked.wrote);
    assert!(!lane.inject(vec![BytesMut::from(&own[..])], None), "injected before earlier bytes left");
    assert!(step(&mut lane, &mut src, &mut dst, &mut router).unwrap().wrote);
    assert_eq!(dst.written, concat(&[&a, &b[..5]]));
    assert!(!lane.inject(vec![BytesMut::from(&own[..])], None), "injected inside a frame");
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert!(lane.inject(vec![BytesMut::from(&own[..])], None));
    assert!(!lane.is_flushed());
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, concat(&[&a, &b, &own]));
    assert!(lane.is_flushed());
}

/// Random frames, reads, writes and holds: what leaves is exactly what the router decided.
#[test]
fn random_traffic_arrives_as_routed() {
    for seed in 0..200 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let bodies: Vec<Vec<u8>> = (0..rng.usize(1..30))
            .map(|_| {
                let len = if rng.u8(..40) == 0 {
                    rng.usize(LANE_BUFFER - 50..LANE_BUFFER + 5000)
                } else {
                    rng.usize(1..3000)
                };
                body(rng.u8(..5), len)
            })
            .collect();
        let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        let expected: Vec<u8> = bodies.iter().flat_map(|b| tagged_output(b)).collect();
        let gathered: Vec<Vec<u8>> = bodies.iter().filter(|b| b[0] != FORWARD).cloned().collect();

        let mut reads = Vec::new();
        let mut at = 0;
        let max_chunk = rng.usize(1..20_000);
        while at < input.len() {
            if rng.u8(..5) == 0 {
                reads.push(Read::Pending);
            }
            let n = rng.usize(1..=max_chunk).min(input.len() - at);
            reads.push(Read::Data(input[at..at + n].to_vec()));
            at += n;
        }
        let mut src = Source::new(reads);
        let max_write = rng.usize(1..20_000);
        let writes: Vec<Write> = (0..3000)
            .map(|_| if rng.u8(..4) == 0 { Write::Pending } else { Write::Accept(rng.usize(1..=max_write)) })
            .collect();
        let mut dst = Sink::new(writes, Write::Accept(max_write));
        let past = Instant::now();
        let mut router = Tagged { not_before: rng.bool().then_some(past), ..Tagged::default() };
        let mut lane = Lane::new(2 * LANE_BUFFER);

        for _ in 0..MAX_STEPS {
            router.hold = rng.u8(..4) == 0;
            step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
            if src.played_out() && dst.written.len() >= expected.len() {
                break;
            }
        }
        router.hold = false;
        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert!(dst.written == expected, "seed {seed}: output differs from what was routed");
        assert!(router.bodies == gathered, "seed {seed}: gathered bodies differ");
        assert!(lane.is_flushed(), "seed {seed}");
        assert_eq!(lane.held_until(), None, "seed {seed}");
    }
}

fn slices(average: usize, variation: usize, gap: Duration) -> Pacer {
    Pacer::new(Shape::Slices { average, variation, gap }, fastrand::Rng::with_seed(11))
}

fn bandwidth(bytes_per_second: u64) -> Pacer {
    Pacer::new(Shape::Bandwidth { bytes_per_second }, fastrand::Rng::with_seed(11))
}

/// Steps until `expected` bytes are out, sleeping whenever the lane is held; panics after
/// `MAX_STEPS`. Returns how many times it slept.
fn drive_held<R: Router>(
    lane: &mut Lane,
    src: &mut Source,
    dst: &mut Sink,
    router: &mut R,
    expected: usize,
) -> usize {
    let mut sleeps = 0;
    for _ in 0..MAX_STEPS {
        let progress = step(lane, src, dst, router).unwrap();
        if dst.written.len() >= expected && src.played_out() {
            return sleeps;
        }
        if !progress.any()
            && let Some(until) = lane.held_until()
        {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            sleeps += 1;
        }
    }
    panic!("the lane did not pass {expected} bytes in {MAX_STEPS} steps");
}

#[test]
fn sliced_frames_arrive_intact_in_pieces_of_average_plus_or_minus_variation() {
    let input: Vec<u8> = (1..=8).flat_map(|i| frame(&body(i, 37 * usize::from(i)))).collect();
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);
    lane.set_pacer(Some(slices(20, 7, Duration::ZERO)));

    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert_eq!(dst.written, input);
    let (last, pieces) = dst.writes.split_last().unwrap();
    assert!(pieces.iter().all(|n| (13..=27).contains(n)), "pieces {:?}", dst.writes);
    assert!((1..=27).contains(last));
    assert!(pieces.iter().min() < pieces.iter().max(), "piece sizes vary");
    assert!(lane.is_flushed());
    assert_eq!(lane.held_until(), None);
}

/// Random frames, reads and writes through a router that emits its own frames: a pacer changes
/// the sizes of the writes, never what leaves.
#[test]
fn paced_random_traffic_arrives_as_routed() {
    for seed in 0..100 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let bodies: Vec<Vec<u8>> =
            (0..rng.usize(1..20)).map(|_| body(rng.u8(..5), rng.usize(1..3000))).collect();
        let input: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        let expected: Vec<u8> = bodies.iter().flat_map(|b| tagged_output(b)).collect();
        let max_chunk = rng.usize(1..5000);
        let mut src = Source::chunks(input.chunks(max_chunk).map(<[u8]>::to_vec));
        let max_write = rng.usize(1..5000);
        let writes: Vec<Write> = (0..500)
            .map(|_| if rng.u8(..4) == 0 { Write::Pending } else { Write::Accept(rng.usize(1..=max_write)) })
            .collect();
        let mut dst = Sink::new(writes, Write::Accept(max_write));
        let mut router = Tagged::default();
        let mut lane = Lane::new(ROOMY);
        let (average, variation) = (rng.usize(1..500), rng.usize(0..100));
        lane.set_pacer(Some(slices(average, variation, Duration::ZERO)));

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert!(dst.written == expected, "seed {seed}: output differs from what was routed");
        assert!(dst.writes.iter().all(|&n| n <= average + variation), "seed {seed}: a write over the piece");
        assert!(lane.is_flushed(), "seed {seed}");
    }
}

#[test]
fn bandwidth_holds_the_rate() {
    // 20 kB/s, with a burst of 200 bytes: 4,400 bytes take at least 210 ms.
    let rate = 20_000;
    let burst = 200;
    let input: Vec<u8> = (1..=4u8).flat_map(|i| frame(&body(i, 1096))).collect();
    assert_eq!(input.len(), 4400);
    let mut src = Source::chunks(input.chunks(1000).map(<[u8]>::to_vec));
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);
    lane.set_pacer(Some(bandwidth(rate)));

    let start = Instant::now();
    let sleeps = drive_held(&mut lane, &mut src, &mut dst, &mut router, input.len());
    let elapsed = start.elapsed();

    assert_eq!(dst.written, input);
    let least = Duration::from_secs_f64((input.len() - burst) as f64 / rate as f64);
    assert!(elapsed >= least, "{} bytes in {elapsed:?}, under {least:?}", input.len());
    assert!(dst.writes.iter().all(|&n| n <= burst), "a write over the burst: {:?}", dst.writes);
    assert!(sleeps > 0, "the lane never reported a wait");
    assert!(lane.is_flushed());
    assert_eq!(lane.held_until(), None, "nothing is held once everything is out");
}

#[test]
fn held_until_reports_the_pacers_wait() {
    let gap = Duration::from_millis(300);
    let input = frame(&body(1, 30));
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);
    lane.set_pacer(Some(slices(10, 0, gap)));

    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(lane.held_until(), None, "nothing is held before anything is written");
    let before = Instant::now();
    let first = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    let after = Instant::now();
    assert!(first.wrote);
    assert_eq!(dst.writes, [10]);
    let until = lane.held_until().expect("the pacer's gap holds the lane");
    assert!(until >= before + gap && until <= after + gap, "held until {until:?}");
    assert!(!lane.is_flushed());

    // Still held, and still reported, until the gap is over.
    let mut checked = 0;
    for _ in 0..3 {
        let progress = step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
        if Instant::now() < until {
            assert!(!progress.any());
            assert_eq!(lane.held_until(), Some(until));
            assert_eq!(dst.writes, [10]);
            checked += 1;
        }
    }
    assert!(checked > 0, "the test ran too slowly to see the hold");

    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    assert!(step(&mut lane, &mut src, &mut dst, &mut router).unwrap().wrote);
    assert_eq!(dst.writes, [10, 10]);
    assert!(lane.held_until().is_some_and(|next| next >= until + gap));
}

#[test]
fn held_until_reports_the_pacers_wait_and_a_delay_in_turn() {
    let gap = Duration::from_millis(300);
    let a = frame(&body(FORWARD, 16));
    let b = frame(&body(ORIGINAL, 6));
    let mut src = Source::new([Read::Data(a.clone()), Read::Pending, Read::Data(b.clone())]);
    let mut dst = Sink::unlimited();
    let not_before = Instant::now() + Duration::from_millis(800);
    let mut router = Tagged { not_before: Some(not_before), ..Tagged::default() };
    let mut lane = Lane::new(ROOMY);
    lane.set_pacer(Some(slices(10, 0, gap)));

    for _ in 0..4 {
        step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    }
    // The first piece left; the pacer holds the rest of `a` for the gap.
    assert_eq!(dst.written, a[..10]);
    let paced_until = lane.held_until().unwrap();
    assert!(paced_until < not_before);
    // Were both set, the earlier one would wake the lane.
    for other in [paced_until - gap, paced_until + gap] {
        lane.not_before = Some(other);
        assert_eq!(lane.held_until(), Some(other.min(paced_until)));
    }
    lane.not_before = None;

    // The rest of `a` leaves, then `b`'s delay holds the lane (and the pacer has no say).
    std::thread::sleep(paced_until.saturating_duration_since(Instant::now()));
    step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, a);
    assert_eq!(router.bodies.len(), 1, "b is gathered once a is out");
    assert_eq!(lane.held_until(), Some(not_before));

    // By then the gap is over too: `b` leaves as one piece, and nothing holds the lane.
    std::thread::sleep(not_before.saturating_duration_since(Instant::now()));
    assert!(step(&mut lane, &mut src, &mut dst, &mut router).unwrap().wrote);
    assert_eq!(dst.written, concat(&[&a, &b]));
    assert_eq!(dst.writes, [10, 10, 10]);
    assert_eq!(lane.held_until(), None);
    assert!(lane.is_flushed());
}

#[test]
fn byte_limit_writes_exactly_the_limit_then_nothing() {
    let input: Vec<u8> = (1..=3).flat_map(|i| frame(&body(i, 30))).collect();
    for limit in [0, 1, 33, 34, 50, 101] {
        let mut src = Source::chunks([input.clone()]);
        let mut dst = Sink::unlimited();
        let mut router = Pass::<1>::default();
        let mut lane = Lane::new(ROOMY);
        lane.set_byte_limit(Some(limit));
        assert_eq!(lane.limit_reached(), limit == 0);

        drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

        assert_eq!(dst.written, input[..limit as usize], "limit {limit}");
        assert!(lane.limit_reached(), "limit {limit}");
        assert_eq!(dst.writes.len(), usize::from(limit > 0), "one write, cut at the limit");
        assert_eq!(lane.held_until(), None, "a spent limit is not a wait");
    }
}

#[test]
fn byte_limit_counts_from_when_it_is_set_and_covers_emitted_frames() {
    let a = frame(&body(1, 20));
    let b = frame(&body(2, 20));
    let mut src = Source::new([Read::Data(a.clone()), Read::Pending, Read::Data(b.clone())]);
    // Emitted copies leave in 7-byte writes.
    let mut dst = Sink::limited(7);
    let mut router = Gather::new(2);
    let mut lane = Lane::new(ROOMY);

    for _ in 0..3 {
        step(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    }
    assert_eq!(dst.written, a.repeat(2));
    lane.set_byte_limit(Some(30));
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();

    assert_eq!(dst.written, concat(&[&a, &a, &b[..24], &b[..6]]));
    assert!(lane.limit_reached());
    assert_eq!(dst.writes[dst.writes.len() - 5..], [7, 7, 7, 3, 6], "no write crosses the limit");
}

#[test]
fn lifting_shaping_returns_to_the_unshaped_path() {
    let input: Vec<u8> = (1..=3).flat_map(|i| frame(&body(i, 26))).collect();
    let mut src = Source::chunks([input.clone()]);
    let mut dst = Sink::unlimited();
    let mut router = Pass::<1>::default();
    let mut lane = Lane::new(ROOMY);
    lane.set_pacer(Some(slices(10, 0, Duration::ZERO)));
    lane.set_byte_limit(Some(1000));

    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, input);
    assert!(dst.writes.iter().all(|&n| n == 10));

    lane.set_pacer(None);
    assert!(lane.shaping.is_some(), "the limit still holds");
    lane.set_byte_limit(None);
    assert!(lane.shaping.is_none());
    assert!(!lane.limit_reached());
    let writes = dst.writes.len();
    src.script.push_back(Read::Data(input.clone()));
    drive(&mut lane, &mut src, &mut dst, &mut router).unwrap();
    assert_eq!(dst.written, input.repeat(2));
    assert_eq!(dst.writes[writes..], [input.len()], "unshaped, the read leaves in one write");
}
