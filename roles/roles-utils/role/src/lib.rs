//! The one way every Hashpool binary runs its role: logging (stdout, and a daily file with
//! `-f`, text or JSON: the [`LogArgs`] every role's command line flattens in), configuration
//! and start (the role's own `start`, the same function the end-to-end tests call), then
//! SIGINT/SIGTERM, a clean shutdown, and the role's task joined.

mod signal;

use std::future::Future;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use hashpool_logging::{LogArgs, LogFormat};
pub use signal::shutdown_signal;

/// Runs a role until SIGINT or SIGTERM. `start` loads the role's configuration and starts it
/// (with logging already installed, so its errors are logged too), returning the task that
/// ends once the role has stopped after `shutdown` is cancelled.
pub async fn run<F, Fut, T>(role: &str, log: &LogArgs, start: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<JoinHandle<T>>>,
{
    let _log = hashpool_logging::init(log)?;
    run_until(role, start, shutdown_signal()).await
}

/// [`run`] without logging set-up, stopping when `stop` resolves instead of on a signal.
pub async fn run_until<F, Fut, T>(
    role: &str,
    start: F,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<JoinHandle<T>>>,
{
    let shutdown = CancellationToken::new();
    let task = start(shutdown.clone())
        .await
        .with_context(|| format!("starting the {role}"))?;
    stop.await;
    tracing::info!(role, "shutting down");
    shutdown.cancel();
    task.await.with_context(|| format!("the {role}'s tasks"))?;
    Ok(())
}

/// Seconds since the Unix epoch (0 on a clock set before 1970): the timestamps every role
/// writes into its records and reports.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_role_is_stopped_and_joined() {
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        run_until(
            "test",
            |shutdown| async move {
                Ok(tokio::spawn(async move {
                    shutdown.cancelled().await;
                    let _ = stopped_tx.send(());
                }))
            },
            async {},
        )
        .await
        .unwrap();
        // The role saw the cancellation and its task ended before `run_until` returned.
        stopped_rx.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_start_names_the_role() {
        let err = run_until::<_, _, ()>(
            "mint",
            |_| async { Err(anyhow::anyhow!("config: bad key")) },
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("starting the mint: config: bad key"));
    }
}
