//! What the translator knows of one SV1 miner, and the work it is sent when the pool's work (or
//! its difficulty) changes.

use std::sync::Arc;

use bitcoin::Target;
use channels_sv2::vardiff::classic::VardiffState;
use hashpool_shares::ShareChecker;
use hashpool_sv1::{
    notify, prev_hash_to_sv1, set_difficulty, set_extranonce, target_to_difficulty, Notify,
};

use super::harder;
use crate::{
    stats::MinerCounters,
    sv2::{ActiveJob, UpstreamState, UpstreamWork, MINER_EXTRANONCE_BYTES},
};

/// A job as this miner saw it: what its shares are rebuilt from.
#[derive(Debug, Clone)]
pub(super) struct SentJob {
    pub(super) job: ActiveJob,
    pub(super) channel_id: u32,
}

pub(super) struct Miner {
    pub(super) index: u32,
    /// Where it connects from, as per-address bounds count it (an IPv4 address or an IPv6
    /// /64).
    pub(super) source: std::net::IpAddr,
    pub(super) subscribed: bool,
    pub(super) authorized: Option<String>,
    pub(super) version_rolling: bool,
    /// The channel opening the miner's jobs come from.
    pub(super) opening: Option<u64>,
    pub(super) aggregated: bool,
    pub(super) extranonce_prefix: Vec<u8>,
    pub(super) extranonce2_size: usize,
    /// Public mode: extranonce1 is the miner's index alone and extranonce2 has a fixed size,
    /// both told at subscribe; the channel's prefix rides in coinbase1, and the channel's
    /// extranonce bytes beyond the miner's (`pad`, zeros) in coinbase2.
    pub(super) fixed_extranonce: bool,
    pub(super) pad: usize,
    /// Public mode: the key it mines for, and its key's channel slot.
    pub(super) key: Option<(ext_mint_quote::LockingKey, u32)>,
    pub(super) target: Option<[u8; 32]>,
    /// The jobs it may submit to (by SV1 job id), the targets each was sent with, its shares;
    /// its floor is the easiest target it may have (`min_share_difficulty`).
    pub(super) shares: ShareChecker<String, SentJob>,
    /// Vardiff's estimate of the miner's hashrate.
    pub(super) hashrate: f32,
    pub(super) vardiff: VardiffState,
    /// The target vardiff chose (aggregated mode; never harder than the channel's).
    pub(super) vardiff_target: [u8; 32],
    /// Channel-per-miner mode: where the upstream publishes this miner's channel, handed over
    /// at subscribe.
    pub(super) own_channel: Option<UpstreamState>,
    /// The miner sent `mining.extranonce.subscribe`: it follows `mining.set_extranonce`.
    pub(super) extranonce_subscribed: bool,
    /// Its extranonce changed and it cannot be told: the connection is closed so that the miner
    /// reconnects and subscribes anew.
    pub(super) must_reconnect: bool,
    /// Its accepted shares and work, for stats (set at authorize).
    pub(super) counters: Option<Arc<MinerCounters>>,
}

impl Miner {
    /// The easiest target it may have (`min_share_difficulty`), little-endian.
    pub(super) fn floor(&self) -> [u8; 32] {
        self.shares.floor().to_le_bytes()
    }

    pub(super) fn miner_part(&self) -> Vec<u8> {
        if self.aggregated {
            self.index.to_be_bytes().to_vec()
        } else {
            Vec::new()
        }
    }

    pub(super) fn extranonce1(&self) -> Vec<u8> {
        if self.fixed_extranonce {
            return self.miner_part();
        }
        [self.extranonce_prefix.as_slice(), &self.miner_part()].concat()
    }

    /// What the miner's coinbase starts with before extranonce1: the job's coinbase prefix,
    /// and in public mode the channel's extranonce prefix.
    pub(super) fn coinbase1(&self, job: &ActiveJob) -> Vec<u8> {
        if self.fixed_extranonce {
            return [job.coinbase_prefix.as_slice(), &self.extranonce_prefix].concat();
        }
        job.coinbase_prefix.clone()
    }

