//! Pacing of one lane's writes, for the network faults that shape traffic as Toxiproxy does
//! (bandwidth, slicer).
//!
//! A lane asks its [`Pacer`] before every write how many bytes it may write now, writes at most
//! that many, and reports what it wrote. When nothing may be written, the pacer says until when,
//! and the lane hands that instant to the connection's timer instead of spinning. The pacer only
//! decides timing and write sizes: the bytes themselves, and their order, are the lane's.
//!
//! Bandwidth is a token bucket kept in nanobytes (a billionth of a byte) in a `u128`, so that
//! refilling at any rate, from 1 byte to `u64::MAX` bytes per second, is exact integer arithmetic
//! that neither overflows nor drifts: what the bucket gains is exactly `elapsed × rate`. The
//! bucket holds about 10 ms of the rate (at least 1 byte) and starts full, so small frames on an
//! idle lane barely notice the limit while the average never exceeds the rate. Once empty, it
//! asks to be woken when half of it has refilled: every wake-up then carries a worthwhile write
//! (never a byte at a time at low rates, at most ~200 wake-ups a second at any rate), and a timer
//! that fires up to 5 ms late still loses no credit to the bucket's cap.

use std::time::{Duration, Instant};

/// Nanobytes in a byte: the bucket's unit, so that `elapsed_ns × bytes_per_second` is nanobytes.
const NANO: u128 = 1_000_000_000;

/// How many of the rate's bytes the bucket holds: one hundredth of a second's worth (10 ms).
const BURST_DIVISOR: u64 = 100;

/// How a network fault shapes one direction's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// At most this many bytes per second (Toxiproxy's bandwidth; the caller converts from
    /// `rate` in KB/s). A rate of 0 is taken as 1 byte per second: traffic is shaped, not stopped.
    Bandwidth { bytes_per_second: u64 },
    /// Pieces of `average` ± `variation` bytes (random per piece, at least 1), `gap` apart
    /// (Toxiproxy's slicer).
    Slices { average: usize, variation: usize, gap: Duration },
}

/// Decides how many bytes one lane may write, and when.
#[derive(Debug)]
pub struct Pacer {
    state: State,
    rng: fastrand::Rng,
}

#[derive(Debug)]
enum State {
    Bucket(Bucket),
    Slices(Slices),
}

/// A token bucket: `credit` nanobytes may be written now, up to `capacity`.
#[derive(Debug)]
struct Bucket {
    bytes_per_second: u64,
    /// The most credit the bucket holds, in nanobytes.
    capacity: u128,
    /// How much credit an empty bucket waits for before writing again, in nanobytes.
    wake_at_credit: u128,
    credit: u128,
    /// Up to when `credit` is counted; `None` before the first use (the bucket is full then).
    refilled_at: Option<Instant>,
}

/// The piece being written, and when the next one may start.
#[derive(Debug)]
struct Slices {
    smallest: usize,
    largest: usize,
    gap: Duration,
    /// Bytes of the current piece not written yet; 0 between pieces.
    piece_left: usize,
    /// When the next piece may start; `None` before the first.
    next_piece_at: Option<Instant>,
}

impl Pacer {
    pub fn new(shape: Shape, rng: fastrand::Rng) -> Pacer {
        let state = match shape {
            Shape::Bandwidth { bytes_per_second } => {
                let bytes_per_second = bytes_per_second.max(1);
                let burst = (bytes_per_second / BURST_DIVISOR).max(1);
                let capacity = u128::from(burst) * NANO;
                State::Bucket(Bucket {
                    bytes_per_second,
                    capacity,
                    wake_at_credit: u128::from((burst / 2).max(1)) * NANO,
                    credit: capacity,
                    refilled_at: None,
                })
            }
            Shape::Slices { average, variation, gap } => State::Slices(Slices {
                smallest: average.saturating_sub(variation).max(1),
                largest: average.saturating_add(variation).max(1),
                gap,
                piece_left: 0,
                next_piece_at: None,
            }),
        };
        Pacer { state, rng }
    }

    /// How many bytes may be written at `now`: `Ok(n)` with `n > 0`, or `Err(instant)` when
    /// nothing may be written before that instant.
    pub fn allowance(&mut self, now: Instant) -> Result<usize, Instant> {
        match &mut self.state {
            State::Bucket(bucket) => bucket.allowance(now),
            State::Slices(slices) => slices.allowance(now, &mut self.rng),
        }
    }

    /// Records that `n` bytes (at most the allowance) were written at `now`.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        match &mut self.state {
            State::Bucket(bucket) => bucket.wrote(n, now),
            State::Slices(slices) => slices.wrote(n, now),
        }
    }
}

