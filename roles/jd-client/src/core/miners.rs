//! The miners: their connections and channels (extranonce indexes, targets set by vardiff) and
//! the work they all mine, sent to each channel as its own job.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
};

use binary_sv2::{B032Owned, B064KOwned, U256Owned};
use bitcoin::Target;
use channels_sv2::Vardiff;
use mining_sv2::{
    NewExtendedMiningJobOwned, NewMiningJobOwned, OpenExtendedMiningChannelSuccessOwned,
    OpenMiningChannelErrorOwned, OpenStandardMiningChannelSuccessOwned, SetNewPrevHashOwned,
    SetTargetOwned,
};
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tracing::{debug, info, warn};

use super::{channel::Channel, Core, Out};
use crate::{
    stats::JdClientStats,
    work::{ShareHeader, Work, INDEX_BYTES},
};

pub(super) struct Miner {
    tx: Out,
    pub(super) channels: HashMap<u32, Channel>,
}

pub(super) struct Miners {
    pub(super) conns: HashMap<u64, Miner>,
    /// What every channel mines now (a job on the pool channel), if anything.
    pub(super) work: Option<Arc<Work>>,
    next_channel_id: u32,
    /// Extranonce indexes of open channels: each channel's part of the pool's extranonce.
    used_indexes: HashSet<u16>,
    next_index: u16,
    /// Job ids are unique across channels and increasing: an id below this one that a channel
    /// does not list was issued and is stale ([`hashpool_shares::Rejection::unknown_job`]).
    pub(super) next_job_id: u32,
}

impl Miners {
    pub(super) fn new() -> Self {
        Self {
            conns: HashMap::new(),
            work: None,
            next_channel_id: 1,
            used_indexes: HashSet::new(),
            next_index: 0,
            next_job_id: 1,
        }
    }

    pub(super) fn connect(&mut self, conn: u64, tx: Out) {
        self.conns.insert(
            conn,
            Miner {
                tx,
                channels: HashMap::new(),
            },
        );
    }

    fn count_channels(&self, stats: &JdClientStats) {
        let n: usize = self.conns.values().map(|m| m.channels.len()).sum();
        stats.channels.store(n as u64, Ordering::Relaxed);
    }

    fn allocate_index(&mut self) -> Option<[u8; INDEX_BYTES]> {
        for _ in 0..=u16::MAX as u32 {
            let i = self.next_index;
            self.next_index = self.next_index.wrapping_add(1);
            if self.used_indexes.insert(i) {
                return Some(i.to_be_bytes());
            }
        }
        None
    }

    fn free_index(&mut self, index: [u8; INDEX_BYTES]) {
        self.used_indexes.remove(&u16::from_be_bytes(index));
    }

    /// A new opening of the pool channel: every channel's jobs and tip are forgotten, and an
    /// extended channel rolling more than `rollable` bytes is closed (its miner reopens).
    pub(super) fn on_new_opening(&mut self, rollable: usize, stats: &JdClientStats) {
        for miner in self.conns.values_mut() {
            let mut closed = Vec::new();
            for (id, ch) in miner.channels.iter_mut() {
                ch.forget_jobs();
                ch.tip = None;
                if ch.extended.is_some_and(|r| r > rollable) {
                    closed.push(*id);
                }
            }
            for id in closed {
                if let Some(ch) = miner.channels.remove(&id) {
                    self.used_indexes.remove(&u16::from_be_bytes(ch.index));
                }
                let _ = miner
                    .tx
                    .try_send(AnyMessageOwned::Mining(MiningOwned::CloseChannel(
                        mining_sv2::CloseChannelOwned {
                            channel_id: id,
                            reason_code: hashpool_sv2_io::str0255("extranonce-size-changed"),
                        },
                    )));
            }
        }
        self.count_channels(stats);
    }

    /// The pool channel is gone: no job sent so far can be mined any more.
    pub(super) fn forget_jobs(&mut self) {
        for miner in self.conns.values_mut() {
            for ch in miner.channels.values_mut() {
                ch.forget_jobs();
            }
        }
    }

