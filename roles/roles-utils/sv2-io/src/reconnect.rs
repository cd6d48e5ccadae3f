use std::{
    fmt::Display,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Backoff;

/// Set by a session once its link proved healthy: the next reconnect starts over at the
/// shortest delay.
#[derive(Debug, Clone, Default)]
pub struct Healthy(Arc<AtomicBool>);

impl Healthy {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_marked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The one reconnect policy: endpoints are tried in order of preference; after a full round
/// without a healthy session it waits a jittered back-off; a session that proved healthy sends
/// the next attempt back to the preferred endpoint with the back-off reset.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    endpoints: usize,
    attempt: usize,
}

impl Reconnect {
    pub fn new(backoff: Backoff, endpoints: usize) -> Self {
        Self {
            backoff,
            endpoints: endpoints.max(1),
            attempt: 0,
        }
    }

    /// Which endpoint to try now (an index into the caller's list).
    pub fn endpoint(&self) -> usize {
        self.attempt % self.endpoints
    }

    /// A session ended: how long to wait before the next attempt.
    pub fn after_loss(&mut self, healthy: bool) -> Duration {
        if healthy {
            self.backoff.reset();
            self.attempt = 0;
            return self.backoff.next_jittered();
        }
        self.attempt += 1;
        if self.attempt.is_multiple_of(self.endpoints) {
            self.backoff.next_jittered()
        } else {
            Duration::ZERO
        }
    }
}

/// Runs `session` until it ends without error or `shutdown`; after each error, waits a
/// jittered back-off (reset once a session marked itself healthy) and runs it again. `peer`
/// names the link in logs.
pub async fn keep_connected<F, Fut, E>(
    peer: &str,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut session: F,
) where
    F: FnMut(Healthy) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut reconnect = Reconnect::new(backoff, 1);
    loop {
        let healthy = Healthy::default();
        let result = tokio::select! {
            r = session(healthy.clone()) => r,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(()) => return,
            Err(e) => warn!(peer, "link down: {e}"),
        }
        let delay = reconnect.after_loss(healthy.is_marked());
        debug!(peer, ?delay, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn endpoints_in_order_with_back_off_after_each_round() {
        let ms = Duration::from_millis;
        let mut r = Reconnect::new(Backoff::new(ms(100), ms(400)), 3);
        let mut tried = vec![r.endpoint()];
        let mut waited = Vec::new();
        for _ in 0..6 {
            waited.push(r.after_loss(false) > Duration::ZERO);
            tried.push(r.endpoint());
        }
        assert_eq!(tried, vec![0, 1, 2, 0, 1, 2, 0]);
        // Straight on to the next pool; a wait only after a full round.
        assert_eq!(waited, vec![false, false, true, false, false, true]);
        // A healthy session on the second pool: back to the first, back-off reset.
        r.after_loss(false);
        assert_eq!(r.endpoint(), 1);
        let delay = r.after_loss(true);
        assert_eq!(r.endpoint(), 0);
        assert!(delay <= ms(100) && delay > ms(50), "{delay:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_after_errors_and_stops_on_success() {
        let attempts = AtomicUsize::new(0);
        let shutdown = CancellationToken::new();
        keep_connected(
            "test",
            Backoff::new(Duration::from_millis(10), Duration::from_millis(40)),
            &shutdown,
            |_| async {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err("down"),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_a_session_and_the_wait() {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let attempts = AtomicUsize::new(0);
        keep_connected(
            "test",
            Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
            &shutdown,
            |_| {
                attempts.fetch_add(1, Ordering::SeqCst);
                stop.cancel();
                std::future::pending::<Result<(), &str>>()
            },
        )
        .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
