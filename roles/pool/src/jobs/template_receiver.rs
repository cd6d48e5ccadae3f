//! Client of the template provider (Template Distribution over Noise). Feeds the
//! [`JobSource`], forwards block solutions, and when the provider goes away keeps retrying with
//! back-off while miners stay connected on their current jobs.

use std::{sync::Arc, time::Duration};

use common_messages_sv2::Protocol;
use hashpool_sv2_io::{decode_frame, keep_connected, Backoff, ConnectionError, Dial, Healthy};
use parsers_sv2::{AnyMessageOwned, TemplateDistributionOwned};
use stratum_apps::coinbase_output_constraints::coinbase_output_constraints_message;
use template_distribution_sv2::SubmitSolutionOwned;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::JobSource;
use crate::{config::TemplateProviderSettings, counters::PoolStats};

/// Runs until `shutdown`: connect, set up, receive templates; on any failure wait and retry.
pub async fn run(
    settings: TemplateProviderSettings,
    jobs: Arc<JobSource>,
    solutions: mpsc::Receiver<SubmitSolutionOwned>,
    stats: Arc<PoolStats>,
    shutdown: CancellationToken,
) {
    let backoff = Backoff::new(
        Duration::from_millis(settings.reconnect_initial_ms),
        Duration::from_millis(settings.reconnect_max_ms),
    );
    // One session at a time reads the solutions.
    let solutions = &Mutex::new(solutions);
    let (settings, jobs, stats) = (&settings, &jobs, &stats);
    let peer = format!("template provider {}", settings.address);
    keep_connected(&peer, backoff, &shutdown, |healthy| async move {
        let mut solutions = solutions.lock().await;
        let result = session(settings, jobs, &mut solutions, stats, healthy).await;
        stats.set_provider_connected(false);
        jobs.on_provider_lost();
        // Solutions name templates of the lost session: a new session cannot connect them.
        while let Ok(s) = solutions.try_recv() {
            warn!(
                template_id = s.template_id,
                "dropping a block solution: its template provider session ended"
            );
        }
        result
    })
    .await
}

async fn session(
    settings: &TemplateProviderSettings,
    jobs: &JobSource,
    solutions: &mut mpsc::Receiver<SubmitSolutionOwned>,
    stats: &PoolStats,
    healthy: Healthy,
) -> Result<(), ConnectionError> {
    let dial = Dial::new(
        &settings.address,
        settings.authority_public_key,
        Protocol::TemplateDistributionProtocol,
        "pool",
    )
    .capacity(64);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    let constraints = coinbase_output_constraints_message(jobs.reward_outputs_template());
    conn.send(TemplateDistributionOwned::CoinbaseOutputConstraints(
        constraints,
    ))
    .await?;
    info!(address = %settings.address, "connected to the template provider");
    stats.set_provider_connected(true);
    healthy.mark();

    loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                match decode_frame(&mut frame?, &[])?.1 {
                    AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::NewTemplate(t)) => {
                        debug!(template_id = t.template_id, future = t.future_template, "new template");
                        jobs.on_new_template(t);
                    }
                    AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::SetNewPrevHash(p)) => {
                        debug!(template_id = p.template_id, "new prev hash");
                        jobs.on_set_new_prev_hash(p);
                    }
                    other => debug!("ignoring template provider message {other}"),
                }
            }
            solution = solutions.recv() => {
                let Some(solution) = solution else { return Ok(()) };
                info!(template_id = solution.template_id, "submitting block solution");
                conn.send(TemplateDistributionOwned::SubmitSolution(solution)).await?;
            }
        }
    }
}