    /// Moves each channel's target toward `spm` shares per minute from the shares it sent:
    /// the channels retargeted, with their new targets.
    fn vardiff(&mut self, spm: f32) -> Vec<(u64, u32, Target)> {
        let mut updates = Vec::new();
        for (conn, miner) in self.conns.iter_mut() {
            for (id, ch) in miner.channels.iter_mut() {
                let hashrate = match ch.vardiff.try_vardiff(ch.hashrate, &ch.target(), spm) {
                    Ok(Some(h)) => h,
                    Ok(None) => continue,
                    Err(e) => {
                        debug!(channel_id = id, "vardiff: {e:?}");
                        continue;
                    }
                };
                let Ok(t) = channels_sv2::target::hash_rate_to_target(hashrate as f64, spm as f64)
                else {
                    continue;
                };
                let t = t.min(ch.max_target);
                ch.hashrate = hashrate;
                if t != ch.target() {
                    ch.retarget(t);
                    debug!(channel_id = id, hashrate, "vardiff: new target");
                    updates.push((*conn, *id, t));
                }
            }
        }
        updates
    }
}

impl Core {
    pub(super) fn miner_gone(&mut self, conn: u64) {
        if let Some(m) = self.miners.conns.remove(&conn) {
            for ch in m.channels.values() {
                self.miners.free_index(ch.index);
            }
        }
        self.miners.count_channels(&self.stats);
    }

    /// Moves each miner's target toward `shares_per_minute` from the shares it sent.
    pub(super) fn run_vardiff(&mut self) {
        for (conn, channel_id, t) in self.miners.vardiff(self.config.shares_per_minute) {
            self.reply(
                conn,
                MiningOwned::SetTarget(SetTargetOwned {
                    channel_id,
                    maximum_target: hashpool_shares::target_to_u256(&t),
                }),
            );
        }
    }

    pub(super) fn reply(&mut self, conn: u64, m: MiningOwned) {
        if let Some(miner) = self.miners.conns.get(&conn) {
            if miner.tx.try_send(AnyMessageOwned::Mining(m)).is_err() {
                warn!(conn, "a miner is not reading: dropping it");
                self.miner_gone(conn);
            }
        }
    }

    fn open_error(&mut self, conn: u64, request_id: u32, code: &str) {
        info!(conn, code, "channel refused");
        self.reply(
            conn,
            MiningOwned::OpenMiningChannelError(OpenMiningChannelErrorOwned {
                request_id,
                error_code: hashpool_sv2_io::str0255(code),
            }),
        );
    }

    fn channel_target(&self, hashrate: f32, max_target: &Target) -> Option<Target> {
        let t = channels_sv2::target::hash_rate_to_target(
            hashrate as f64,
            self.config.shares_per_minute as f64,
        )
        .ok()?;
        Some(if t > *max_target { *max_target } else { t })
    }

    pub(super) fn on_miner(&mut self, conn: u64, m: MiningOwned) {
        match m {
            MiningOwned::OpenStandardMiningChannel(o) => self.open(
                conn,
                o.request_id,
                o.nominal_hash_rate,
                hashpool_shares::u256_to_target(&o.max_target),
                None,
            ),
            MiningOwned::OpenExtendedMiningChannel(o) => self.open(
                conn,
                o.request_id,
                o.nominal_hash_rate,
                hashpool_shares::u256_to_target(&o.max_target),
                Some(o.min_extranonce_size as usize),
            ),
            MiningOwned::UpdateChannel(u) => {
                let Some(ch) = self
                    .miners
                    .conns
                    .get(&conn)
                    .and_then(|m| m.channels.get(&u.channel_id))
                else {
                    return;
                };
                let max = hashpool_shares::u256_to_target(&u.maximum_target).min(ch.max_target);
                let Some(t) = self.channel_target(u.nominal_hash_rate, &max) else {
                    return;
                };
                if let Some(ch) = self
                    .miners
                    .conns
                    .get_mut(&conn)
                    .and_then(|m| m.channels.get_mut(&u.channel_id))
                {
                    ch.retarget(t);
                    ch.hashrate = u.nominal_hash_rate;
                }
                self.reply(
                    conn,
                    MiningOwned::SetTarget(SetTargetOwned {
                        channel_id: u.channel_id,
                        maximum_target: hashpool_shares::target_to_u256(&t),
                    }),
                );
            }
            MiningOwned::CloseChannel(c) => {
                if let Some(ch) = self
                    .miners
                    .conns
                    .get_mut(&conn)
                    .and_then(|m| m.channels.remove(&c.channel_id))
                {
                    self.miners.free_index(ch.index);
                }
                self.miners.count_channels(&self.stats);
            }
            MiningOwned::SubmitSharesStandard(s) => self.on_share(
                conn,
                s.channel_id,
                s.sequence_number,
                s.job_id,
                ShareHeader {
                    version: s.version,
                    ntime: s.ntime,
                    nonce: s.nonce,
                },
                None,
            ),
            MiningOwned::SubmitSharesExtended(s) => self.on_share(
                conn,
                s.channel_id,
                s.sequence_number,
                s.job_id,
                ShareHeader {
                    version: s.version,
                    ntime: s.ntime,
                    nonce: s.nonce,
                },
                Some(s.extranonce.as_ref().to_vec()),
            ),
            other => debug!(conn, "ignoring miner message {other}"),
        }
    }

