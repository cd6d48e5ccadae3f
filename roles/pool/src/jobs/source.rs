//! The work the pool hands out: the latest template and chain tip from the template provider,
//! with the pool's coinbase outputs. Connections bootstrap new channels from a snapshot and
//! follow changes through numbered [`JobEvent`]s, so a channel never applies an event its
//! snapshot already contained.

use std::sync::{Arc, Mutex};

use bitcoin::{ScriptBuf, TxOut};
use template_distribution_sv2::{NewTemplateOwned, SetNewPrevHashOwned};
use tokio::sync::broadcast;

/// The longest payout script (a standard output's: P2WSH, P2TR): the room reserved for each
/// payout in a coinbase.
pub const MAX_PAYOUT_SCRIPT: usize = 34;

/// A template with the pool's outputs for it (they must sum to the value it leaves).
#[derive(Debug, Clone)]
pub struct PoolTemplate {
    pub template: NewTemplateOwned,
    pub outputs: Vec<TxOut>,
}

#[derive(Debug, Clone)]
pub enum JobEvent {
    Template(Arc<PoolTemplate>),
    PrevHash(Arc<SetNewPrevHashOwned>),
    /// The template provider went away: no new work until it is back.
    ProviderLost,
}

/// A numbered event: `seq` orders events and snapshots.
#[derive(Debug, Clone)]
pub struct Sequenced {
    pub seq: u64,
    pub event: JobEvent,
}

/// What a new channel needs to start mining.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Last event included in this snapshot.
    pub seq: u64,
    /// The template for the current tip and that tip.
    pub current: Option<(Arc<PoolTemplate>, Arc<SetNewPrevHashOwned>)>,
    /// A future template whose SetNewPrevHash has not arrived yet.
    pub pending_future: Option<Arc<PoolTemplate>>,
}

/// The chain being mined, as the template provider tells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainView {
    /// Height of the block being mined (BIP34, from the template's coinbase prefix).
    pub height: u64,
    /// Its difficulty (the tip's nBits; 1.0 at 0x1d00ffff).
    pub difficulty: f64,
    /// The tip's nBits: the target the next block must meet.
    pub n_bits: u32,
    /// Unix seconds when the tip arrived.
    pub tip_seen_at: u64,
}

#[derive(Default)]
struct State {
    seq: u64,
    /// Unix seconds of the last SetNewPrevHash.
    tip_seen_at: u64,
    current_template: Option<Arc<PoolTemplate>>,
    prev_hash: Option<Arc<SetNewPrevHashOwned>>,
    pending_future: Vec<Arc<PoolTemplate>>,
}

pub struct JobSource {
    reward_script: ScriptBuf,
    /// Payout outputs a coinbase may carry besides the pool's (withdrawals).
    max_payouts: usize,
    state: Mutex<State>,
    events: broadcast::Sender<Sequenced>,
}

impl JobSource {
    pub fn new(reward_script: ScriptBuf) -> Self {
        Self::with_payouts(reward_script, 0)
    }

    /// Withdrawal outputs a coinbase may carry (0: none).
    pub fn max_payouts(&self) -> usize {
        self.max_payouts
    }

