//! What every connection of the pool shares.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use channels_sv2::extranonce_manager::ExtranonceAllocator;
use template_distribution_sv2::SubmitSolutionOwned;
use tokio::sync::mpsc;

use crate::{
    accepted_share::ShareSink,
    config::PoolRunConfig,
    downstream::{admission::Admission, channel_set::ChannelSet},
    job_source::JobSource,
    ledger::AccrualLedger,
    stats::PoolStats,
};

/// Bytes of extranonce every coinbase carries: server id (2), channel index, miner's rollable
/// part.
pub const TOTAL_EXTRANONCE_LEN: u8 = 20;
/// Channels one pool instance can have open at once.
pub const MAX_CHANNELS: u32 = 1 << 20;

pub struct PoolContext {
    pub config: PoolRunConfig,
    pub jobs: Arc<JobSource>,
    pub shares: ShareSink,
    pub stats: Arc<PoolStats>,
    pub solutions: mpsc::Sender<SubmitSolutionOwned>,
    pub registry: Registry,
    /// Open miner connections and the limits they met.
    pub admission: Arc<Admission>,
    /// Set when the pool reports to a stats service.
    pub stats_reporter: std::sync::OnceLock<hashpool_stats::StatsReporter>,
    /// Job tokens already used by a `SetCustomMiningJob`, with their expiry: each declared job
    /// is set once.
    pub used_job_tokens: Mutex<std::collections::HashMap<Vec<u8>, u64>>,
    extranonces: Mutex<ExtranonceAllocator>,
    channel_ids: AtomicU32,
    client_ids: AtomicUsize,
}

impl PoolContext {
    pub fn new(
        config: PoolRunConfig,
        jobs: Arc<JobSource>,
        stats: Arc<PoolStats>,
        ledger: AccrualLedger,
        solutions: mpsc::Sender<SubmitSolutionOwned>,
    ) -> Result<Self, String> {
        let allocator = ExtranonceAllocator::new(
            config.pool.server_id.to_be_bytes().to_vec(),
            TOTAL_EXTRANONCE_LEN,
            MAX_CHANNELS,
        )
        .map_err(|e| format!("extranonce space: {e:?}"))?;
        let admission = Arc::new(Admission::new(
            config.limits.max_connections,
            config.limits.max_connections_per_address,
        ));
        Ok(Self {
            shares: ShareSink::new(stats.clone(), ledger),
            config,
            jobs,
            stats,
            solutions,
            registry: Registry::default(),
            admission,
            stats_reporter: std::sync::OnceLock::new(),
            used_job_tokens: Mutex::new(std::collections::HashMap::new()),
            extranonces: Mutex::new(allocator),
            channel_ids: AtomicU32::new(1),
            client_ids: AtomicUsize::new(1),
        })
    }

    pub fn extranonces(&self) -> MutexGuard<'_, ExtranonceAllocator> {
        self.extranonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_channel_id(&self) -> u32 {
        self.channel_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_client_id(&self) -> usize {
        self.client_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Connections by client id, for monitoring.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<HashMap<usize, Arc<Mutex<ChannelSet>>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Arc<Mutex<ChannelSet>>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: usize, set: Arc<Mutex<ChannelSet>>) {
        self.lock().insert(id, set);
    }

    pub fn remove(&self, id: usize) {
        self.lock().remove(&id);
    }

    /// The connections at this moment (each still locked separately when read).
    pub fn connections(&self) -> Vec<Arc<Mutex<ChannelSet>>> {
        self.lock().values().cloned().collect()
    }
}
