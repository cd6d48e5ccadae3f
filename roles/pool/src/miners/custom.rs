//! `SetCustomMiningJob`: a job the miner chose, set on its extended channel only when the
//! jd-server accepted it. The job token in the message is checked against the job it describes
//! with the jd-server's public key alone (hashpool-job-declaration); each token is used once.
//! Shares on the job then go through the same validation and ehash accrual as pool jobs.

use bitcoin::{consensus, TxOut};
use channels_sv2::server::error::ExtendedChannelError;
use hashpool_job_declaration::{JobCommitment, JobToken};
use mining_sv2::{
    SetCustomMiningJobErrorOwned, SetCustomMiningJobOwned, SetCustomMiningJobSuccess,
};
use parsers_sv2::MiningOwned;
use tracing::{info, warn};

use super::channel_set::{ChannelKind, ChannelSet};
use super::MinerHandles;

/// SetCustomMiningJob.Error codes (the spec's, plus the field named for a bad value).
const INVALID_CHANNEL: &str = "invalid-channel-id";
const INVALID_TOKEN: &str = "invalid-mining-job-token";
/// How far ahead of the pool's clock a custom job's min_ntime may be.
const MAX_MIN_NTIME_AHEAD_SECS: u64 = 60;

fn refuse(m: &SetCustomMiningJobOwned, code: &str) -> Vec<MiningOwned> {
    vec![MiningOwned::SetCustomMiningJobError(
        SetCustomMiningJobErrorOwned {
            channel_id: m.channel_id,
            request_id: m.request_id,
            error_code: hashpool_sv2_io::str0255(code),
        },
    )]
}

pub fn set_custom_job(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    m: SetCustomMiningJobOwned,
) -> Vec<MiningOwned> {
    let channel_id = m.channel_id;
    let Some(entry) = set.entry_mut(channel_id) else {
        return refuse(&m, INVALID_CHANNEL);
    };
    let ChannelKind::Extended(channel) = &mut entry.kind else {
        // Custom jobs need the miner's own coinbase: extended channels only.
        return refuse(&m, INVALID_CHANNEL);
    };
    let Some(jd_key) = ctx.config.jd_server_public_key else {
        info!(channel_id, "custom job refused: this pool has no jd-server");
        return refuse(&m, INVALID_TOKEN);
    };
    let Ok(outputs) = consensus::deserialize::<Vec<TxOut>>(m.coinbase_tx_outputs.as_ref()) else {
        return refuse(&m, "invalid-job-param-value-coinbase-tx-outputs");
    };
    let merkle_path: Vec<[u8; 32]> = m.merkle_path.iter().map(|h| h.to_array()).collect();
    // The channel's whole extranonce ends the scriptSig: the jd-server accepted the job for an
    // extranonce of this length, or the token does not verify.
    let commitment = JobCommitment::new(
        m.version,
        m.coinbase_tx_version,
        m.coinbase_prefix.as_ref(),
        channel.get_full_extranonce_size(),
        m.coinbase_tx_input_n_sequence,
        &outputs,
        m.coinbase_tx_locktime,
        &merkle_path,
    );
    let now = hashpool_role::unix_now();
    let token = m.token.as_ref().to_vec();
    let verified = match JobToken::verify(&token, &jd_key.into_bytes(), &commitment, now) {
        Ok(v) => v,
        Err(e) => {
            info!(channel_id, "custom job refused: {e}");
            return refuse(&m, INVALID_TOKEN);
        }
    };
    // Work counts only on the pool's chain tip: ehash pays for work that can make the pool's
    // next block.
    let snapshot = ctx.jobs.snapshot();
    let on_tip = snapshot
        .current
        .as_ref()
        .is_some_and(|(_, tip)| tip.prev_hash == m.prev_hash && tip.n_bits == m.nbits);
    if !on_tip {
        info!(
            channel_id,
            "custom job refused: not on the pool's chain tip"
        );
        return refuse(&m, "invalid-job-param-value-prev-hash");
    }
    // Shares may carry times from min_ntime up to two hours later: a min_ntime before the
    // tip's, or ahead of the clock, would be paid for blocks the network refuses.
    let tip_time = snapshot
        .current
        .as_ref()
        .map(|(_, tip)| tip.header_timestamp)
        .unwrap_or(0);
    if m.min_ntime < tip_time || u64::from(m.min_ntime) > now + MAX_MIN_NTIME_AHEAD_SECS {
        info!(
            channel_id,
            min_ntime = m.min_ntime,
            tip_time,
            "custom job refused: min_ntime out of range"
        );
        return refuse(&m, "invalid-job-param-value-min-ntime");
    }
    let mut used = ctx.used_job_tokens();
    used.retain(|_, expires| *expires >= now);
    if used.contains_key(&token) {
        info!(
            channel_id,
            "custom job refused: its job token was already used"
        );
        return refuse(&m, INVALID_TOKEN);
    }
    let request_id = m.request_id;
    let network = super::targets::network_target(m.nbits);
    match channel.on_set_custom_mining_job(m) {
        Ok(job_id) => {
            // Only a job actually set uses its token; remembered until it would expire anyway.
            used.insert(token, verified.expires_at);
            let target = super::targets::JobTarget {
                job: *channel.get_target(),
                network: Some(network),
            };
            entry.job_targets.insert(job_id, target);
            entry.prune_job_targets();
            info!(channel_id, job_id, "custom job set");
            vec![MiningOwned::SetCustomMiningJobSuccess(
                SetCustomMiningJobSuccess {
                    channel_id,
                    request_id,
                    job_id,
                },
            )]
        }
        Err(e) => {
            warn!(channel_id, "custom job refused by the channel: {e:?}");
            let code = match e {
                ExtendedChannelError::JobMinNtimeBelowChainTip => {
                    "invalid-job-param-value-min-ntime"
                }
                ExtendedChannelError::ScriptSigSizeTooLarge => {
                    "invalid-job-param-value-coinbase-prefix"
                }
                _ => "invalid-job-param-value-coinbase-tx-outputs",
            };
            vec![MiningOwned::SetCustomMiningJobError(
                SetCustomMiningJobErrorOwned {
                    channel_id,
                    request_id,
                    error_code: hashpool_sv2_io::str0255(code),
                },
            )]
        }
    }
}
