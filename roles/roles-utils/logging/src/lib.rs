//! Logging for every Hashpool binary: human-readable lines on stdout, and with `-f/--log-file`
//! the same lines in a daily-rotated file written by a non-blocking background thread.
//! `RUST_LOG` selects levels (default `info`, with CDK's per-quote and per-request lines at
//! `warn`: at pool rates they would flood the log).

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

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

/// Keeps the file writer alive; drop it last so buffered lines reach the file.
#[must_use = "dropping the guard stops writing the log file"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Installs the global logger: stdout, plus `log_file` (rotated daily: `name.YYYY-MM-DD`) when
/// given.
pub fn init(log_file: Option<&Path>) -> Result<LogGuard, LoggingError> {
    // Colours only on a terminal: under a supervisor or systemd stdout is a log file.
    let stdout_layer = fmt::layer()
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(env_filter());
    let (file_layer, guard) = match log_file {
        Some(path) => {
            let (writer, guard) = file_writer(path)?;
            let layer = fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(env_filter());
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

fn file_writer(
    path: &Path,
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
        .build(&dir)
        .map_err(|e| LoggingError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(tracing_appender::non_blocking(appender))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_a_daily_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/role.log");
        let guard = init(Some(&path)).unwrap();
        tracing::info!("hello from the logging test");
        drop(guard);
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let name = entries[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(name.starts_with("role.log."), "{name}");
        let text = std::fs::read_to_string(&entries[0]).unwrap();
        assert!(text.contains("hello from the logging test"), "{text}");
        // A second global logger is refused with a clear error, not a panic.
        assert!(matches!(init(None), Err(LoggingError::AlreadyInstalled(_))));
    }
}
