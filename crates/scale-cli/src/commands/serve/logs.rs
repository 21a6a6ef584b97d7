//! Log lines gathered in memory and written out in batches.
//!
//! A server that logs a line per request must not pay a system call or a
//! thread wake-up per line. [`Batched`] is a `MakeWriter` for
//! `tracing-subscriber`: each formatted line is appended to a shared buffer
//! under a mutex, and a thread of its own swaps the buffer out and writes it
//! every [`FLUSH_EVERY`], or sooner when it passes [`WAKE_AT`]. When the
//! output cannot keep up and the buffer holds [`CAPACITY`] bytes, new lines
//! are dropped and counted, so requests are never slowed by their logs; the
//! count is written as a line of its own once there is room again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line waits, at most, before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// The buffered bytes past which the writer thread is woken early.
pub const WAKE_AT: usize = 1 << 20;

/// The buffered bytes past which lines are dropped.
pub const CAPACITY: usize = 16 << 20;

/// A `MakeWriter` whose lines go to `output` in batches. Dropping its
/// [`Flusher`] writes what is left and stops the thread.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: stopping, or past [`WAKE_AT`].
    wake: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// Lines dropped since the last batch was written.
    dropped: u64,
    stopping: bool,
}

/// Owns the writer thread; dropping it writes the last batch.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `output`.
pub fn batched(output: impl Write + Send + 'static) -> std::io::Result<(Batched, Flusher)> {
    let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new().name("scale-logs".into()).spawn(move || write_batches(&writer, output))?;
    Ok((Batched { shared: Arc::clone(&shared) }, Flusher { shared, thread: Some(thread) }))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves whole lines behind: go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: swaps the buffer out and writes it, until stopped.
fn write_batches(shared: &Shared, mut output: impl Write) {
    let mut batch = Vec::new();
    loop {
        let (dropped, stopping) = {
            let mut state = shared.lock();
            if !state.stopping && state.lines.len() < WAKE_AT {
                state = shared.wake.wait_timeout(state, FLUSH_EVERY).unwrap_or_else(PoisonError::into_inner).0;
            }
            std::mem::swap(&mut state.lines, &mut batch);
            (std::mem::take(&mut state.dropped), state.stopping)
        };
        // A failing output loses the batch; there is nowhere else to say so.
        let _ = output.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(output, "scale: {dropped} log lines dropped: the log output did not keep up");
        }
        let _ = output.flush();
        batch.clear();
        if batch.capacity() > 4 * WAKE_AT {
            // A burst is over: give its memory back.
            batch = Vec::new();
        }
        if stopping {
            return;
        }
    }
}

/// Appends one formatted line (`tracing-subscriber` writes each event once).
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if state.lines.len() + line.len() > CAPACITY {
            state.dropped += 1;
            return Ok(line.len());
        }
        let before = state.lines.len();
        state.lines.extend_from_slice(line);
        if before < WAKE_AT && state.lines.len() >= WAKE_AT {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.shared }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer thread holds it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_the_last_batch_is_written_at_the_end() {
        let output = Captured::default();
        let (batched, flusher) = batched(output.clone()).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let batched = batched.clone();
                scope.spawn(move || {
                    for line in 0..2_000 {
                        batched.make_writer().write_all(format!("thread {thread} line {line}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(flusher);
        let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000);
        for thread in 0..4 {
            let mine: Vec<&str> =
                lines.iter().copied().filter(|l| l.starts_with(&format!("thread {thread} "))).collect();
            let expected: Vec<String> = (0..2_000).map(|line| format!("thread {thread} line {line}")).collect();
            assert_eq!(mine, expected, "thread {thread}'s lines, whole and in order");
        }
    }

    #[test]
    fn lines_are_written_without_waiting_for_the_end() {
        let output = Captured::default();
        let (batched, _flusher) = batched(output.clone()).unwrap();
        batched.make_writer().write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while output.0.lock().unwrap().as_slice() != b"one line\n" {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// An output that blocks until the test lets it go.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Captured);

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, turn) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = turn.wait(open).unwrap();
            }
            self.1.write(bytes)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_past_the_capacity_and_says_how_many() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let output = Captured::default();
        let (batched, flusher) = batched(Stuck(Arc::clone(&gate), output.clone())).unwrap();
        // The first line is taken by the writer thread, which then blocks.
        batched.make_writer().write_all(b"first\n").unwrap();
        while !batched.shared.lock().lines.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(FLUSH_EVERY * 2);
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        let fit = CAPACITY / line.len();
        for _ in 0..fit + 10 {
            batched.make_writer().write_all(&line).unwrap();
        }
        assert_eq!(batched.shared.lock().dropped, 10);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(flusher);
        let text = output.0.lock().unwrap();
        assert!(text.starts_with(b"first\n"));
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 1 + fit + 1);
        assert!(text.ends_with(b"scale: 10 log lines dropped: the log output did not keep up\n"));
    }
}
