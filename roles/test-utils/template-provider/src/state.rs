//! Everything the provider's connections share: the chain, the mempool, the templates sent and
//! counters for the status API. Connections learn of changes through [`ChainEvent`]s.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use bitcoin::{block::Header, consensus, Block, BlockHash, CompactTarget, Transaction};
use template_distribution_sv2::SubmitSolutionOwned;
use tokio::sync::broadcast;

use crate::{
    chain::{rules, Chain, ChainError},
    mempool::Mempool,
    template::{self, Template},
};

/// Templates kept for solutions and transaction-data requests that arrive late.
const TEMPLATES_KEPT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEvent {
    /// A block was connected: every connection gets a future template and SetNewPrevHash.
    NewTip { height: u32 },
    /// The mempool changed: every connection gets a template for the current tip.
    MempoolChanged,
}

#[derive(Debug, thiserror::Error)]
pub enum SolutionError {
    #[error("unknown template id {0}")]
    UnknownTemplate(u64),
    #[error("template {0} was built on an earlier tip")]
    StaleTemplate(u64),
    #[error("coinbase does not decode: {0}")]
    BadCoinbase(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    pub blocks_connected: u64,
    pub solutions_refused: u64,
    pub templates_sent: u64,
    pub connections: u64,
}

fn first_template_id() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Room for a thousand templates per millisecond of uptime before ids of a later start
    // could overlap.
    millis.saturating_mul(1_000).max(1)
}

pub struct ProviderState {
    pub chain: Chain,
    pub mempool: Mempool,
    templates: BTreeMap<u64, Arc<Template>>,
    next_template_id: u64,
    pub counters: Counters,
}

/// Shared handle: the state behind a lock, and the event channel.
#[derive(Clone)]
pub struct Shared {
    state: Arc<Mutex<ProviderState>>,
    events: broadcast::Sender<ChainEvent>,
}

impl Shared {
    pub fn new(chain: Chain) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            state: Arc::new(Mutex::new(ProviderState {
                chain,
                mempool: Mempool::default(),
                templates: BTreeMap::new(),
                // Ids keep increasing across restarts: clients may still hold ids from before.
                next_template_id: first_template_id(),
                counters: Counters::default(),
            })),
            events,
        }
    }

    /// Locks the state. A panic elsewhere while holding the lock cannot leave the chain
    /// half-updated (connect stores before it mutates), so a poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, ProviderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub fn notify(&self, event: ChainEvent) {
        // No receivers just means no connections right now.
        let _ = self.events.send(event);
    }

    /// Builds and records a template for the next block.
    pub fn new_template(&self, reserved_output_size: u32, future: bool) -> Arc<Template> {
        let mut st = self.lock();
        let id = st.next_template_id;
        st.next_template_id += 1;
        let t = Arc::new(template::build(
            id,
            &st.chain,
            &st.mempool,
            reserved_output_size,
            future,
        ));
        st.templates.insert(id, t.clone());
        while st.templates.len() > TEMPLATES_KEPT {
            st.templates.pop_first();
        }
        st.counters.templates_sent += 1;
        t
    }

    /// The template `id`, and whether it still builds on the tip.
    pub fn template(&self, id: u64) -> Option<(Arc<Template>, bool)> {
        let st = self.lock();
        let t = st.templates.get(&id)?.clone();
        let current = t.prev_hash == st.chain.tip();
        Some((t, current))
    }

    /// Rebuilds the block a solution describes, checks it and connects it.
    pub fn submit_solution(
        &self,
        solution: &SubmitSolutionOwned,
    ) -> Result<(u32, BlockHash), SolutionError> {
        let result = self.try_connect(solution);
        let mut st = self.lock();
        match &result {
            Ok(_) => st.counters.blocks_connected += 1,
            Err(_) => st.counters.solutions_refused += 1,
        }
        drop(st);
        if let Ok((height, _)) = result {
            self.notify(ChainEvent::NewTip { height });
        }
        result
    }

    fn try_connect(
        &self,
        solution: &SubmitSolutionOwned,
    ) -> Result<(u32, BlockHash), SolutionError> {
        let id = solution.template_id;
        let mut st = self.lock();
        let template = st
            .templates
            .get(&id)
            .cloned()
            .ok_or(SolutionError::UnknownTemplate(id))?;
        if template.prev_hash != st.chain.tip() {
            return Err(SolutionError::StaleTemplate(id));
        }
        let coinbase: Transaction = consensus::deserialize(solution.coinbase_tx.as_bytes())
            .map_err(|e| SolutionError::BadCoinbase(e.to_string()))?;
        let mut txdata = Vec::with_capacity(template.transactions.len() + 1);
        txdata.push(coinbase);
        txdata.extend(template.transactions.iter().cloned());
        let merkle_root = rules::merkle_root(&txdata).expect("txdata is never empty");
        let header = Header {
            version: bitcoin::block::Version::from_consensus(solution.version as i32),
            prev_blockhash: template.prev_hash,
            merkle_root,
            time: solution.header_timestamp,
            bits: CompactTarget::from_consensus(template.nbits),
            nonce: solution.header_nonce,
        };
        let block = Block { header, txdata };
        let hash = block.block_hash();
        let included: Vec<_> = template
            .transactions
            .iter()
            .map(|t| t.compute_txid())
            .collect();
        let height = st.chain.connect(block, template.fees)?;
        st.mempool.remove_included(&included);
        Ok((height, hash))
    }
}
