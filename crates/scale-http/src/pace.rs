//! Bounds on how long a request body may take to arrive.
//!
//! A client that sends its head and then trickles its body holds a
//! connection for as long as it likes unless something bounds the read.
//! [`Paced`] wraps a request body and fails it with [`BodyTimeout`] when the
//! whole body has taken longer than its total time, or when a window passes
//! in which fewer bytes arrived than the minimum rate asks for.
//!
//! The clock starts the first time the body is not ready: a body that is
//! already buffered when the service reads it never touches a timer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use tokio::time::{Instant, Sleep};

/// The default total time for reading a request body: 60 s, enough for the
/// default 10 MiB limit at about 1.4 Mbit/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The default minimum rate of a request body: 1 KiB in every
/// [`DEFAULT_BODY_RATE_WINDOW`].
pub const DEFAULT_BODY_MIN_BYTES: u64 = 1024;

/// The default window over which a body's rate is measured: 5 s.
pub const DEFAULT_BODY_RATE_WINDOW: Duration = Duration::from_secs(5);

/// How fast a request body must arrive: at least `bytes` in each `window`
/// (consecutive windows, from the first moment the body keeps the reader
/// waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// The fewest bytes a window must bring.
    pub bytes: u64,
    /// The length of a window.
    pub window: Duration,
}

impl Default for MinRate {
    fn default() -> Self {
        Self { bytes: DEFAULT_BODY_MIN_BYTES, window: DEFAULT_BODY_RATE_WINDOW }
    }
}

/// The bounds on one body read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pace {
    pub(crate) total: Option<Duration>,
    pub(crate) min_rate: Option<MinRate>,
}

impl Pace {
    fn is_unbounded(&self) -> bool {
        self.total.is_none() && self.min_rate.is_none()
    }
}

/// A request body that took too long to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyTimeout {
    /// The body was not complete within this total time.
    Total(Duration),
    /// Fewer than the minimum bytes arrived within one window.
    TooSlow(MinRate),
}

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Total(total) => write!(f, "the request body was not complete within {total:?}"),
            Self::TooSlow(rate) => {
                write!(f, "the request body brought fewer than {} bytes in {:?}", rate.bytes, rate.window)
            }
        }
    }
}

impl std::error::Error for BodyTimeout {}

/// The deadlines of a body read that has started waiting.
struct Clock {
    deadline: Option<Instant>,
    window_end: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

pin_project_lite::pin_project! {
    /// A body that fails with [`BodyTimeout`] when it arrives too slowly.
    pub(crate) struct Paced<B> {
        #[pin]
        inner: B,
        pace: Pace,
        // Bytes received in the current window.
        in_window: u64,
        clock: Option<Clock>,
    }
}

impl<B> Paced<B> {
    pub(crate) fn new(inner: B, pace: Pace) -> Self {
        Self { inner, pace, in_window: 0, clock: None }
    }
}

impl<B> http_body::Body for Paced<B>
where
    B: http_body::Body,
    B::Error: Into<crate::BoxError>,
{
    type Data = B::Data;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.in_window = this.in_window.saturating_add(data.remaining() as u64);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.pace.is_unbounded() {
            return Poll::Pending;
        }
        let pace = *this.pace;
        let clock = this.clock.get_or_insert_with(|| {
            let now = Instant::now();
            // A bound too far away to be told apart from none is none.
            let deadline = pace.total.and_then(|total| now.checked_add(total));
            let window_end = pace.min_rate.and_then(|rate| now.checked_add(rate.window));
            // Both cannot be `None`: the pace is bounded.
            let first = deadline.into_iter().chain(window_end).min().unwrap_or(now);
            Clock { deadline, window_end, sleep: Box::pin(tokio::time::sleep_until(first)) }
        });
        loop {
            let now = Instant::now();
            if let (Some(deadline), Some(total)) = (clock.deadline, pace.total)
                && now >= deadline
            {
                return Poll::Ready(Some(Err(BodyTimeout::Total(total).into())));
            }
            if let (Some(window_end), Some(rate)) = (clock.window_end, pace.min_rate)
                && now >= window_end
            {
                if *this.in_window < rate.bytes {
                    return Poll::Ready(Some(Err(BodyTimeout::TooSlow(rate).into())));
                }
                *this.in_window = 0;
                clock.window_end = now.checked_add(rate.window);
            }
            let Some(wake) = clock.deadline.into_iter().chain(clock.window_end).min() else {
                return Poll::Pending;
            };
            if clock.sleep.deadline() != wake {
                clock.sleep.as_mut().reset(wake);
            }
            if clock.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    /// A body fed from a channel: the test decides when each chunk arrives.
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for Channel {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
        }
    }

    /// Sends `chunk` every `every` until `for_how_long` has passed (or the
    /// reader gave up), then ends the body; reads it with `pace`.
    async fn feed(
        pace: Pace,
        chunk: &'static [u8],
        every: Duration,
        for_how_long: Duration,
    ) -> Result<usize, BodyTimeout> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let feeder = tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < for_how_long {
                if tx.send(Bytes::from_static(chunk)).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
        let read = Paced::new(Channel(rx), pace).collect().await;
        feeder.abort();
        match read {
            Ok(collected) => Ok(collected.to_bytes().len()),
            Err(err) => Err(*err.downcast::<BodyTimeout>().expect("a body timeout")),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_trickle_is_cut_off_at_the_end_of_its_first_window() {
        let rate = MinRate { bytes: 100, window: 200 * MS };
        let started = Instant::now();
        let read = feed(Pace { total: None, min_rate: Some(rate) }, b"x", 20 * MS, 10_000 * MS).await;
        assert_eq!(read, Err(BodyTimeout::TooSlow(rate)));
        let took = started.elapsed();
        assert!(took >= 200 * MS && took < 1_000 * MS, "{took:?}");
    }

    #[tokio::test]
    async fn a_body_fast_enough_but_too_long_hits_the_total_time() {
        let rate = MinRate { bytes: 10, window: 100 * MS };
        let started = Instant::now();
        let read = feed(Pace { total: Some(400 * MS), min_rate: Some(rate) }, &[7; 64], 10 * MS, 10_000 * MS).await;
        assert_eq!(read, Err(BodyTimeout::Total(400 * MS)));
        let took = started.elapsed();
        assert!(took >= 400 * MS && took < 1_500 * MS, "{took:?}");
    }

    #[tokio::test]
    async fn a_steady_body_over_many_windows_is_read_whole() {
        let pace = Pace { total: Some(5_000 * MS), min_rate: Some(MinRate { bytes: 100, window: 100 * MS }) };
        let read = feed(pace, &[1; 100], 20 * MS, 600 * MS).await.expect("fast enough");
        assert!(read >= 500, "{read} bytes");
    }

    #[tokio::test]
    async fn without_bounds_a_slow_body_is_waited_for() {
        let read = feed(Pace { total: None, min_rate: None }, b"x", 50 * MS, 300 * MS).await;
        assert!(read.is_ok_and(|len| len >= 5), "{read:?}");
    }

    /// A body that is ready whenever it is polled never starts the clock:
    /// this runtime has no timer, and making one would panic.
    #[test]
    fn a_ready_body_needs_no_timer() {
        let no_timer = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let pace = Pace { total: Some(MS), min_rate: Some(MinRate::default()) };
        let body = http_body_util::Full::new(Bytes::from_static(b"all here"));
        let read = no_timer.block_on(Paced::new(body, pace).collect()).unwrap();
        assert_eq!(read.to_bytes(), "all here");
    }
}
