//! The channels of one connection, and what happens to them when work changes.

use hashpool_shares::target_to_u256;
use std::collections::HashMap;

use bitcoin::{BlockHash, Target};
use channels_sv2::{
    server::{extended::ExtendedChannel, standard::StandardChannel},
    Vardiff, VardiffState,
};
use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use mining_sv2::{SetTargetOwned, SubmitSharesSuccess};
use parsers_sv2::MiningOwned;
use tracing::{debug, warn};

use super::{
    channel::PoolChannel,
    targets::{network_target, JobTarget},
};
use crate::jobs::{JobEvent, Sequenced, Snapshot};

pub enum ChannelKind {
    Standard(StandardChannel),
    Extended(ExtendedChannel),
}

pub struct ChannelEntry {
    pub kind: ChannelKind,
    /// The key this channel's ehash is locked to.
    pub locking_key: LockingKey,
    pub vardiff: VardiffState,
    /// Job events up to this sequence number were in the snapshot the channel started from.
    pub bootstrap_seq: u64,
    /// What each job's shares are credited against: the job's target as channels_sv2
    /// validates it (fixed when the job becomes active, kept through later SetTargets, cleared
    /// on a new tip) and its tip's network target. A share's work comes from here, exactly.
    pub job_targets: HashMap<u32, JobTarget>,
    /// The network target of the current tip.
    pub network_target: Option<Target>,
    /// The channel's accepted-share totals as of its last SubmitShares.Success.
    pub acked: Acked,
    /// When the channel's newest share was accepted (Unix ms), for the miner page.
    pub last_share_ms: Option<i64>,
    /// The highest difficulty of a share accepted on the channel (a block counts too, which
    /// channels_sv2's own best skips).
    pub best_difficulty: f64,
}

/// Totals already acknowledged: each Success reports what was accepted since the previous one,
/// whether a full batch, a block or the acknowledgement deadline sent it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Acked {
    accepted: u32,
    work: f64,
}

impl ChannelEntry {
    /// Records the active job's target (after a non-future template or a new tip).
    fn record_active_job(&mut self, new_tip: bool) {
        if new_tip {
            self.job_targets.clear();
        }
        let network = self.network_target;
        let (active, job) = {
            let channel = self.channel();
            (channel.active_job_id(), channel.target())
        };
        if let Some(job_id) = active {
            self.job_targets
                .entry(job_id)
                .or_insert(JobTarget { job, network });
        }
        self.prune_job_targets();
    }

    /// Forgets the targets of jobs channels_sv2 no longer keeps (it holds a few past jobs per
    /// tip): without this a tip that lasts for hours would add an entry per template to every
    /// channel.
    pub fn prune_job_targets(&mut self) {
        let channel: &dyn PoolChannel = match &self.kind {
            ChannelKind::Standard(c) => c,
            ChannelKind::Extended(c) => c,
        };
        self.job_targets
            .retain(|job_id, _| channel.holds_job(*job_id));
    }

    /// The work an accepted share on `job_id` with header hash `hash` proves
    /// ([`JobTarget::credit`]). `None` if the job's target was not recorded (a bug: the caller
    /// counts it).
    pub fn share_work(&self, job_id: u32, hash: BlockHash) -> Option<Work> {
        self.job_targets.get(&job_id).and_then(|t| t.credit(hash))
    }

    /// SubmitShares.Success for the shares accepted since the last one, if any.
    pub fn acknowledge(&mut self) -> Option<MiningOwned> {
        let (channel_id, accounting) = {
            let c = self.channel();
            (c.channel_id(), c.share_accounting())
        };
        let now = Acked {
            accepted: accounting.get_shares_accepted(),
            work: accounting.get_share_work_sum(),
        };
        if now.accepted == self.acked.accepted {
            return None;
        }
        let success = SubmitSharesSuccess {
            channel_id,
            last_sequence_number: accounting.get_last_share_sequence_number(),
            new_submits_accepted_count: now.accepted.wrapping_sub(self.acked.accepted),
            new_shares_sum: (now.work - self.acked.work).max(0.0) as u64,
        };
        self.acked = now;
        Some(MiningOwned::SubmitSharesSuccess(success))
    }

    pub fn channel(&self) -> &dyn PoolChannel {
        match &self.kind {
            ChannelKind::Standard(c) => c,
            ChannelKind::Extended(c) => c,
        }
    }

    pub fn channel_mut(&mut self) -> &mut dyn PoolChannel {
        match &mut self.kind {
            ChannelKind::Standard(c) => c,
            ChannelKind::Extended(c) => c,
        }
    }
}

/// Channels of one connection, shared with the registry (observability reads them).
pub struct ChannelSet {
    pub client_id: usize,
    pub vendor: String,
    pub group_channel_id: u32,
    /// Added and removed through the [`Registry`](super::Registry), which indexes their keys.
    /// Boxed: most connections hold one channel, and a map's first allocation has room for
    /// several entries (a channel inline is kilobytes; a box is a pointer).
    channels: HashMap<u32, Box<ChannelEntry>>,
}

impl ChannelSet {
    pub fn new(client_id: usize, group_channel_id: u32) -> Self {
        Self {
            client_id,
            vendor: String::new(),
            group_channel_id,
            channels: HashMap::new(),
        }
    }

