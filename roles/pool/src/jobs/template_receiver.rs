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

use bitcoin::{CompactTarget, Target};
use hashpool_ehash::Work;

use super::JobSource;
use crate::{config::TemplateProviderSettings, counters::PoolStats, ledger::AccrualLedger};

/// The expected hashes of a block at `n_bits`.
pub fn block_work(n_bits: u32) -> Work {
    Work::from_target(&Target::from_compact(CompactTarget::from_consensus(n_bits)))
}

/// Runs until `shutdown`: connect, set up, receive templates; on any failure wait and retry.
pub async fn run(
    settings: TemplateProviderSettings,
    jobs: Arc<JobSource>,
    ledger: AccrualLedger,
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
    let (settings, jobs, stats, ledger) = (&settings, &jobs, &stats, &ledger);
    let peer = format!("template provider {}", settings.address);
    keep_connected(&peer, backoff, &shutdown, |healthy| async move {
        let mut solutions = solutions.lock().await;
        let result = session(settings, jobs, ledger, &mut solutions, stats, healthy).await;
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
    ledger: &AccrualLedger,
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
                        let payouts = offer_payouts(jobs, ledger, &t).await;
                        jobs.on_new_template_paying(t, payouts);
                    }
                    AnyMessageOwned::TemplateDistribution(TemplateDistributionOwned::SetNewPrevHash(p)) => {
                        debug!(template_id = p.template_id, "new prev hash");
                        // The ledger hears the network's work per block (it sizes epochs, and
                        // opens the first) before any miner gets a job on the new tip: its
                        // control queue goes ahead of shares.
                        if ledger.observe_network_work(block_work(p.n_bits)).await.is_err() {
                            warn!("the ledger has stopped: epochs are no longer sized");
                        }
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

/// The withdrawals `template`'s coinbase pays, offered at its height in the ledger (durably)
/// before any miner gets the template. On any trouble it pays none: a payout then waits for a
/// later template, and nothing is paid that the ledger did not record.
async fn offer_payouts(
    jobs: &JobSource,
    ledger: &AccrualLedger,
    template: &template_distribution_sv2::NewTemplateOwned,
) -> Vec<bitcoin::TxOut> {
    let max = jobs.max_payouts();
    if max == 0 {
        return Vec::new();
    }
    let Some(height) = hashpool_shares::chain::bip34_height(template.coinbase_prefix.as_ref())
    else {
        warn!(
            template_id = template.template_id,
            "a template without a BIP34 height pays no withdrawals"
        );
        return Vec::new();
    };
    match ledger
        .offer_payouts(height, template.coinbase_tx_value_remaining, max)
        .await
    {
        Ok(payouts) => {
            if !payouts.is_empty() {
                info!(
                    height,
                    payouts = payouts.len(),
                    sats = payouts.iter().map(|p| p.sats).sum::<u64>(),
                    "template pays withdrawals"
                );
            }
            payouts.iter().map(|p| p.output()).collect()
        }
        Err(e) => {
            warn!("offering withdrawals failed, this template pays none: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod block_work_tests {
    use super::*;

    #[test]
    fn a_blocks_work_follows_its_nbits() {
        assert_eq!(block_work(0x1d00_ffff), hashpool_ehash::DIFFICULTY_1_WORK);
        // Regtest's limit: about two hashes a block.
        assert_eq!(block_work(0x207f_ffff).hashes(), 2);
    }
}