    fn open(
        &mut self,
        conn: u64,
        request_id: u32,
        hashrate: f32,
        max_target: Target,
        min_extranonce: Option<usize>,
    ) {
        let Some(pool) = &self.pool.link else {
            return self.open_error(conn, request_id, "no-upstream");
        };
        let (prefix, size) = (pool.prefix.clone(), pool.size);
        let rollable = size - INDEX_BYTES;
        if min_extranonce.is_some_and(|m| m > rollable) {
            return self.open_error(conn, request_id, "min-extranonce-size-too-large");
        }
        if !(hashrate.is_finite() && hashrate > 0.0) {
            return self.open_error(conn, request_id, "invalid-nominal-hashrate");
        }
        if max_target == Target::ZERO {
            return self.open_error(conn, request_id, "max-target-out-of-range");
        }
        let Some(t) = self.channel_target(hashrate, &max_target) else {
            return self.open_error(conn, request_id, "invalid-nominal-hashrate");
        };
        if !self.miners.conns.contains_key(&conn) {
            return;
        }
        let Some(index) = self.miners.allocate_index() else {
            return self.open_error(conn, request_id, "too-many-channels");
        };
        let channel_id = self.miners.next_channel_id;
        self.miners.next_channel_id = self.miners.next_channel_id.wrapping_add(1).max(1);
        let success = match min_extranonce {
            Some(_) => B032Owned::new(index.to_vec()).map(|p| {
                MiningOwned::OpenExtendedMiningChannelSuccess(
                    OpenExtendedMiningChannelSuccessOwned {
                        request_id,
                        channel_id,
                        target: hashpool_shares::target_to_u256(&t),
                        extranonce_size: rollable as u16,
                        extranonce_prefix: p,
                        group_channel_id: 0,
                    },
                )
            }),
            None => B032Owned::new(standard_extranonce(&prefix, &index, size)).map(|p| {
                MiningOwned::OpenStandardMiningChannelSuccess(
                    OpenStandardMiningChannelSuccessOwned {
                        request_id,
                        channel_id,
                        target: hashpool_shares::target_to_u256(&t),
                        extranonce_prefix: p,
                        group_channel_id: 0,
                    },
                )
            }),
        };
        let Ok(success) = success else {
            self.miners.free_index(index);
            return self.open_error(conn, request_id, "internal-error");
        };
        if let Some(miner) = self.miners.conns.get_mut(&conn) {
            miner.channels.insert(
                channel_id,
                Channel::new(
                    index,
                    min_extranonce.map(|_| rollable),
                    t,
                    max_target,
                    hashrate,
                ),
            );
        }
        self.miners.count_channels(&self.stats);
        info!(
            conn,
            channel_id,
            extended = min_extranonce.is_some(),
            "miner channel open"
        );
        self.reply(conn, success);
        if let Some(work) = self.miners.work.clone() {
            self.send_job(conn, channel_id, &work);
        }
    }