    pub fn channels(&self) -> &HashMap<u32, Box<ChannelEntry>> {
        &self.channels
    }

    pub fn entry_mut(&mut self, channel_id: u32) -> Option<&mut ChannelEntry> {
        self.channels.get_mut(&channel_id).map(|entry| &mut **entry)
    }

    /// Only for the registry: it keeps its key index in step.
    pub(super) fn insert(&mut self, channel_id: u32, entry: ChannelEntry) -> Option<ChannelEntry> {
        self.channels
            .insert(channel_id, Box::new(entry))
            .map(|old| *old)
    }

    /// Only for the registry: it keeps its key index in step.
    pub(super) fn remove(&mut self, channel_id: u32) -> Option<ChannelEntry> {
        self.channels.remove(&channel_id).map(|entry| *entry)
    }

    /// After missing job events, every channel restarts from the current snapshot.
    pub fn rebootstrap(&mut self, snapshot: &Snapshot) -> Vec<MiningOwned> {
        self.channels
            .values_mut()
            .flat_map(|entry| Self::bootstrap(entry, snapshot))
            .collect()
    }

    /// Gives a new channel the current work: the current template (as a future job activated
    /// by the current tip) and any pending future template.
    pub fn bootstrap(entry: &mut ChannelEntry, snapshot: &Snapshot) -> Vec<MiningOwned> {
        entry.bootstrap_seq = snapshot.seq;
        let mut out = Vec::new();
        if let Some((template, prev_hash)) = &snapshot.current {
            entry.network_target = Some(network_target(prev_hash.n_bits));
            let channel = entry.channel_mut();
            let mut as_future = template.template.clone();
            as_future.future_template = true;
            let mut tip = (**prev_hash).clone();
            tip.template_id = as_future.template_id;
            match channel
                .apply_template(as_future, template.outputs.clone())
                .and_then(|job| Ok((job, channel.apply_prev_hash(tip)?)))
            {
                Ok((job, prev)) => {
                    out.push(job);
                    out.push(prev);
                    entry.record_active_job(true);
                }
                Err(e) => warn!(
                    channel_id = channel.channel_id(),
                    "cannot start channel on current work: {e}"
                ),
            }
        }
        if let Some(future) = &snapshot.pending_future {
            let channel = entry.channel_mut();
            match channel.apply_template(future.template.clone(), future.outputs.clone()) {
                Ok(job) => out.push(job),
                Err(e) => warn!(
                    channel_id = channel.channel_id(),
                    "future template refused: {e}"
                ),
            }
        }
        out
    }

    /// Applies a job event to every channel that has not seen it; returns the messages to send.
    pub fn on_job_event(&mut self, event: &Sequenced) -> Vec<MiningOwned> {
        let mut out = Vec::new();
        for entry in self.channels.values_mut() {
            if event.seq <= entry.bootstrap_seq {
                continue;
            }
            if let JobEvent::PrevHash(p) = &event.event {
                entry.network_target = Some(network_target(p.n_bits));
            }
            let channel = entry.channel_mut();
            // A job becomes active with a non-future template (same tip) or a new tip.
            let (result, activates, new_tip) = match &event.event {
                JobEvent::Template(t) => (
                    channel.apply_template(t.template.clone(), t.outputs.clone()),
                    !t.template.future_template,
                    false,
                ),
                JobEvent::PrevHash(p) => (channel.apply_prev_hash((**p).clone()), true, true),
                JobEvent::ProviderLost => continue,
            };
            match result {
                Ok(message) => {
                    out.push(message);
                    if activates {
                        entry.record_active_job(new_tip);
                    }
                }
                Err(e) => debug!(
                    channel_id = entry.channel().channel_id(),
                    "job event not applied: {e}"
                ),
            }
        }
        out
    }

    /// SubmitShares.Success for every channel with shares not yet acknowledged: a partly filled
    /// batch is acknowledged within the pool's deadline rather than waiting for more shares.
    pub fn acknowledge_pending(&mut self) -> Vec<MiningOwned> {
        self.channels
            .values_mut()
            .filter_map(|entry| entry.acknowledge())
            .collect()
    }

    /// Runs vardiff on every channel; returns SetTarget for those whose target moved.
    pub fn run_vardiff(&mut self) -> Vec<MiningOwned> {
        let mut out = Vec::new();
        for (id, entry) in self.channels.iter_mut() {
            let (hashrate, target, spm) = {
                let c = entry.channel();
                (c.nominal_hashrate(), c.target(), c.shares_per_minute())
            };
            let new_hashrate = match entry.vardiff.try_vardiff(hashrate, &target, spm) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    warn!(channel_id = id, "vardiff failed: {e:?}");
                    continue;
                }
            };
            match entry.channel_mut().update(new_hashrate, None) {
                Ok(new_target) if new_target != target => {
                    debug!(
                        channel_id = id,
                        hashrate = new_hashrate,
                        "vardiff: new target"
                    );
                    out.push(MiningOwned::SetTarget(SetTargetOwned {
                        channel_id: *id,
                        maximum_target: target_to_u256(&new_target),
                    }));
                }
                Ok(_) => {}
                Err(code) => warn!(channel_id = id, "vardiff update refused: {code}"),
            }
        }
        out
    }
}
