//! The pool: the extended channel this jd-client opened there (its opening, extranonce, target,
//! tip and jobs), the custom jobs set on it for accepted declarations, and the work miners get
//! from it: the declared job once the pool took it, else the pool's own job.

use std::{collections::HashMap, sync::atomic::Ordering};

use binary_sv2::B0255Owned;
use bitcoin::Target;
use channels_sv2::chain_tip::ChainTip;
use mining_sv2::{
    NewExtendedMiningJobOwned, OpenExtendedMiningChannelSuccessOwned, SetCustomMiningJobOwned,
    SetNewPrevHashOwned,
};
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tracing::{debug, info, warn};

use super::{jd_server::Declaration, Core, Out};
use crate::work::{Declared, Work, INDEX_BYTES};

#[derive(Default)]
pub(super) struct Pool {
    pub(super) link: Option<PoolLink>,
    /// Channel openings so far: a job, a declaration or a share belongs to one.
    openings: u64,
    /// Custom jobs sent, by request id, until the pool answers.
    custom: HashMap<u32, (Declaration, SetCustomMiningJobOwned)>,
}

pub(super) struct PoolLink {
    pub(super) tx: Out,
    pub(super) opening: u64,
    pub(super) channel_id: u32,
    pub(super) prefix: Vec<u8>,
    pub(super) size: usize,
    target: Target,
    pub(super) tip: Option<SetNewPrevHashOwned>,
    future_jobs: HashMap<u32, NewExtendedMiningJobOwned>,
    active_job: Option<NewExtendedMiningJobOwned>,
    /// Sequence number of the last share forwarded.
    pub(super) sequence: u32,
}

impl Core {
    pub(super) fn on_pool_up(&mut self, tx: Out, channel: OpenExtendedMiningChannelSuccessOwned) {
        self.pool.openings += 1;
        let prefix = channel.extranonce_prefix.as_ref().to_vec();
        let size = channel.extranonce_size as usize;
        self.pool.link = Some(PoolLink {
            tx,
            opening: self.pool.openings,
            channel_id: channel.channel_id,
            prefix,
            size,
            target: hashpool_shares::u256_to_target(&channel.target),
            tip: None,
            future_jobs: HashMap::new(),
            active_job: None,
            sequence: 0,
        });
        self.stats.pool_connected.store(true, Ordering::Relaxed);
        self.miners.work = None;
        self.pool.custom.clear();
        // Miners keep their channels: the pool channel's prefix is part of the coinbase prefix
        // their jobs carry, so a new one changes nothing for them. Only an extended channel
        // whose rollable part no longer fits is closed (its miner reopens).
        self.miners
            .on_new_opening(size.saturating_sub(INDEX_BYTES), &self.stats);
    }

    pub(super) fn on_pool_lost(&mut self) {
        self.pool.link = None;
        self.miners.work = None;
        self.pool.custom.clear();
        self.stats.pool_connected.store(false, Ordering::Relaxed);
        self.stats.mining_declared.store(false, Ordering::Relaxed);
        self.miners.forget_jobs();
    }

    pub(super) fn on_pool(&mut self, m: MiningOwned) {
        let Some(pool) = &mut self.pool.link else {
            return;
        };
        match m {
            MiningOwned::SetNewPrevHash(p) if p.channel_id == pool.channel_id => {
                pool.active_job = pool.future_jobs.remove(&p.job_id);
                pool.future_jobs.clear();
                pool.tip = Some(p);
                // Until the new tip's job is declared, miners mine the pool's.
                self.fall_back();
                self.try_declare();
            }
            MiningOwned::NewExtendedMiningJob(j) if j.channel_id == pool.channel_id => {
                if j.min_ntime.clone().into_inner().is_some() {
                    pool.active_job = Some(j);
                    let declared = self
                        .miners
                        .work
                        .as_ref()
                        .is_some_and(|w| w.declared.is_some());
                    if !declared {
                        self.fall_back();
                    }
                } else {
                    pool.future_jobs.insert(j.job_id, j);
                }
            }
            MiningOwned::SetTarget(t) if t.channel_id == pool.channel_id => {
                pool.target = hashpool_shares::u256_to_target(&t.maximum_target);
            }
            MiningOwned::SetExtranoncePrefix(p) if p.channel_id == pool.channel_id => {
                // Rare: handled as a new opening of the same channel.
                let channel = OpenExtendedMiningChannelSuccessOwned {
                    request_id: 0,
                    channel_id: pool.channel_id,
                    target: hashpool_shares::target_to_u256(&pool.target),
                    extranonce_size: pool.size as u16,
                    extranonce_prefix: p.extranonce_prefix,
                    group_channel_id: 0,
                };
                let tx = pool.tx.clone();
                self.on_pool_up(tx, channel);
            }
            MiningOwned::SetCustomMiningJobSuccess(s) => {
                let Some((d, job)) = self.pool.custom.remove(&s.request_id) else {
                    return;
                };
                self.on_custom_job_set(d, job, s.job_id);
            }
            MiningOwned::SetCustomMiningJobError(e) => {
                self.pool.custom.remove(&e.request_id);
                self.stats
                    .custom_jobs_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(code = %hashpool_sv2_io::text(&e.error_code), "the pool refused a declared job: mining pool jobs");
                self.fall_back();
            }
            MiningOwned::SubmitSharesSuccess(s) => {
                self.stats
                    .pool_shares_accepted
                    .fetch_add(s.new_submits_accepted_count as u64, Ordering::Relaxed);
            }
            MiningOwned::SubmitSharesError(e) => {
                self.stats
                    .pool_shares_rejected
                    .fetch_add(1, Ordering::Relaxed);
                debug!(code = %hashpool_sv2_io::text(&e.error_code), "the pool refused a share");
            }
            MiningOwned::CloseChannel(c) if c.channel_id == pool.channel_id => {
                warn!(reason = %hashpool_sv2_io::text(&c.reason_code), "the pool closed the channel: reconnecting");
                // Dropping the link's sender ends its session; it reconnects.
                self.on_pool_lost();
            }
            other => debug!("ignoring pool message {other}"),
        }
    }

