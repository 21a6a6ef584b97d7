//! Timing work split over threads, shared by `benches/workloads.rs` and
//! `examples/hot_loop.rs`.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Runs `work` once on each of `threads` threads, started together, and
/// returns the time from the first thread's start to the last one's end:
/// thread start-up and joins are left out. `work` gets the thread's index,
/// from 0.
pub fn time_on_threads(threads: u64, work: impl Fn(usize) + Sync) -> Duration {
    let ready = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let (ready, work) = (&ready, &work);
                scope.spawn(move || {
                    ready.wait();
                    let start = Instant::now();
                    work(index as usize);
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().expect("a worker thread panicked")).collect()
    });
    let first = spans.iter().map(|span| span.0).min().expect("one thread at least");
    let last = spans.iter().map(|span| span.1).max().expect("one thread at least");
    last - first
}