impl Bucket {
    /// Adds the credit earned since the last refill, up to the capacity. An earlier `now` than
    /// already counted earns nothing.
    fn refill(&mut self, now: Instant) {
        if let Some(since) = self.refilled_at {
            let elapsed = now.saturating_duration_since(since).as_nanos();
            let earned = elapsed.saturating_mul(u128::from(self.bytes_per_second));
            self.credit = self.credit.saturating_add(earned).min(self.capacity);
        }
        self.refilled_at = Some(self.refilled_at.map_or(now, |since| since.max(now)));
    }

    fn allowance(&mut self, now: Instant) -> Result<usize, Instant> {
        self.refill(now);
        let bytes = self.credit / NANO;
        if bytes > 0 {
            return Ok(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        let missing = self.wake_at_credit.saturating_sub(self.credit);
        let wait_ns = missing.div_ceil(u128::from(self.bytes_per_second));
        let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX));
        let since = self.refilled_at.unwrap_or(now);
        // An instant too far to represent cannot come from these bounds (a wait is at most 1 s).
        Err(since.checked_add(wait).unwrap_or(since))
    }

    fn wrote(&mut self, n: usize, now: Instant) {
        self.refill(now);
        let spent = u128::try_from(n).unwrap_or(u128::MAX).saturating_mul(NANO);
        self.credit = self.credit.saturating_sub(spent);
    }
}

impl Slices {
    fn allowance(&mut self, now: Instant, rng: &mut fastrand::Rng) -> Result<usize, Instant> {
        if self.piece_left > 0 {
            return Ok(self.piece_left);
        }
        if let Some(at) = self.next_piece_at
            && now < at
        {
            return Err(at);
        }
        self.piece_left = rng.usize(self.smallest..=self.largest);
        Ok(self.piece_left)
    }

