//! Tracing: one subscriber, JSON or human format. What is logged is decided at the
//! call sites, which never pass phone numbers, IPs, user agents, message text,
//! secrets or key material (handlers use `instrument(skip_all)`).
//!
//! # How lines reach stderr
//! A line is formatted on the thread that logs it and appended to one shared
//! buffer ([`Sink`]); a thread of its own writes the buffer to stderr every
//! [`FLUSH_EVERY`], or at once when [`WAKE_AT`] bytes are waiting. So logging a
//! line costs its formatting, a lock and a copy: no system call and no wake-up
//! of another thread. One log line per request is on the check hot path, and
//! each way of writing it cost throughput (BENCHMARKS.md): written by the
//! request's thread, a `write` per line cost a quarter; handed to a writer
//! thread through a channel per line (`tracing_appender`), the wake-ups and the
//! `write` per line still took a fifth of the server's CPU.
//!
//! No line is ever dropped: when [`MAX_BUFFERED`] bytes are waiting (stderr is
//! slower than the logging, or blocked) the logging thread waits for the writer.
//! Call [`flush`] before the process exits; a `kill -9` loses at most the last
//! [`FLUSH_EVERY`] of lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How long a line waits at most before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes waiting that wake the writer before its time.
pub const WAKE_AT: usize = 256 * 1024;
/// Bytes waiting that make logging threads wait for the writer.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// The writer was asked to write before its time.
    woken: bool,
    closed: bool,
}

/// The shared buffer between the logging threads and the writer thread.
pub struct Sink {
    buffer: Mutex<Buffer>,
    /// Wakes the writer (a full buffer, closing).
    wake_writer: Condvar,
    /// Wakes logging threads waiting for room.
    drained: Condvar,
    wake_at: usize,
    max_buffered: usize,
}

impl Sink {
    fn new(wake_at: usize, max_buffered: usize) -> Sink {
        Sink {
            buffer: Mutex::default(),
            wake_writer: Condvar::new(),
            drained: Condvar::new(),
            wake_at,
            max_buffered,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one formatted line (or any bytes); waits while the buffer is
    /// full. After [`Sink::close`] nothing is kept.
    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        while buffer.bytes.len() >= self.max_buffered && !buffer.closed {
            buffer = self.drained.wait(buffer).unwrap_or_else(|p| p.into_inner());
        }
        if buffer.closed {
            return;
        }
        buffer.bytes.extend_from_slice(bytes);
        if buffer.bytes.len() >= self.wake_at && !buffer.woken {
            buffer.woken = true;
            self.wake_writer.notify_one();
        }
    }

    /// The writer thread: writes what is waiting every `every` (sooner when
    /// woken) until the sink is closed, then writes the rest and returns.
    fn run(&self, out: &mut dyn Write, every: Duration) {
        let mut spare = Vec::new();
        loop {
            let closed = {
                let mut buffer = self.lock();
                if !buffer.closed && !buffer.woken {
                    buffer = self
                        .wake_writer
                        .wait_timeout(buffer, every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                buffer.woken = false;
                std::mem::swap(&mut buffer.bytes, &mut spare);
                buffer.closed
            };
            self.drained.notify_all();
            if !spare.is_empty() {
                // If stderr is gone the lines go with it: logging threads must
                // not wait for ever on a writer that cannot write.
                let _ = out.write_all(&spare);
                let _ = out.flush();
                spare.clear();
                // A burst must not keep its buffer for ever.
                spare.shrink_to(self.wake_at * 2);
            }
            if closed {
                return;
            }
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake_writer.notify_one();
        self.drained.notify_all();
    }
}

/// One logging thread's handle on the [`Sink`] (what the subscriber writes to).
#[derive(Clone)]
pub struct SinkWriter(Arc<Sink>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SinkWriter {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        self.clone()
    }
}

/// The running writer thread, held until [`flush`].
struct Running {
    sink: Arc<Sink>,
    thread: std::thread::JoinHandle<()>,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// Starts a writer thread writing `sink` to `out` every `every`.
fn start(
    out: Box<dyn Write + Send>,
    every: Duration,
    wake_at: usize,
    max_buffered: usize,
) -> std::io::Result<Running> {
    let sink = Arc::new(Sink::new(wake_at, max_buffered));
    let thread = {
        let sink = sink.clone();
        let mut out = out;
        std::thread::Builder::new()
            .name("consentgate-log".into())
            .spawn(move || sink.run(&mut *out, every))?
    };
    Ok(Running { sink, thread })
}

impl Running {
    fn stop(self) {
        self.sink.close();
        let _ = self.thread.join();
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls are
/// ignored), so tests can call it freely.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    if running.is_some() {
        return;
    }
    let Ok(writer_thread) = start(
        Box::new(std::io::stderr()),
        FLUSH_EVERY,
        WAKE_AT,
        MAX_BUFFERED,
    ) else {
        eprintln!("could not start the log writer thread; logging is off");
        return;
    };
    let writer = SinkWriter(writer_thread.sink.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if installed.is_ok() {
        *running = Some(writer_thread);
    } else {
        writer_thread.stop();
    }
}

/// Writes every line logged so far and stops the writer (at exit; later lines
/// are not written).
pub fn flush() {
    let running = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(running) = running {
        running.stop();
    }
}

/// Bytes written through a clonable writer, shared with the test (log output).
#[cfg(test)]
pub(crate) mod captured {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    use super::captured::Captured;

    #[test]
    fn every_line_of_every_thread_is_written_whole_and_in_order_by_the_time_it_stops() {
        let out = Captured::default();
        // A tiny buffer: logging threads keep waiting for the writer.
        let running = start(Box::new(out.clone()), Duration::from_millis(5), 64, 256).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = SinkWriter(running.sink.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        writer
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        running.stop();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000, "no line lost, none doubled");
        for t in 0..4 {
            let own: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(own, expected, "thread {t}'s lines whole and in order");
        }
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_waiting_for_more() {
        let out = Captured::default();
        let running = start(
            Box::new(out.clone()),
            Duration::from_millis(20),
            WAKE_AT,
            MAX_BUFFERED,
        )
        .unwrap();
        SinkWriter(running.sink.clone())
            .write_all(b"one line\n")
            .unwrap();
        let started = Instant::now();
        while out.text().is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            out.text(),
            "one line\n",
            "written while the writer still runs"
        );
        running.stop();
    }

    #[test]
    fn a_full_buffer_wakes_the_writer_before_its_time() {
        let out = Captured::default();
        // The writer's own interval is an hour: only the wake can write.
        let running = start(
            Box::new(out.clone()),
            Duration::from_secs(3_600),
            100,
            10_000,
        )
        .unwrap();
        let mut writer = SinkWriter(running.sink.clone());
        writer.write_all(&[b'x'; 150]).unwrap();
        let started = Instant::now();
        while out.text().is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.text().len(), 150);
        running.stop();
    }
}
