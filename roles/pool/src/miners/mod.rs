//! Miner connections: Noise accept, SetupConnection, channels, shares, custom jobs. One task
//! per connection owns it ([`connection`]); its channels live behind a lock shared only with
//! the [`Registry`], which observability reads and quote announcements go through.

pub mod admission;
mod channel;
pub mod channel_set;
mod connection;
mod custom;
mod open;
pub mod registry;
mod shares;
mod targets;

use std::sync::{
    atomic::{AtomicU32, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

use channels_sv2::extranonce_manager::ExtranonceAllocator;
use template_distribution_sv2::SubmitSolutionOwned;
use tokio::sync::mpsc;

pub use admission::{Admission, LimitReason};
pub use channel::PoolChannel;
pub use connection::{serve, MinerError, MAX_MINER_FRAME_PAYLOAD};
pub use hashpool_shares::{target_to_u256, u256_to_target};
pub use registry::{Quote, Registry};
pub use shares::ShareSink;
pub use targets::{target_from_difficulty, TargetBounds};

use crate::{config::PoolRunConfig, counters::PoolStats, events::EventSink, jobs::JobSource};

/// Bytes of extranonce every coinbase carries: server id (2), channel index, miner's rollable
/// part.
pub const TOTAL_EXTRANONCE_LEN: u8 = 20;
/// Channels one pool instance can have open at once.
pub const MAX_CHANNELS: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MinersError {
    #[error("extranonce space: {0}")]
    ExtranonceSpace(String),
}

/// What every miner connection shares: the handles the share path needs and the pool-wide
/// allocators of extranonces and ids.
pub struct MinerHandles {
    pub config: Arc<PoolRunConfig>,
    pub jobs: Arc<JobSource>,
    pub shares: ShareSink,
    pub stats: Arc<PoolStats>,
    /// Blocks found go out here (to observability, if the pool reports).
    pub events: EventSink,
    pub solutions: mpsc::Sender<SubmitSolutionOwned>,
    pub registry: Arc<Registry>,
    /// Open miner connections and the limits they met.
    pub admission: Arc<Admission>,
    /// Job tokens already used by a `SetCustomMiningJob`, with their expiry: each declared job
    /// is set once.
    used_job_tokens: Mutex<std::collections::HashMap<Vec<u8>, u64>>,
    extranonces: Mutex<ExtranonceAllocator>,
    channel_ids: AtomicU32,
    client_ids: AtomicUsize,
}

impl MinerHandles {
    pub fn new(
        config: Arc<PoolRunConfig>,
        jobs: Arc<JobSource>,
        shares: ShareSink,
        stats: Arc<PoolStats>,
        events: EventSink,
        solutions: mpsc::Sender<SubmitSolutionOwned>,
    ) -> Result<Self, MinersError> {
        let allocator = ExtranonceAllocator::new(
            config.pool.server_id.to_be_bytes().to_vec(),
            TOTAL_EXTRANONCE_LEN,
            MAX_CHANNELS,
        )
        .map_err(|e| MinersError::ExtranonceSpace(format!("{e:?}")))?;
        let admission = Arc::new(Admission::new(
            config.limits.max_connections,
            config.limits.max_connections_per_address,
        ));
        Ok(Self {
            config,
            jobs,
            shares,
            stats,
            events,
            solutions,
            registry: Arc::new(Registry::default()),
            admission,
            used_job_tokens: Mutex::new(std::collections::HashMap::new()),
            extranonces: Mutex::new(allocator),
            channel_ids: AtomicU32::new(1),
            client_ids: AtomicUsize::new(1),
        })
    }

    fn extranonces(&self) -> MutexGuard<'_, ExtranonceAllocator> {
        self.extranonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn used_job_tokens(&self) -> MutexGuard<'_, std::collections::HashMap<Vec<u8>, u64>> {
        self.used_job_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn next_channel_id(&self) -> u32 {
        self.channel_ids.fetch_add(1, Ordering::Relaxed)
    }

    fn next_client_id(&self) -> usize {
        self.client_ids.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
pub(crate) mod tests;