    /// Sets an accepted declaration on the pool channel as a custom job.
    pub(super) fn set_custom_job(&mut self, d: Declaration, job_token: Vec<u8>) {
        let request_id = self.request_id();
        let Some(pool) = &self.pool.link else { return };
        let Some(tip) = &pool.tip else { return };
        if pool.opening != d.opening || tip.prev_hash.to_array() != d.prev_hash {
            debug!("a declared job outlived its tip or channel: not set");
            return;
        }
        let Ok(token) = B0255Owned::new(job_token) else {
            return;
        };
        let chain_tip = ChainTip::new(tip.prev_hash.clone(), tip.nbits, tip.min_ntime);
        let job = match self.factory.new_custom_job(
            pool.channel_id,
            request_id,
            token,
            chain_tip,
            d.template.clone(),
            d.outputs.clone(),
            d.full_extranonce_size,
        ) {
            Ok(j) => j,
            Err(e) => {
                warn!("cannot build the custom job: {e:?}");
                return;
            }
        };
        if pool
            .tx
            .try_send(AnyMessageOwned::Mining(MiningOwned::SetCustomMiningJob(
                job.clone(),
            )))
            .is_ok()
        {
            self.pool.custom.insert(request_id, (d, job));
        }
    }

    fn on_custom_job_set(&mut self, d: Declaration, job: SetCustomMiningJobOwned, job_id: u32) {
        let Some(pool) = &self.pool.link else { return };
        if pool.opening != d.opening {
            return;
        }
        let txids = d.txs.iter().map(|t| t.compute_txid()).collect();
        let built = self.factory.new_extended_job_from_custom_job(
            job.clone(),
            pool.prefix.clone(),
            d.full_extranonce_size,
        );
        let ext = match built {
            Ok(e) => e,
            Err(e) => {
                warn!("cannot rebuild the custom job: {e:?}");
                return;
            }
        };
        let message = ext.get_job_message();
        let work = Work {
            upstream_job_id: job_id,
            opening: pool.opening,
            version: job.version,
            version_rolling_allowed: true,
            coinbase_prefix: message.coinbase_tx_prefix.as_ref().to_vec(),
            coinbase_suffix: message.coinbase_tx_suffix.as_ref().to_vec(),
            pool_prefix: pool.prefix.clone(),
            pool_size: pool.size,
            merkle_path: job
                .merkle_path
                .clone()
                .into_inner()
                .iter()
                .map(|h| h.to_array())
                .collect(),
            prev_hash: job.prev_hash.to_array(),
            nbits: job.nbits,
            min_ntime: job.min_ntime,
            upstream_target: pool.target,
            declared: Some(Declared {
                template_id: d.template.template_id,
                coinbase_prefix_bip141: d.coinbase_prefix_bip141,
                coinbase_suffix_bip141: d.coinbase_suffix_bip141,
                txids,
            }),
        };
        self.stats.custom_jobs_set.fetch_add(1, Ordering::Relaxed);
        info!(
            job_id,
            template_id = d.template.template_id,
            txs = d.txs.len(),
            "mining a declared job"
        );
        self.set_work(work);
    }

    /// Miners mine the pool's current job (if the work is not that already).
    pub(super) fn fall_back(&mut self) {
        let Some(pool) = &self.pool.link else { return };
        let (Some(tip), Some(job)) = (&pool.tip, &pool.active_job) else {
            return;
        };
        if self.miners.work.as_ref().is_some_and(|w| {
            w.declared.is_none() && w.upstream_job_id == job.job_id && w.opening == pool.opening
        }) {
            return;
        }
        let work = Work {
            upstream_job_id: job.job_id,
            opening: pool.opening,
            version: job.version,
            version_rolling_allowed: job.version_rolling_allowed,
            coinbase_prefix: job.coinbase_tx_prefix.as_ref().to_vec(),
            coinbase_suffix: job.coinbase_tx_suffix.as_ref().to_vec(),
            pool_prefix: pool.prefix.clone(),
            pool_size: pool.size,
            merkle_path: job
                .merkle_path
                .clone()
                .into_inner()
                .iter()
                .map(|h| h.to_array())
                .collect(),
            prev_hash: tip.prev_hash.to_array(),
            nbits: tip.nbits,
            min_ntime: job.min_ntime.clone().into_inner().unwrap_or(tip.min_ntime),
            upstream_target: pool.target,
            declared: None,
        };
        debug!(job_id = job.job_id, "mining the pool's job");
        self.set_work(work);
    }
}