    fn wrote(&mut self, n: usize, now: Instant) {
        if self.piece_left == 0 {
            return;
        }
        self.piece_left = self.piece_left.saturating_sub(n);
        if self.piece_left == 0 {
            self.next_piece_at = Some(now.checked_add(self.gap).unwrap_or(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bandwidth(bytes_per_second: u64) -> Pacer {
        Pacer::new(Shape::Bandwidth { bytes_per_second }, fastrand::Rng::with_seed(7))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Writes everything allowed, waking when told to, until `total` bytes are out; returns
    /// when the last byte left, and every write's size.
    fn pass(pacer: &mut Pacer, start: Instant, total: usize) -> (Instant, Vec<usize>) {
        let (mut now, mut left, mut writes) = (start, total, Vec::new());
        while left > 0 {
            match pacer.allowance(now) {
                Ok(n) => {
                    let n = n.min(left);
                    pacer.wrote(n, now);
                    writes.push(n);
                    left -= n;
                }
                Err(at) => {
                    assert!(at > now, "a wait must be in the future");
                    now = at;
                }
            }
        }
        (now, writes)
    }

    #[test]
    fn bucket_starts_full_with_ten_milliseconds_of_the_rate() {
        let now = Instant::now();
        assert_eq!(bandwidth(100_000).allowance(now), Ok(1000));
        assert_eq!(bandwidth(1000).allowance(now), Ok(10));
        // Below 100 B/s the burst is still one byte.
        assert_eq!(bandwidth(50).allowance(now), Ok(1));
        assert_eq!(bandwidth(0).allowance(now), Ok(1), "a rate of 0 is 1 B/s");
    }

    #[test]
    fn empty_bucket_waits_for_half_its_burst() {
        let start = Instant::now();
        let mut pacer = bandwidth(100_000);
        pacer.wrote(1000, start);
        assert_eq!(pacer.allowance(start), Err(start + ms(5)));
        // Part of the way there, what was earned may be written.
        assert_eq!(pacer.allowance(start + ms(1)), Ok(100));
        pacer.wrote(60, start + ms(1));
        assert_eq!(pacer.allowance(start + ms(1)), Ok(40));
        pacer.wrote(40, start + ms(1));
        assert_eq!(pacer.allowance(start + ms(1)), Err(start + ms(6)));
        assert_eq!(pacer.allowance(start + ms(6)), Ok(500));
    }

    #[test]
    fn bucket_holds_no_more_than_its_burst() {
        let start = Instant::now();
        let mut pacer = bandwidth(100_000);
        pacer.wrote(1000, start);
        assert_eq!(pacer.allowance(start + Duration::from_secs(3600)), Ok(1000));
    }

    #[test]
    fn bucket_keeps_fractions_of_a_byte() {
        // 300 B/s: a byte every 3.33 ms, and a burst of 3 bytes (wake-up at 1).
        let start = Instant::now();
        let mut pacer = bandwidth(300);
        assert_eq!(pacer.allowance(start), Ok(3));
        pacer.wrote(3, start);
        assert_eq!(pacer.allowance(start + ms(3)), Err(start + Duration::from_nanos(3_333_334)));
        assert_eq!(pacer.allowance(start + ms(4)), Ok(1));
        // The 0.2 byte left over is kept: the next byte is due 0.8 byte's time later.
        pacer.wrote(1, start + ms(4));
        assert_eq!(pacer.allowance(start + ms(6)), Err(start + Duration::from_nanos(6_666_667)));
        // Three bytes in 10 ms, exactly.
        assert_eq!(pacer.allowance(start + ms(10)), Ok(2));
    }

    #[test]
    fn average_holds_at_low_and_high_rates() {
        for (rate, total) in [(1, 5), (1000, 100_000), (1_000_000_000, 50_000_000_000), (u64::MAX, 1 << 62)] {
            let start = Instant::now();
            let mut pacer = bandwidth(rate);
            let burst = (rate / 100).max(1);
            let (end, writes) = pass(&mut pacer, start, total);
            let elapsed = end - start;
            // The first burst is free; everything after it takes its time, to the nanosecond.
            let owed = u128::try_from(total).unwrap() - u128::from(burst);
            let least = Duration::from_nanos(u64::try_from(owed * NANO / u128::from(rate)).unwrap());
            assert!(elapsed >= least, "rate {rate}: {total} bytes in {elapsed:?}, under {least:?}");
            assert!(elapsed <= least + ms(1) * 11, "rate {rate}: {elapsed:?} is far over {least:?}");
            assert!(writes.iter().all(|&n| n as u64 <= burst), "rate {rate}: a write over the burst");
        }
    }

    #[test]
    fn long_idle_at_the_highest_rate_does_not_overflow() {
        let start = Instant::now();
        let mut pacer = bandwidth(u64::MAX);
        pacer.wrote(usize::MAX, start);
        let later = start + Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(pacer.allowance(later), Ok(usize::try_from(u64::MAX / 100).unwrap_or(usize::MAX)));
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let start = Instant::now() + ms(100);
        let mut pacer = bandwidth(100_000);
        pacer.wrote(1000, start);
        assert!(pacer.allowance(start - ms(50)).is_err());
        assert_eq!(pacer.allowance(start + ms(1)), Ok(100));
    }

    #[test]
    fn slices_are_average_plus_or_minus_variation_and_gap_apart() {
        let gap = Duration::from_micros(250);
        let mut pacer =
            Pacer::new(Shape::Slices { average: 10, variation: 4, gap }, fastrand::Rng::with_seed(1));
        let start = Instant::now();
        let mut now = start;
        let mut sizes = Vec::new();
        for _ in 0..500 {
            let size = pacer.allowance(now).expect("a new piece may start");
            assert!((6..=14).contains(&size), "piece of {size}");
            sizes.push(size);
            // Written in two parts: the rest of the piece is allowed at once.
            pacer.wrote(1, now);
            assert_eq!(pacer.allowance(now), Ok(size - 1));
            pacer.wrote(size - 1, now);
            assert_eq!(pacer.allowance(now), Err(now + gap));
            assert_eq!(pacer.allowance(now + gap / 2), Err(now + gap));
            now += gap;
        }
        assert!(sizes.contains(&6) && sizes.contains(&14), "sizes span the variation");
        assert_eq!(now - start, gap * 500);
    }

    #[test]
    fn slices_are_at_least_one_byte() {
        let shapes = [(0, 0), (1, 5), (3, 3)];
        for (average, variation) in shapes {
            let shape = Shape::Slices { average, variation, gap: Duration::ZERO };
            let mut pacer = Pacer::new(shape, fastrand::Rng::with_seed(3));
            let now = Instant::now();
            for _ in 0..100 {
                let size = pacer.allowance(now).unwrap();
                assert!((1..=(average + variation).max(1)).contains(&size), "{average}±{variation}: {size}");
                pacer.wrote(size, now);
            }
        }
    }

    #[test]
    fn gapless_slices_never_wait() {
        let shape = Shape::Slices { average: 3, variation: 0, gap: Duration::ZERO };
        let mut pacer = Pacer::new(shape, fastrand::Rng::with_seed(3));
        let start = Instant::now();
        let (end, writes) = pass(&mut pacer, start, 30);
        assert_eq!((end, writes), (start, vec![3; 10]));
    }
}
