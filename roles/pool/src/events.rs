//! Things that happen once (a block found, a quote issued), emitted where they happen and
//! consumed by observability. A channel instead of a reporter handle reached from everywhere:
//! the miners and the mint link do not depend on how, or whether, the pool reports.

use tokio::sync::mpsc;

/// Events queued for the consumer at most; beyond, new ones are dropped (reporting never
/// slows the pool down).
const CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    BlockFound {
        /// Unix seconds.
        at: u64,
        hash: String,
        channel_id: u32,
        template_id: Option<u64>,
        /// Height and total coinbase value (satoshis), read from the block's coinbase.
        height: Option<u64>,
        reward_sats: Option<u64>,
        /// The difficulty of the tip it was mined on.
        difficulty: Option<f64>,
    },
    /// The mint issued a quote for a batch (it said so in its answer).
    QuoteIssued {
        at: u64,
        quote_id: String,
        amount: u64,
        locking_key: String,
    },
}

/// Where events go. Without a consumer (the pool does not report), emitting does nothing.
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<PoolEvent>>,
}

impl EventSink {
    /// A sink and the receiver its events arrive on.
    pub fn channel() -> (Self, mpsc::Receiver<PoolEvent>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Self { tx: Some(tx) }, rx)
    }

    /// A sink whose events nobody consumes.
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn emit(&self, event: PoolEvent) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::debug!("event queue full or closed; event dropped");
            }
        }
    }

    /// A block found on `channel_id`, with its serialized coinbase transaction.
    pub fn block_found(
        &self,
        hash: String,
        channel_id: u32,
        template_id: Option<u64>,
        coinbase: &[u8],
        difficulty: Option<f64>,
    ) {
        if self.tx.is_none() {
            return;
        }
        let summary = hashpool_shares::chain::coinbase_summary(coinbase);
        self.emit(PoolEvent::BlockFound {
            at: hashpool_role::unix_now(),
            hash,
            channel_id,
            template_id,
            height: summary.map(|s| u64::from(s.0)),
            reward_sats: summary.map(|s| s.1),
            difficulty,
        });
    }

    pub fn quote_issued(&self, quote_id: &str, amount: u64, locking_key: String) {
        self.emit(PoolEvent::QuoteIssued {
            at: hashpool_role::unix_now(),
            quote_id: quote_id.to_string(),
            amount,
            locking_key,
        });
    }
}
