//! Counters of what the translator's miners did, for logs, tests and monitoring.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

#[derive(Debug, Default)]
pub struct TranslatorStats {
    /// SV1 connections open now.
    pub connections: AtomicU64,
    /// Shares that met the miner's difficulty but not the channel's: answered by the
    /// translator, not sent to the pool (aggregated mode only).
    pub shares_below_channel_target: AtomicU64,
    /// Shares sent to the pool.
    pub shares_forwarded: AtomicU64,
    /// Forwarded shares the pool accepted.
    pub shares_accepted_by_pool: AtomicU64,
    /// Forwarded shares the pool refused, or that no pool was there to judge.
    pub shares_refused_upstream: AtomicU64,
    /// Shares refused here: stale, duplicate, low difficulty, malformed, or while no pool is
    /// connected.
    pub shares_refused_here: AtomicU64,
    /// Of those: shares on a job that is no longer current (a new block, a reconnect).
    pub shares_refused_stale: AtomicU64,
    /// Of those: a share the miner had already submitted.
    pub shares_refused_duplicate: AtomicU64,
    /// Of those: a share above the miner's target (or under `min_share_difficulty`).
    pub shares_refused_low_difficulty: AtomicU64,
    /// Of those: a share on a job the miner already has `max_shares_per_job` shares on.
    pub shares_refused_job_share_limit: AtomicU64,
    /// Of the upstream refusals: shares the pool called stale (its new block crossed them).
    pub shares_refused_upstream_stale: AtomicU64,
    /// Of the upstream refusals: shares no pool judged (the connection, the channel or the
    /// miner went before the verdict).
    pub shares_unjudged_upstream: AtomicU64,
    /// `mining.suggest_difficulty` requests raised to `min_share_difficulty` (or lowered to
    /// the most any miner may claim).
    pub suggested_difficulty_clamped: AtomicU64,
    /// Difficulty changes sent to miners by vardiff.
    pub vardiff_updates: AtomicU64,
    /// 1 while a pool connection is set up, 0 otherwise.
    pub pool_connected: AtomicU64,
    /// Pool connections set up since start.
    pub pool_connections: AtomicU64,
    /// Sum of the authorized miners' hashrate estimates (H/s), as vardiff measures them.
    pub miners_hashrate: AtomicU64,
    /// Shares miners were told were accepted (by the pool, or under the channel's target by
    /// the translator), and their work at the miners' difficulty.
    pub shares_accepted: AtomicU64,
    pub work_accepted: AtomicF64,
    /// Stats reports dropped while stats-proxy was away (the reporter's buffer was full).
    pub stats_reports_dropped: AtomicU64,
    /// SV1 connections refused or closed because a limit was met, by limit.
    pub limit_hits: LimitHits,
    /// Authorized miners by connection index.
    miners: Mutex<HashMap<u32, Arc<MinerCounters>>>,
}

/// Why an SV1 connection was refused or closed because of a limit (`Sv1Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sv1Limit {
    /// `max_connections` connections were open.
    Connections,
    /// `max_connections_per_address` connections from the same address were open.
    ConnectionsPerAddress,
    /// Public mode: workers from one address already mined for `max_keys_per_address` keys.
    KeysPerAddress,
    /// No worker authorized within `authorize_timeout_secs`.
    AuthorizeTimeout,
    /// Nothing received for `idle_timeout_secs`.
    IdleTimeout,
    /// A write did not complete within `write_timeout_secs`.
    WriteTimeout,
}

impl Sv1Limit {
    pub const ALL: [Sv1Limit; 6] = [
        Sv1Limit::Connections,
        Sv1Limit::ConnectionsPerAddress,
        Sv1Limit::KeysPerAddress,
        Sv1Limit::AuthorizeTimeout,
        Sv1Limit::IdleTimeout,
        Sv1Limit::WriteTimeout,
    ];

    /// The label used in logs and metrics: the config key of the limit.
    pub fn as_str(self) -> &'static str {
        match self {
            Sv1Limit::Connections => "max_connections",
            Sv1Limit::ConnectionsPerAddress => "max_connections_per_address",
            Sv1Limit::KeysPerAddress => "max_keys_per_address",
            Sv1Limit::AuthorizeTimeout => "authorize_timeout",
            Sv1Limit::IdleTimeout => "idle_timeout",
            Sv1Limit::WriteTimeout => "write_timeout",
        }
    }
}

/// How often each [`Sv1Limit`] was met since start.
#[derive(Debug, Default)]
pub struct LimitHits([AtomicU64; Sv1Limit::ALL.len()]);

impl LimitHits {
    fn index(limit: Sv1Limit) -> usize {
        Sv1Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0)
    }

    pub fn count(&self, limit: Sv1Limit) {
        self.0[Self::index(limit)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, limit: Sv1Limit) -> u64 {
        self.0[Self::index(limit)].load(Ordering::Relaxed)
    }

    /// Every limit's label and count.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        Sv1Limit::ALL
            .iter()
            .map(|l| (l.as_str(), self.get(*l)))
            .collect()
    }
}

/// An f64 kept in an atomic's bits; only ever added to.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
}

/// One authorized SV1 miner's accepted shares and work, for stats reports.
#[derive(Debug)]
pub struct MinerCounters {
    pub index: u32,
    pub worker: String,
    pub shares: AtomicU64,
    /// Difficulty-1 shares.
    pub work: AtomicF64,
    /// Vardiff's estimate (H/s).
    pub hashrate: AtomicF64,
}

impl MinerCounters {
    pub fn hashrate_now(&self) -> f64 {
        self.hashrate.get()
    }
}

impl TranslatorStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A miner authorized: its counters are listed until [`Self::unregister_miner`].
    pub(crate) fn register_miner(
        &self,
        index: u32,
        worker: &str,
        hashrate: f32,
    ) -> Arc<MinerCounters> {
        let counters = Arc::new(MinerCounters {
            index,
            worker: worker.to_string(),
            shares: AtomicU64::new(0),
            work: AtomicF64::default(),
            hashrate: AtomicF64::default(),
        });
        counters.hashrate.set(hashrate as f64);
        let mut miners = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        miners.insert(index, counters.clone());
        counters
    }

    pub(crate) fn unregister_miner(&self, index: u32) {
        let mut miners = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        miners.remove(&index);
    }

    /// The authorized miners now, by index.
    pub fn miners(&self) -> Vec<Arc<MinerCounters>> {
        let miners = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = miners.values().cloned().collect();
        list.sort_by_key(|m| m.index);
        list
    }

    /// A share a miner was told was accepted, of `work` difficulty-1 shares.
    pub(crate) fn accepted(&self, miner: &MinerCounters, work: f64) {
        miner.shares.fetch_add(1, Ordering::Relaxed);
        miner.work.add(work);
        self.shares_accepted.fetch_add(1, Ordering::Relaxed);
        self.work_accepted.add(work);
    }

    /// A miner's hashrate estimate moved from `old` to `new` (H/s; 0 = not counted).
    pub(crate) fn rehash(&self, old: f32, new: f32) {
        let (old, new) = (old.max(0.0) as u64, new.max(0.0) as u64);
        // Saturating: a sum that wrapped would report an absurd hashrate.
        let _ = self
            .miners_hashrate
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_sub(old).saturating_add(new))
            });
    }
}