    /// What follows extranonce2: the channel's unused extranonce bytes (public mode), then the
    /// job's coinbase suffix.
    pub(super) fn coinbase2(&self, job: &ActiveJob) -> Vec<u8> {
        let mut coinbase2 = vec![0; self.pad];
        coinbase2.extend_from_slice(&job.coinbase_suffix);
        coinbase2
    }

    pub(super) fn take_extranonce(&mut self, w: &UpstreamWork) {
        self.aggregated = w.aggregated;
        self.extranonce_prefix = w.extranonce_prefix.clone();
        let miner_bytes = if w.aggregated {
            MINER_EXTRANONCE_BYTES
        } else {
            0
        };
        if self.fixed_extranonce {
            // The channel was opened with room for both (`min_extranonce_size`); a pool that
            // gave less has every share refused.
            self.pad = w
                .extranonce_size
                .saturating_sub(miner_bytes + self.extranonce2_size);
        } else {
            self.extranonce2_size = w.extranonce_size.saturating_sub(miner_bytes);
        }
    }

    /// The miner's difficulty: its vardiff target in aggregated mode (or the channel's when that
    /// is easier, so every share at the miner's difficulty counts), its channel's otherwise;
    /// never easier than the floor, whatever the pool or vardiff say.
    pub(super) fn target_for(&self, w: &UpstreamWork) -> [u8; 32] {
        let target = if w.aggregated
            && Target::from_le_bytes(self.vardiff_target) > Target::from_le_bytes(w.target)
        {
            self.vardiff_target
        } else {
            w.target
        };
        harder(target, self.floor())
    }
}

/// SV1 job ids are unique across channel openings, so a stale job is never mistaken for a new
/// one after the pool reconnects.
pub(super) fn sv1_job_id(opening: u64, job_id: u32) -> String {
    format!("{:x}", (opening << 32) | job_id as u64)
}

/// What a miner is sent when the pool's work (or the miner's difficulty) changes.
pub(super) fn on_work(m: &mut Miner, w: &UpstreamWork) -> Vec<String> {
    let mut out = Vec::new();
    if !m.subscribed || m.authorized.is_none() {
        return out;
    }
    let fresh = m.opening != Some(w.opening);
    if fresh {
        // A new channel (the pool reconnected): earlier jobs are stale, and the extranonce may
        // have changed with it.
        m.opening = Some(w.opening);
        m.shares.clear();
        let before = (m.extranonce1(), m.extranonce2_size);
        m.take_extranonce(w);
        if before != (m.extranonce1(), m.extranonce2_size) {
            if !m.extranonce_subscribed {
                m.must_reconnect = true;
                return out;
            }
            out.push(set_extranonce(&m.extranonce1(), m.extranonce2_size));
        }
    }
    let target = m.target_for(w);
    let retargeted = m.target != Some(target);
    if retargeted {
        m.target = Some(target);
        out.push(set_difficulty(target_to_difficulty(&target)));
    }
    if let Some(job) = &w.job {
        let sv1_id = sv1_job_id(w.opening, job.job_id);
        let already_sent = !fresh && m.shares.newest_id() == Some(&sv1_id);
        if retargeted || !already_sent {
            // A job re-sent only for its new difficulty is not clean: the miner keeps its work,
            // and the job's earlier, easier listing must stay for the shares still in flight.
            let clean = !already_sent && (job.clean || fresh);
            let sent = SentJob {
                job: job.clone(),
                channel_id: w.channel_id,
            };
            m.shares
                .send(sv1_id.clone(), sent, Target::from_le_bytes(target), clean);
            out.push(notify(&Notify {
                job_id: sv1_id,
                prev_hash: prev_hash_to_sv1(&job.prev_hash),
                coinbase1: m.coinbase1(job),
                coinbase2: m.coinbase2(job),
                merkle_branch: job.merkle_path.clone(),
                version: job.version,
                nbits: job.nbits,
                ntime: job.ntime,
                clean_jobs: clean,
            }));
        }
    }
    out
}