    /// Makes `work` every channel's job.
    pub(super) fn set_work(&mut self, work: Work) {
        self.stats
            .mining_declared
            .store(work.declared.is_some(), Ordering::Relaxed);
        let work = Arc::new(work);
        self.miners.work = Some(work.clone());
        let conns: Vec<u64> = self.miners.conns.keys().copied().collect();
        for conn in conns {
            let ids: Vec<u32> = self.miners.conns[&conn].channels.keys().copied().collect();
            for id in ids {
                self.send_job(conn, id, &work);
            }
        }
    }

    /// A channel's next job on `work` (after a new tip: a future job and SetNewPrevHash).
    fn send_job(&mut self, conn: u64, channel_id: u32, work: &Arc<Work>) {
        let job_id = self.miners.next_job_id;
        self.miners.next_job_id = self.miners.next_job_id.wrapping_add(1).max(1);
        let Some(miner) = self.miners.conns.get_mut(&conn) else {
            return;
        };
        let Some(ch) = miner.channels.get_mut(&channel_id) else {
            return;
        };
        let new_tip = ch.is_new_tip(work);
        // Listed at the channel's target; a new tip drops the channel's other jobs and their
        // shares (even if this job cannot be built, the old tip's jobs are stale).
        ch.sent(job_id, work.clone());
        let min_ntime = if new_tip { None } else { Some(work.min_ntime) };
        let job = match ch.extended {
            Some(rollable) => {
                // The pool channel's prefix goes into the coinbase prefix, and the bytes after
                // the miner's rollable part (if the pool channel has more) into the suffix:
                // the miner's own extranonce prefix is just its index.
                let Some(pad) = work.pool_size.checked_sub(INDEX_BYTES + rollable) else {
                    return;
                };
                let prefix = [&work.coinbase_prefix[..], &work.pool_prefix[..]].concat();
                let suffix = [&vec![0u8; pad][..], &work.coinbase_suffix[..]].concat();
                let (Ok(p), Ok(s), Ok(path)) = (
                    B064KOwned::new(prefix),
                    B064KOwned::new(suffix),
                    binary_sv2::Seq0255Owned::new(
                        work.merkle_path
                            .iter()
                            .map(|h| U256Owned::from(*h))
                            .collect(),
                    ),
                ) else {
                    return;
                };
                MiningOwned::NewExtendedMiningJob(NewExtendedMiningJobOwned {
                    channel_id,
                    job_id,
                    min_ntime: binary_sv2::Sv2OptionOwned::new(min_ntime),
                    version: work.version,
                    version_rolling_allowed: work.version_rolling_allowed,
                    merkle_path: path,
                    coinbase_tx_prefix: p,
                    coinbase_tx_suffix: s,
                })
            }
            None => {
                let extranonce = work.extranonce(&ch.index, &[]);
                MiningOwned::NewMiningJob(NewMiningJobOwned {
                    channel_id,
                    job_id,
                    min_ntime: binary_sv2::Sv2OptionOwned::new(min_ntime),
                    version: work.version,
                    merkle_root: U256Owned::from(work.merkle_root(&extranonce)),
                })
            }
        };
        let mut ok = miner.tx.try_send(AnyMessageOwned::Mining(job)).is_ok();
        if new_tip {
            ok &= miner
                .tx
                .try_send(AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(
                    SetNewPrevHashOwned {
                        channel_id,
                        job_id,
                        prev_hash: U256Owned::from(work.prev_hash),
                        min_ntime: work.min_ntime,
                        nbits: work.nbits,
                    },
                )))
                .is_ok();
        }
        if !ok {
            warn!(conn, "a miner is not reading its jobs: dropping it");
            self.miner_gone(conn);
        }
    }
}

/// A standard channel's fixed extranonce: the pool channel's prefix, the channel's index,
/// zeros for the rest.
fn standard_extranonce(prefix: &[u8], index: &[u8; INDEX_BYTES], size: usize) -> Vec<u8> {
    let mut e = [prefix, &index[..]].concat();
    e.resize(prefix.len() + size, 0);
    e
}
