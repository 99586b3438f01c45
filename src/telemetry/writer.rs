//! Where log lines go: a buffer in memory, written to stdout by a thread of its own
//! in gathered writes.
//!
//! A logging call only copies its line into the buffer. The thread sleeps while the
//! buffer is empty; the first line into an empty buffer wakes it, and it then waits
//! until that line has waited [`GATHER`] (or until [`WRITE_AT`] bytes are waiting)
//! before it writes them all in one call. A quiet service thus wakes it a few times a
//! second however many lines it logs, and a busy one writes in 64 KiB pieces.
//!
//! Why not `tracing-appender`'s channel: its worker wakes for every line when lines
//! come slower than it writes them, and spins with `sched_yield` before each sleep.
//! At 100 events/s that was three context switches and five `sched_yield` calls per
//! event (BENCHMARKS.md, "What an event costs at 100 events/s").
//!
//! Nothing is dropped: past [`HOLD_AT_MOST`] bytes waiting, a logging call waits until
//! the thread has taken them. [`Flush`] writes what is left when it is dropped; lines
//! logged once the thread has written its last piece are written at once by the
//! caller, so each thread's lines stay in order.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the thread waits for more lines after the first one of a burst: how late a
/// line can reach stdout.
pub const GATHER: Duration = Duration::from_millis(50);
/// Bytes waiting that are written without waiting for the rest of [`GATHER`].
pub const WRITE_AT: usize = 64 * 1024;
/// Bytes waiting beyond which a logging call waits for the thread.
pub const HOLD_AT_MOST: usize = 4 * 1024 * 1024;

/// The limits of one [`Gathered`] writer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub gather: Duration,
    pub write_at: usize,
    pub hold_at_most: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            gather: GATHER,
            write_at: WRITE_AT,
            hold_at_most: HOLD_AT_MOST,
        }
    }
}

struct Waiting {
    bytes: Vec<u8>,
    /// When the first of `bytes` was logged.
    since: Option<Instant>,
    /// [`Flush`] was dropped: write what is left, then finish.
    stopped: bool,
    /// The thread has written its last piece; callers write their own lines.
    finished: bool,
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// The thread waits on it for lines (or the stop).
    arrived: Condvar,
    /// Logging calls wait on it for room.
    taken: Condvar,
    limits: Limits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding the lock; should something, the bytes are
        // still whole lines, so carry on.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer the subscriber formats into: cheap to clone, shared by every thread.
#[derive(Clone)]
pub struct Gathered {
    shared: Arc<Shared>,
    /// Where lines go once the thread has finished.
    late: Arc<Mutex<Box<dyn Write + Send>>>,
}

/// Keep it alive while logging: dropping it writes what is waiting and stops the
/// thread.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes to `out`; `late` is where lines go once it has
/// finished ([`Flush`]).
pub fn gathered<W>(out: W, late: Box<dyn Write + Send>, limits: Limits) -> (Gathered, Flush)
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        waiting: Mutex::new(Waiting {
            bytes: Vec::with_capacity(limits.write_at),
            since: None,
            stopped: false,
            finished: false,
        }),
        arrived: Condvar::new(),
        taken: Condvar::new(),
        limits,
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || write_until_stopped(&shared, out)
        })
        .expect("the log writer thread starts");
    (
        Gathered {
            shared: shared.clone(),
            late: Arc::new(Mutex::new(late)),
        },
        Flush {
            shared,
            thread: Some(thread),
        },
    )
}

fn write_until_stopped<W: Write>(shared: &Shared, mut out: W) {
    let limits = shared.limits;
    let mut spare = Vec::with_capacity(limits.write_at);
    let mut waiting = shared.lock();
    loop {
        while waiting.bytes.is_empty() && !waiting.stopped {
            waiting = shared
                .arrived
                .wait(waiting)
                .unwrap_or_else(|e| e.into_inner());
        }
        if waiting.bytes.is_empty() {
            // Stopped, and all written: from now on callers write their own lines.
            waiting.finished = true;
            break;
        }
        let until = waiting.since.unwrap_or_else(Instant::now) + limits.gather;
        while waiting.bytes.len() < limits.write_at && !waiting.stopped {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            waiting = shared
                .arrived
                .wait_timeout(waiting, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut waiting.bytes, &mut spare);
        waiting.since = None;
        drop(waiting);
        shared.taken.notify_all();
        // A closed stdout loses lines, as it would writing directly; the service
        // carries on.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if spare.capacity() > limits.write_at * 4 {
            // A burst past the hold grew it; give the memory back.
            spare = Vec::with_capacity(limits.write_at);
        }
        waiting = shared.lock();
    }
}

