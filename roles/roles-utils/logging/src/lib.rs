//! Logging for every Hashpool binary: lines on stdout (the journal under systemd, the role's log
//! file under `hashpool up`), and with `-f/--log-file` the same lines in a daily-rotated file
//! written by a non-blocking background thread, of which the newest `--log-files` are kept.
//! `--log-format json` writes one JSON object per line instead of text. `RUST_LOG` selects
//! levels (default `info`, with CDK's per-quote and per-request lines at `warn`: at pool rates
//! they would flood the log).
//!
//! Every role's command line takes these flags by flattening [`LogArgs`] into its own.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
};

use tracing::Subscriber;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{
    fmt::{self, MakeWriter},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log file {0}: has no file name")]
    NoFileName(PathBuf),
    #[error("log file {path}: cannot create its directory: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log file {path}: cannot open: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("a global logger is already installed: {0}")]
    AlreadyInstalled(String),
}

/// How many daily files `-f` keeps without `--log-files`: two weeks.
pub const DEFAULT_LOG_FILES: u32 = 14;

/// The format of every log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, the event's fields
    /// and its spans), for log collectors.
    Json,
}

/// The logging flags every role takes (`#[command(flatten)]` into its `Args`).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct LogArgs {
    /// Also log to this file, rotated daily (FILE.YYYY-MM-DD); the newest --log-files files are
    /// kept, older ones deleted.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// How many daily files of --log-file to keep (counting today's).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_LOG_FILES,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    pub log_files: u32,
    /// Format of the log lines, on stdout and in the file.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        env = "HASHPOOL_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

impl Default for LogArgs {
    /// Text on stdout only.
    fn default() -> Self {
        Self {
            log_file: None,
            log_files: DEFAULT_LOG_FILES,
            log_format: LogFormat::Text,
        }
    }
}

impl LogArgs {
    /// Text on stdout and in `log_file` (when given), with the default number of files kept.
    pub fn with_file(log_file: Option<PathBuf>) -> Self {
        Self {
            log_file,
            ..Self::default()
        }
    }
}

/// Keeps the file writer alive; drop it last so buffered lines reach the file.
#[must_use = "dropping the guard stops writing the log file"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Installs the global logger: stdout, plus `args.log_file` (rotated daily: `name.YYYY-MM-DD`,
/// the newest `args.log_files` kept) when given, in `args.log_format`.
pub fn init(args: &LogArgs) -> Result<LogGuard, LoggingError> {
    // Colours only on a terminal: under a supervisor or systemd stdout is a file or the journal.
    let stdout_layer = format_layer(
        args.log_format,
        std::io::stdout,
        std::io::stdout().is_terminal(),
    )
    .with_filter(env_filter());
    let (file_layer, guard) = match &args.log_file {
        Some(path) => {
            let (writer, guard) = file_writer(path, args.log_files)?;
            let layer = format_layer(args.log_format, writer, false).with_filter(env_filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(stdout_layer)
        .with(file_layer)
        .try_init()
        .map_err(|e| LoggingError::AlreadyInstalled(e.to_string()))?;
    Ok(LogGuard { _file: guard })
}

/// The filter without `RUST_LOG`.
pub const DEFAULT_FILTER: &str =
    "info,cdk=warn,cdk_axum=warn,cdk_sql_common=warn,cdk_signatory=warn";

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// One output's lines in `format`, written to `writer`.
fn format_layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => fmt::layer()
            .with_target(true)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        // The event's fields (its message first) at the top level of each object, where log
        // collectors look for them.
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_writer(writer)
            .boxed(),
    }
}

/// The daily-rotated file at `path` (`path.YYYY-MM-DD`), keeping the newest `max_files` files
/// whose names start with `path`'s name: older ones are deleted now and at every rotation.
fn file_writer(
    path: &Path,
    max_files: u32,
) -> Result<(tracing_appender::non_blocking::NonBlocking, WorkerGuard), LoggingError> {
    let name = path
        .file_name()
        .ok_or_else(|| LoggingError::NoFileName(path.to_path_buf()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|source| LoggingError::CreateDir {
        path: path.to_path_buf(),
        source,
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(name.to_string_lossy().into_owned())
        .max_log_files(usize::try_from(max_files.max(1)).unwrap_or(usize::MAX))
        .build(&dir)
        .map_err(|e| LoggingError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(tracing_appender::non_blocking(appender))
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use clap::Parser;

    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_to_a_daily_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/role.log");
        let guard = init(&LogArgs::with_file(Some(path))).unwrap();
        tracing::info!("hello from the logging test");
        drop(guard);
        let names = files_in(&dir.path().join("logs"));
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("role.log."), "{names:?}");
        let text = std::fs::read_to_string(dir.path().join("logs").join(&names[0])).unwrap();
        assert!(text.contains("hello from the logging test"), "{text}");
        // A second global logger is refused with a clear error, not a panic.
        assert!(matches!(
            init(&LogArgs::default()),
            Err(LoggingError::AlreadyInstalled(_))
        ));
    }

    #[test]
    fn only_the_newest_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Five older days of this log (oldest first), and another log in the same directory.
        // tracing-appender orders files by creation time: the pauses keep them apart on file
        // systems with coarse timestamps.
        for day in 1..=5 {
            std::fs::write(dir.path().join(format!("role.log.2020-01-0{day}")), "old\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::fs::write(dir.path().join("other.log.2020-01-01"), "other\n").unwrap();

        let (_writer, guard) = file_writer(&dir.path().join("role.log"), 3).unwrap();
        drop(guard);

        let names = files_in(dir.path());
        let kept: Vec<&String> = names.iter().filter(|n| n.starts_with("role.log")).collect();
        // Today's file and the two newest old ones: three in all.
        assert_eq!(kept.len(), 3, "{names:?}");
        assert!(
            kept.iter().any(|n| n.as_str() == "role.log.2020-01-05"),
            "{names:?}"
        );
        assert!(
            kept.iter().any(|n| n.as_str() == "role.log.2020-01-04"),
            "{names:?}"
        );
        assert!(
            kept.iter().all(|n| !n.starts_with("role.log.2020-01-01")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n == "other.log.2020-01-01"),
            "{names:?}"
        );
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(format: LogFormat) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry().with(format_layer(
            format,
            move || writer.clone(),
            false,
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("channel", id = 7);
            let _entered = span.enter();
            tracing::warn!(shares = 3, "a \"quoted\" message");
        });
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_parse() {
        let text = captured(LogFormat::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["message"], "a \"quoted\" message", "{line}");
        assert_eq!(line["shares"], 3, "{line}");
        assert_eq!(line["target"], module_path!(), "{line}");
        assert_eq!(line["span"]["name"], "channel", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }

    #[test]
    fn text_lines_stay_text() {
        let text = captured(LogFormat::Text);
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("shares=3"), "{text}");
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn the_flags_parse() {
        let cli = Cli::try_parse_from(["role"]).unwrap();
        assert_eq!(cli.log.log_file, None);
        assert_eq!(cli.log.log_files, DEFAULT_LOG_FILES);
        let cli = Cli::try_parse_from([
            "role",
            "-f",
            "x.log",
            "--log-files",
            "3",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(
            cli.log,
            LogArgs {
                log_file: Some(PathBuf::from("x.log")),
                log_files: 3,
                log_format: LogFormat::Json,
            }
        );
        assert!(Cli::try_parse_from(["role", "--log-files", "0"]).is_err());
        assert!(Cli::try_parse_from(["role", "--log-format", "xml"]).is_err());
    }
}
