//! One direction of a proxied connection: bytes read from one socket, cut into Kafka frames, and
//! written to the other.
//!
//! A frame the router lets pass is streamed through as it arrives (cut-through): kaos never
//! buffers it whole, and consecutive frames leave in one `send`. A frame the router wants to see
//! whole (to rewrite, answer or delay it) is gathered, handed to the router, and what the router
//! emits in its place is written there, possibly after a delay that holds back everything behind
//! it. Reads are large so that one `recv` usually carries many frames.
//!
//! A network fault may shape the lane's writes (see [`Lane::set_pacer`] and
//! [`Lane::set_byte_limit`]): every write, of emitted frames and streamed bytes alike, is then cut
//! to what the pacer allows and the byte limit leaves. Only the timing and the sizes of the writes
//! change, never the bytes or their order. An unshaped lane pays one `Option` check per write.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};

use super::buffers;
use super::identity::UnfollowableExchange;
use super::pace::Pacer;
use super::rewrite::RewriteError;
use crate::wire::CodecError;
use crate::wire::frame::{self, FrameError, LENGTH_PREFIX};

/// The read buffer per direction, borrowed from the shard's pool while the lane has bytes to
/// move. It grows only to gather a frame that must be seen whole.
pub const LANE_BUFFER: usize = buffers::BUFFER_SIZE;

/// What a router decides for the frame at the head of the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stream it through untouched.
    Forward,
    /// Gather it, then call `Router::on_whole` for its replacement.
    Whole,
    /// Call again when more of the frame has arrived (its header is not all here yet).
    NeedMore,
    /// Not now: stop at this frame boundary (backpressure or shutdown).
    Hold,
}

/// Decides, frame by frame, what one direction does.
pub trait Router {
    /// The smallest valid body of the next frame: anything shorter is malformed.
    fn min_body(&self) -> usize;

    /// Called at each frame boundary with the body length, the body bytes buffered so far, and
    /// when the latest read happened (the frame arrived no later than that).
    fn on_frame(&mut self, body_len: usize, head: &[u8], read_at: Instant) -> Result<Verdict, ProtocolError>;

    /// Called with the complete body of a frame judged `Whole`; returns what to send instead.
    fn on_whole(&mut self, body: &[u8]) -> Result<Emit, ProtocolError>;
}

/// What to send in place of a gathered frame: the frame itself as read (no copy), or frames of
/// the router's own (length prefix included): none, to drop it; two, to duplicate it. Nothing
/// behind them leaves before `not_before`.
#[derive(Debug)]
pub struct Emit {
    pub keep_original: bool,
    pub frames: Vec<BytesMut>,
    pub not_before: Option<Instant>,
    /// Write nothing more until the connection resumes the lane: the frame armed a network
    /// fault, whose shaping must apply to it too.
    pub pause: bool,
}

impl Emit {
    /// The gathered frame, unchanged, not before `not_before`.
    pub fn original(not_before: Option<Instant>) -> Emit {
        Emit { keep_original: true, frames: Vec::new(), not_before, pause: false }
    }

    pub fn frames(frames: Vec<BytesMut>, not_before: Option<Instant>) -> Emit {
        Emit { keep_original: false, frames, not_before, pause: false }
    }
}