impl Write for &Gathered {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.shared;
        let mut waiting = shared.lock();
        while waiting.bytes.len() >= shared.limits.hold_at_most && !waiting.stopped {
            waiting = shared
                .taken
                .wait(waiting)
                .unwrap_or_else(|e| e.into_inner());
        }
        if waiting.finished {
            drop(waiting);
            let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
            late.write_all(line)?;
            late.flush()?;
            return Ok(line.len());
        }
        let was_empty = waiting.bytes.is_empty();
        if was_empty {
            waiting.since = Some(Instant::now());
        }
        waiting.bytes.extend_from_slice(line);
        let enough = waiting.bytes.len() >= shared.limits.write_at;
        drop(waiting);
        // The thread sleeps without a deadline only while the buffer is empty, and
        // gathers towards `write_at` otherwise: those are the two moments to wake it.
        if was_empty || enough {
            shared.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Gathered {
    type Writer = &'a Gathered;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.arrived.notify_one();
        self.shared.taken.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the thread writes to it; each write may be
    /// slowed down.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        slow: Option<Duration>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(slow) = self.slow {
                std::thread::sleep(slow);
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(writer: &Gathered, line: &str) {
        let mut w = writer.make_writer();
        w.write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn a_lone_line_is_written_after_the_gather_without_a_flush() {
        let sink = Sink::default();
        let limits = Limits::default();
        let (writer, _flush) = gathered(sink.clone(), Box::new(std::io::sink()), limits);
        let logged = Instant::now();
        log(&writer, "one\n");
        while sink.bytes.lock().unwrap().is_empty() {
            assert!(
                logged.elapsed() < Duration::from_secs(5),
                "a lone line never reached the output"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            logged.elapsed() >= limits.gather,
            "it did not wait to gather"
        );
        assert_eq!(*sink.bytes.lock().unwrap(), b"one\n");
    }

    #[test]
    fn lines_of_many_threads_arrive_whole_and_all_in_few_writes() {
        let sink = Sink::default();
        let (writer, flush) = gathered(sink.clone(), Box::new(std::io::sink()), Limits::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        log(&writer, &format!("{{\"thread\":{t},\"line\":{i}}}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(flush);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("{{\"thread\":{t},")))
                .collect();
            let expected: Vec<String> = (0..5_000)
                .map(|i| format!("{{\"thread\":{t},\"line\":{i}}}"))
                .collect();
            assert_eq!(mine, expected, "thread {t}'s lines, in order");
        }
        let writes = *sink.writes.lock().unwrap();
        assert!(
            writes < 200,
            "{writes} writes for 20,000 lines: they were not gathered"
        );
    }

    #[test]
    fn a_full_hold_makes_logging_wait_and_drops_nothing() {
        let sink = Sink {
            slow: Some(Duration::from_millis(20)),
            ..Sink::default()
        };
        let limits = Limits {
            gather: Duration::from_millis(1),
            write_at: 64,
            hold_at_most: 256,
        };
        let (writer, flush) = gathered(sink.clone(), Box::new(std::io::sink()), limits);
        let line = "x".repeat(63) + "\n";
        let started = Instant::now();
        for _ in 0..40 {
            log(&writer, &line);
        }
        // 2,560 bytes through a hold of 256, each write taking 20 ms: logging had to
        // wait for several of them.
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "logging never waited: {:?}",
            started.elapsed()
        );
        drop(flush);
        assert_eq!(sink.bytes.lock().unwrap().len(), 40 * 64);
    }

    #[test]
    fn lines_after_the_flush_are_written_at_once() {
        let (sink, late) = (Sink::default(), Sink::default());
        let (writer, flush) = gathered(sink.clone(), Box::new(late.clone()), Limits::default());
        log(&writer, "before\n");
        drop(flush);
        assert_eq!(*sink.bytes.lock().unwrap(), b"before\n");
        log(&writer, "after\n");
        assert_eq!(*late.bytes.lock().unwrap(), b"after\n");
        assert_eq!(*sink.bytes.lock().unwrap(), b"before\n");
    }

    #[test]
    fn one_threads_lines_stay_whole_and_in_order_across_the_flush() {
        // One output for the thread's pieces and for the lines written after it.
        let out = Sink::default();
        let (writer, flush) = gathered(out.clone(), Box::new(out.clone()), Limits::default());
        let logger = std::thread::spawn(move || {
            for i in 0..200_000 {
                log(&writer, &format!("{i}\n"));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(flush);
        logger.join().unwrap();
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        let numbers: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(numbers, (0..200_000).collect::<Vec<u32>>());
    }
}
