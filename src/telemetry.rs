//! Tracing: one subscriber, JSON or human format. What is logged is decided at the
//! call sites, which never pass phone numbers, IPs, user agents, message text,
//! secrets or key material (handlers use `instrument(skip_all)`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The log writer's worker, held until [`flush`].
static WORKER: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Installs the global subscriber. Safe to call more than once (later calls are
/// ignored), so tests can call it freely.
///
/// Lines are formatted on the thread that logs and written to stderr by a
/// thread of their own (`tracing_appender::non_blocking`), through a buffer
/// flushed whenever no line is waiting: one `write` per burst of lines instead
/// of one per line. One log line per request, written by the request's thread,
/// cost the check hot path over a quarter of its throughput (BENCHMARKS.md).
/// The writer never drops a line (`lossy(false)`: a logging thread waits when
/// 128,000 lines are queued). Call [`flush`] before the process exits.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("consentgate-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
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
        *WORKER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }
}

/// Writes every line logged so far and stops the writer (at exit; later lines
/// are not written).
pub fn flush() {
    drop(WORKER.lock().unwrap_or_else(|p| p.into_inner()).take());
}