    /// A source whose coinbases may carry up to `max_payouts` withdrawal outputs.
    pub fn with_payouts(reward_script: ScriptBuf, max_payouts: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            reward_script,
            max_payouts,
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Sequenced> {
        self.events.subscribe()
    }

    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            seq: st.seq,
            current: st.current_template.clone().zip(st.prev_hash.clone()),
            pending_future: st.pending_future.last().cloned(),
        }
    }

    /// The chain being mined, once there is a template and a tip.
    pub fn chain(&self) -> Option<ChainView> {
        let st = self.lock();
        let (template, tip) = (st.current_template.as_ref()?, st.prev_hash.as_ref()?);
        Some(ChainView {
            height: hashpool_shares::chain::bip34_height(
                template.template.coinbase_prefix.as_ref(),
            )?
            .into(),
            difficulty: hashpool_shares::chain::difficulty(tip.n_bits),
            n_bits: tip.n_bits,
            tip_seen_at: st.tip_seen_at,
        })
    }

    /// Whether miners have work (a template and a tip).
    pub fn has_work(&self) -> bool {
        let st = self.lock();
        st.current_template.is_some() && st.prev_hash.is_some()
    }

    /// The pool's coinbase outputs for a template: the payouts, and the rest of the value to
    /// the reward script (first). Payouts worth more than the template leaves are not paid
    /// (the ledger offers only what fits).
    pub fn outputs_for(&self, template: &NewTemplateOwned, payouts: Vec<TxOut>) -> Vec<TxOut> {
        let paid: u64 = payouts.iter().map(|o| o.value.to_sat()).sum();
        let (rest, payouts) = match template.coinbase_tx_value_remaining.checked_sub(paid) {
            Some(rest) => (rest, payouts),
            None => {
                tracing::warn!("payouts exceed the template's value: none paid in it");
                (template.coinbase_tx_value_remaining, Vec::new())
            }
        };
        let mut outputs = vec![TxOut {
            value: bitcoin::Amount::from_sat(rest),
            script_pubkey: self.reward_script.clone(),
        }];
        outputs.extend(payouts);
        outputs
    }

    /// Size the pool's outputs take in a coinbase at most (for CoinbaseOutputConstraints):
    /// its own, and each payout as large as a standard output gets (a 34-byte script).
    pub fn reward_outputs_template(&self) -> Vec<TxOut> {
        let mut outputs = vec![TxOut {
            value: bitcoin::Amount::from_sat(0),
            script_pubkey: self.reward_script.clone(),
        }];
        outputs.extend((0..self.max_payouts).map(|_| TxOut {
            value: bitcoin::Amount::from_sat(0),
            script_pubkey: ScriptBuf::from_bytes(vec![0; MAX_PAYOUT_SCRIPT]),
        }));
        outputs
    }

    pub fn on_new_template(&self, template: NewTemplateOwned) {
        self.on_new_template_paying(template, Vec::new());
    }

    /// A template whose coinbase also pays `payouts` (offered at its height by the ledger).
    pub fn on_new_template_paying(&self, template: NewTemplateOwned, payouts: Vec<TxOut>) {
        let outputs = self.outputs_for(&template, payouts);
        let t = Arc::new(PoolTemplate { template, outputs });
        let mut st = self.lock();
        if t.template.future_template {
            st.pending_future.push(t.clone());
            // A provider sends SetNewPrevHash right after each future template; keep a few.
            if st.pending_future.len() > 8 {
                st.pending_future.remove(0);
            }
        } else {
            st.current_template = Some(t.clone());
        }
        self.publish(&mut st, JobEvent::Template(t));
    }

    pub fn on_set_new_prev_hash(&self, prev_hash: SetNewPrevHashOwned) {
        let p = Arc::new(prev_hash);
        let mut st = self.lock();
        if let Some(pos) = st
            .pending_future
            .iter()
            .position(|t| t.template.template_id == p.template_id)
        {
            st.current_template = Some(st.pending_future.remove(pos));
        } else {
            tracing::warn!(
                template_id = p.template_id,
                "SetNewPrevHash for a template never announced as future"
            );
            st.current_template = None;
        }
        st.pending_future.clear();
        st.prev_hash = Some(p.clone());
        st.tip_seen_at = hashpool_role::unix_now();
        self.publish(&mut st, JobEvent::PrevHash(p));
    }

    /// Forget the provider's work: a new provider session starts from scratch.
    pub fn on_provider_lost(&self) {
        let mut st = self.lock();
        st.pending_future.clear();
        self.publish(&mut st, JobEvent::ProviderLost);
    }

    fn publish(&self, st: &mut State, event: JobEvent) {
        st.seq += 1;
        // Sent under the lock so snapshot sequence numbers and events agree.
        let _ = self.events.send(Sequenced { seq: st.seq, event });
    }
}