/// Why one direction of a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// A frame's length prefix is out of bounds.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame is well-sized but not what Kafka allows here.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A frame that is not the Kafka kaos can relay safely.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("truncated header in a {0}-byte frame")]
    TruncatedHeader(usize),
    #[error(transparent)]
    Header(#[from] FrameError),
    #[error("unsolicited response with correlation id {0}")]
    Unsolicited(i32),
    #[error("response correlation id {got} does not match the oldest request's {expected}")]
    OutOfOrder { got: i32, expected: i32 },
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// A router was handed a frame it did not ask for: a kaos bug, contained to one connection.
    #[error("kaos lost track of a frame ({0})")]
    Lost(&'static str),
    #[error(transparent)]
    Sasl(#[from] UnfollowableExchange),
    #[error(
        "API key {0} before the client logged in (--client-users): closed, as a broker's SASL listener does"
    )]
    Unauthenticated(i16),
    #[error("a SASL request kaos cannot read: {0}")]
    Login(#[from] CodecError),
}

/// Buffer layout: `[start, ready)` is cleared to send, `[ready, end)` is read but not yet judged.
#[derive(Debug)]
pub struct Lane {
    /// Empty while the lane is idle: the buffer is back in the shard's pool.
    buf: Vec<u8>,
    start: usize,
    ready: usize,
    end: usize,
    /// Bytes of the frame being streamed that have not been read yet.
    frame_left: usize,
    /// Size, prefix included, of the frame at `ready` that must be gathered whole.
    whole: Option<usize>,
    /// Emitted frames waiting to be written, and how much of the first is written.
    emitted: VecDeque<BytesMut>,
    emitted_written: usize,
    /// Nothing is written before this instant.
    not_before: Option<Instant>,
    /// The reads whose bytes are not all judged yet: (the buffer's end after the read, when it
    /// returned), oldest first. A frame arrived with the read that brought its first byte, so
    /// one judged late (queued behind a frame held back) keeps its own arrival.
    reads: VecDeque<(usize, Instant)>,
    max_frame: usize,
    /// What network faults impose on the writes; `None` (the usual case) writes freely.
    shaping: Option<Shaping>,
    /// Nothing is written until the connection resumes the lane (see `Emit::pause`).
    paused: bool,
    pub eof: bool,
}

/// The network faults' hold on one lane's writes: a pace, a byte limit, or both.
#[derive(Debug)]
struct Shaping {
    pacer: Option<Pacer>,
    /// Bytes this lane may still write before its limit; `Some(0)`: the limit is reached.
    bytes_left: Option<u64>,
    /// When the pacer lets the next byte go, once it stopped a write; cleared by each flush.
    paced_until: Option<Instant>,
}

impl Shaping {
    /// Writes as much of `bytes` as the pacer and the byte limit allow now: `Ok(None)` when they,
    /// or the writer, take nothing now.
    fn write<D: AsyncWrite + Unpin>(
        &mut self,
        dst: &mut D,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Result<Option<usize>, LaneError> {
        let mut len = bytes.len();
        if let Some(left) = self.bytes_left {
            if left == 0 {
                return Ok(None);
            }
            len = len.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let now = self.pacer.as_ref().map(|_| Instant::now());
        if let (Some(pacer), Some(now)) = (&mut self.pacer, now) {
            match pacer.allowance(now) {
                Ok(allowed) => len = len.min(allowed),
                Err(until) => {
                    self.paced_until = Some(until);
                    return Ok(None);
                }
            }
        }
        let Some(written) = write_some(dst, cx, &bytes[..len])? else {
            return Ok(None);
        };
        if let Some(left) = &mut self.bytes_left {
            *left = left.saturating_sub(u64::try_from(written).unwrap_or(u64::MAX));
        }
        if let (Some(pacer), Some(now)) = (&mut self.pacer, now) {
            pacer.wrote(written, now);
        }
        Ok(Some(written))
    }
}

/// What one `step` did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub read: usize,
    pub wrote: bool,
}

impl Progress {
    pub fn any(&self) -> bool {
        self.read > 0 || self.wrote
    }
}

impl Lane {
    pub fn new(max_frame: usize) -> Lane {
        Lane {
            buf: Vec::new(),
            start: 0,
            ready: 0,
            end: 0,
            frame_left: 0,
            whole: None,
            emitted: VecDeque::new(),
            emitted_written: 0,
            not_before: None,
            reads: VecDeque::new(),
            max_frame,
            shaping: None,
            paused: false,
            eof: false,
        }
    }

    /// Whether the lane waits for `resume`.
    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Paces every later write (emitted frames and streamed bytes alike) to what `pacer` allows;
    /// `None` writes freely again. While the pacer allows nothing, the lane stops writing and
    /// [`Lane::held_until`] says when to try again.
    pub fn set_pacer(&mut self, pacer: Option<Pacer>) {
        match &mut self.shaping {
            Some(shaping) => {
                shaping.pacer = pacer;
                shaping.paced_until = None;
            }
            None if pacer.is_some() => {
                self.shaping = Some(Shaping { pacer, bytes_left: None, paced_until: None });
            }
            None => {}
        }
        self.drop_idle_shaping();
    }

    /// Lets the lane write `limit` more bytes (counted from this call) and then nothing, not
    /// even part of a write, as Toxiproxy's limit_data; `None` lifts the limit. Once the limit is
    /// reached, [`Lane::limit_reached`] says so and the connection closes.
    pub fn set_byte_limit(&mut self, limit: Option<u64>) {
        match &mut self.shaping {
            Some(shaping) => shaping.bytes_left = limit,
            None if limit.is_some() => {
                self.shaping = Some(Shaping { pacer: None, bytes_left: limit, paced_until: None });
            }
            None => {}
        }
        self.drop_idle_shaping();
    }

    /// Whether the byte limit is used up: the lane writes nothing more.
    pub fn limit_reached(&self) -> bool {
        self.shaping.as_ref().is_some_and(|shaping| shaping.bytes_left == Some(0))
    }

    /// Back to the unshaped path once neither a pacer nor a limit is left.
    fn drop_idle_shaping(&mut self) {
        if let Some(Shaping { pacer: None, bytes_left: None, .. }) = self.shaping {
            self.shaping = None;
        }
    }

    /// Nothing read is waiting to be sent.
    pub fn is_flushed(&self) -> bool {
        self.start == self.ready
            && self.emitted.is_empty()
            && self.not_before.is_none()
            && self.whole.is_none()
            && self.frame_left == 0
    }

    /// When the lane is waiting for a delay to pass, or for its pacer to allow the next write:
    /// the earlier of the two.
    pub fn held_until(&self) -> Option<Instant> {
        let paced_until = self.shaping.as_ref().and_then(|shaping| shaping.paced_until);
        match (self.not_before, paced_until) {
            (Some(not_before), Some(paced_until)) => Some(not_before.min(paced_until)),
            (not_before, paced_until) => not_before.or(paced_until),
        }
    }

    /// Sends frames of kaos's own at the current frame boundary, once everything before the
    /// boundary is out, so they cannot overtake earlier frames; `false` when not possible now.
    pub fn inject(&mut self, frames: Vec<BytesMut>, not_before: Option<Instant>) -> bool {
        if !self.is_flushed() {
            return false;
        }
        self.push(Emit::frames(frames, not_before));
        true
    }

    fn push(&mut self, emit: Emit) {
        self.paused |= emit.pause;
        self.emitted.extend(emit.frames.into_iter().filter(|f| !f.is_empty()));
        if emit.not_before.is_some() {
            self.not_before = self.not_before.max(emit.not_before);
        }
    }

    /// Judges frames, writes what is cleared, and reads once. Never blocks.
    pub fn step<R: Router, S: AsyncRead + Unpin, D: AsyncWrite + Unpin>(
        &mut self,
        src: &mut S,
        dst: &mut D,
        router: &mut R,
        cx: &mut Context<'_>,
    ) -> Result<Progress, LaneError> {
        let mut progress = Progress::default();
        self.judge(router)?;
        if self.flush(dst, cx, &mut progress)? && self.take_whole(router)? {
            progress.wrote = true;
            self.flush(dst, cx, &mut progress)?;
            self.judge(router)?;
        }
        if !self.eof {
            match self.fill(src, cx) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    progress.read = n;
                    self.judge(router)?;
                }
                Poll::Ready(Err(e)) => return Err(LaneError::Io(e)),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Walks frame boundaries in `[ready, end)`, clearing streamed bytes for sending.
    fn judge<R: Router>(&mut self, router: &mut R) -> Result<(), LaneError> {
        while self.whole.is_none() {
            let available = self.end - self.ready;
            if self.frame_left > 0 {
                let take = available.min(self.frame_left);
                self.ready += take;
                self.frame_left -= take;
                if self.frame_left > 0 {
                    return Ok(());
                }
                continue;
            }
            let data = &self.buf[self.ready..self.end];
            let Some(body_len) = frame::body_len(data, router.min_body(), self.max_frame)? else {
                return Ok(());
            };
            let arrived = self.arrival_of(self.ready);
            let data = &self.buf[self.ready..self.end];
            let head = &data[LENGTH_PREFIX..data.len().min(LENGTH_PREFIX + body_len)];
            match router.on_frame(body_len, head, arrived)? {
                Verdict::Forward => self.frame_left = LENGTH_PREFIX + body_len,
                Verdict::Whole => self.whole = Some(LENGTH_PREFIX + body_len),
                Verdict::NeedMore if head.len() == body_len => {
                    return Err(ProtocolError::TruncatedHeader(body_len).into());
                }
                Verdict::NeedMore | Verdict::Hold => return Ok(()),
            }
        }
        Ok(())
    }

    /// Writes emitted frames, then the cleared bytes. `Ok(true)`: everything is out.
    fn flush<D: AsyncWrite + Unpin>(
        &mut self,
        dst: &mut D,
        cx: &mut Context<'_>,
        progress: &mut Progress,
    ) -> Result<bool, LaneError> {
        if self.paused {
            return Ok(false);
        }
        if let Some(shaping) = &mut self.shaping {
            // A wait is only reported while it is what stops the lane.
            shaping.paced_until = None;
        }
        if let Some(not_before) = self.not_before {
            if Instant::now() < not_before {
                return Ok(false);
            }
            self.not_before = None;
            progress.wrote = true;
        }
        while let Some(frame) = self.emitted.front() {
            match write_shaped(dst, cx, &frame[self.emitted_written..], &mut self.shaping)? {
                Some(n) => {
                    self.emitted_written += n;
                    progress.wrote = true;
                    if self.emitted_written == frame.len() {
                        self.emitted.pop_front();
                        self.emitted_written = 0;
                    }
                }
                None => return Ok(false),
            }
        }
        while self.start < self.ready {
            match write_shaped(dst, cx, &self.buf[self.start..self.ready], &mut self.shaping)? {
                Some(n) => {
                    self.start += n;
                    progress.wrote = true;
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Once a gathered frame is complete and everything before it is sent, takes what the router
    /// emits in its place. `Ok(true)`: the frame was taken.
    fn take_whole<R: Router>(&mut self, router: &mut R) -> Result<bool, LaneError> {
        let Some(size) = self.whole else {
            return Ok(false);
        };
        if self.end - self.ready < size {
            return Ok(false);
        }
        let body = &self.buf[self.ready + LENGTH_PREFIX..self.ready + size];
        let emit = router.on_whole(body)?;
        self.ready += size;
        if !emit.keep_original {
            self.start = self.ready;
        }
        self.whole = None;
        self.push(emit);
        Ok(true)
    }

    /// When the byte at `offset` was read; forgets the reads that ended before it.
    fn arrival_of(&mut self, offset: usize) -> Instant {
        while self.reads.front().is_some_and(|&(end, _)| end <= offset) {
            self.reads.pop_front();
        }
        self.reads.front().map_or_else(Instant::now, |&(_, at)| at)
    }

    /// Reads into the free tail, compacting or growing the buffer first when needed. A lane with
    /// nothing buffered that finds nothing to read gives its buffer back to the pool.
    fn fill<S: AsyncRead + Unpin>(&mut self, src: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start == self.end {
            (self.start, self.ready, self.end) = (0, 0, 0);
            self.reads.clear();
            if self.whole.is_none() && self.buf.len() > LANE_BUFFER {
                // Grown to gather a large frame: freed rather than kept.
                self.buf = Vec::new();
            }
        }
        if self.buf.is_empty() {
            self.buf = buffers::take();
        }
        let needed_end = self.ready + self.whole.unwrap_or(0);
        if self.end == self.buf.len() || needed_end > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            for (end, _) in &mut self.reads {
                *end = end.saturating_sub(self.start);
            }
            (self.ready, self.end) = (self.ready - self.start, self.end - self.start);
            self.start = 0;
            let needed_end = self.ready + self.whole.unwrap_or(0);
            if needed_end > self.buf.len() {
                self.buf.resize(needed_end, 0);
            }
            if self.end == self.buf.len() {
                // Full of bytes the other side has not taken yet: backpressure.
                return Poll::Pending;
            }
        }
        let result = Pin::new(src).poll_read(cx, &mut self.buf[self.end..]);
        match result {
            Poll::Ready(Ok(n)) => {
                self.end += n;
                self.reads.push_back((self.end, Instant::now()));
            }
            // glommio holds no reference to the buffer while it waits for the socket.
            Poll::Pending if self.start == self.end && self.whole.is_none() => {
                buffers::give(std::mem::take(&mut self.buf));
            }
            _ => {}
        }
        result
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        buffers::give(std::mem::take(&mut self.buf));
    }
}

/// Writes some of `bytes`, as the lane's shaping allows when it has one.
fn write_shaped<D: AsyncWrite + Unpin>(
    dst: &mut D,
    cx: &mut Context<'_>,
    bytes: &[u8],
    shaping: &mut Option<Shaping>,
) -> Result<Option<usize>, LaneError> {
    match shaping {
        None => write_some(dst, cx, bytes),
        Some(shaping) => shaping.write(dst, cx, bytes),
    }
}

fn write_some<D: AsyncWrite + Unpin>(
    dst: &mut D,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> Result<Option<usize>, LaneError> {
    match Pin::new(dst).poll_write(cx, bytes) {
        Poll::Ready(Ok(0)) => Err(LaneError::Io(io::ErrorKind::WriteZero.into())),
        Poll::Ready(Ok(n)) => Ok(Some(n)),
        Poll::Ready(Err(e)) => Err(LaneError::Io(e)),
        Poll::Pending => Ok(None),
    }
}

#[cfg(test)]
mod tests;
