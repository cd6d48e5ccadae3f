//! One channel on the pool: its jobs become the work its SV1 miners see (published on its
//! slot), and the pool's verdicts on forwarded shares go back to the shares' senders.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use binary_sv2::U256Owned;
use hashpool_sv2_io::{encode_with_tlvs, str0255, text, Connection, ConnectionError};
use mining_sv2::{CloseChannelOwned, NewExtendedMiningJobOwned, OpenExtendedMiningChannelOwned};
use parsers_sv2::MiningOwned;
use tracing::{debug, info, warn};

use super::{
    failover::{Slot, Slots},
    ActiveJob, NotAccepted, Session, UpstreamWork, Verdict, MINER_EXTRANONCE_BYTES,
    MIN_EXTRANONCE2_BYTES,
};

static OPENINGS: AtomicU64 = AtomicU64::new(1);

pub(super) struct Channel {
    opening: u64,
    pub(super) id: u32,
    slot: u32,
    aggregated: bool,
    extranonce_prefix: Vec<u8>,
    extranonce_size: usize,
    target: [u8; 32],
    future_jobs: HashMap<u32, NewExtendedMiningJobOwned>,
    tip: Option<([u8; 32], u32, u32)>,
    active: Option<ActiveJob>,
    pub(super) sequence: u32,
    /// Forwarded shares by sequence number, waiting for the pool's verdict.
    pub(super) pending: BTreeMap<u32, Verdict>,
}

impl Channel {
    fn publish(&self, slots: &Slots) {
        let Some(slot) = slots.get(&self.slot) else {
            return;
        };
        slot.work.send_replace(Some(Arc::new(UpstreamWork {
            opening: self.opening,
            channel_id: self.id,
            extranonce_prefix: self.extranonce_prefix.clone(),
            extranonce_size: self.extranonce_size,
            target: self.target,
            aggregated: self.aggregated,
            job: self.active.clone(),
        })));
    }

    fn activate(&mut self, job: &NewExtendedMiningJobOwned, clean: bool) {
        let Some((prev_hash, min_ntime, nbits)) = self.tip else {
            return;
        };
        let job_min = job.min_ntime.clone().into_inner().unwrap_or(min_ntime);
        self.active = Some(ActiveJob {
            job_id: job.job_id,
            version: job.version,
            coinbase_prefix: job.coinbase_tx_prefix.as_bytes().to_vec(),
            coinbase_suffix: job.coinbase_tx_suffix.as_bytes().to_vec(),
            merkle_path: job.merkle_path.iter().map(|h| h.to_array()).collect(),
            prev_hash,
            nbits,
            ntime: job_min.max(min_ntime),
            clean,
            channel_target: self.target,
        });
    }

    fn on_job(&mut self, job: &NewExtendedMiningJobOwned, slots: &Slots) {
        if job.min_ntime.clone().into_inner().is_some() {
            self.activate(job, false);
            self.publish(slots);
        } else {
            self.future_jobs.insert(job.job_id, job.clone());
        }
    }

    fn on_prev_hash(&mut self, p: &mining_sv2::SetNewPrevHashOwned, slots: &Slots) {
        self.tip = Some((p.prev_hash.to_array(), p.min_ntime, p.nbits));
        if let Some(job) = self.future_jobs.remove(&p.job_id) {
            self.future_jobs.clear();
            self.activate(&job, true);
            self.publish(slots);
        }
    }

    pub(super) fn fail_pending(&mut self, reason: &'static str) {
        for (_, v) in std::mem::take(&mut self.pending) {
            let _ = v.send(Err(NotAccepted::Unjudged(reason)));
        }
    }
}

pub(super) fn open_message(
    slot_id: u32,
    slot: &Slot,
    mode: crate::ChannelMode,
    max_target: [u8; 32],
) -> MiningOwned {
    let miner_bytes = if mode.shares_channels() {
        MINER_EXTRANONCE_BYTES
    } else {
        0
    };
    MiningOwned::OpenExtendedMiningChannel(OpenExtendedMiningChannelOwned {
        request_id: slot_id,
        user_identity: str0255(&slot.user_identity),
        nominal_hash_rate: slot.hashrate,
        max_target: U256Owned::from(max_target),
        min_extranonce_size: (miner_bytes + MIN_EXTRANONCE2_BYTES) as u16,
    })
}

/// The key a slot's channel is locked to by TLV: its own (public mode) or the translator's
/// wallet's; none when the pool did not take the mint-quote extension.
pub(super) fn slot_key(
    slot: &Slot,
    own: Option<ext_mint_quote::LockingKey>,
    tlv: bool,
) -> Option<ext_mint_quote::LockingKey> {
    slot.locking_key.or(own).filter(|_| tlv)
}

/// Sends an open request, with the slot's locking key when the pool took the extension.
pub(super) async fn open_channel(
    conn: &mut Connection,
    open: MiningOwned,
    locking_key: Option<ext_mint_quote::LockingKey>,
) -> Result<(), ConnectionError> {
    match locking_key {
        Some(key) => {
            let frame = encode_with_tlvs(open, &[ext_mint_quote::locking_key_tlv(&key)])?;
            conn.send_frame(frame).await
        }
        None => conn.send(open).await,
    }
}

/// The channels a pool message is for: one channel, or all of them for the group's id.
fn addressed(
    channels: &mut HashMap<u32, Channel>,
    group: Option<u32>,
    channel_id: u32,
) -> Vec<&mut Channel> {
    if channels.contains_key(&channel_id) {
        channels.get_mut(&channel_id).into_iter().collect()
    } else if group == Some(channel_id) {
        channels.values_mut().collect()
    } else {
        Vec::new()
    }
}

impl Session<'_> {
    /// What the pool sends about channels, jobs and shares. An error ends the connection.
    pub(super) async fn on_mining(
        &mut self,
        m: MiningOwned,
        endpoint: &crate::UpstreamEndpoint,
        established: &mut bool,
    ) -> Result<(), ConnectionError> {
        match m {
            MiningOwned::OpenExtendedMiningChannelSuccess(s) => {
                if !self.slots.contains_key(&s.request_id)
                    || self.by_slot.contains_key(&s.request_id)
                {
                    // The miner left while its channel was being opened.
                    let close = MiningOwned::CloseChannel(CloseChannelOwned {
                        channel_id: s.channel_id,
                        reason_code: str0255("miner disconnected"),
                    });
                    self.conn.send(close).await?;
                    return Ok(());
                }
                info!(pool = %endpoint.address, channel_id = s.channel_id, extranonce_size = s.extranonce_size, "extended channel open");
                *established = true;
                self.group_channel_id = Some(s.group_channel_id);
                let c = Channel {
                    opening: OPENINGS.fetch_add(1, Ordering::Relaxed),
                    id: s.channel_id,
                    slot: s.request_id,
                    aggregated: self.mode.shares_channels(),
                    extranonce_prefix: s.extranonce_prefix.as_bytes().to_vec(),
                    extranonce_size: s.extranonce_size as usize,
                    target: s.target.to_array(),
                    future_jobs: HashMap::new(),
                    tip: None,
                    active: None,
                    sequence: 0,
                    pending: BTreeMap::new(),
                };
                c.publish(self.slots);
                self.by_slot.insert(s.request_id, s.channel_id);
                self.channels.insert(s.channel_id, c);
            }
            MiningOwned::OpenMiningChannelError(e) => {
                let reason = text(&e.error_code);
                // No channel works on this pool: the next one may take them all. (A key's
                // channel refused says nothing of the others': only that key's miners go.)
                let aggregated = self.mode == crate::ChannelMode::Aggregated;
                if aggregated
                    || (self.mode == crate::ChannelMode::PerMiner && self.channels.is_empty())
                {
                    return Err(ConnectionError::Refused(format!("channel: {reason}")));
                }
                // Others work: this miner is disconnected (its work sender dropped)
                // and asks again when it reconnects, rather than idling without work.
                warn!(
                    miner = e.request_id,
                    "the pool refused the miner's channel: {reason}; disconnecting the miner"
                );
                self.slots.remove(&e.request_id);
            }
            MiningOwned::NewExtendedMiningJob(job) => {
                for c in addressed(&mut self.channels, self.group_channel_id, job.channel_id) {
                    c.on_job(&job, self.slots);
                }
            }
            MiningOwned::SetNewPrevHash(p) => {
                for c in addressed(&mut self.channels, self.group_channel_id, p.channel_id) {
                    c.on_prev_hash(&p, self.slots);
                }
            }
            MiningOwned::SetTarget(t) => {
                for c in addressed(&mut self.channels, self.group_channel_id, t.channel_id) {
                    c.target = t.maximum_target.to_array();
                    c.publish(self.slots);
                }
            }
            MiningOwned::SubmitSharesSuccess(s) => {
                if let Some(c) = self.channels.get_mut(&s.channel_id) {
                    let rest = c.pending.split_off(&s.last_sequence_number.wrapping_add(1));
                    for (_, v) in std::mem::replace(&mut c.pending, rest) {
                        let _ = v.send(Ok(()));
                    }
                }
            }
            MiningOwned::SubmitSharesError(e) => {
                if let Some(v) = self
                    .channels
                    .get_mut(&e.channel_id)
                    .and_then(|c| c.pending.remove(&e.sequence_number))
                {
                    let _ = v.send(Err(NotAccepted::Refused(text(&e.error_code))));
                }
            }
            MiningOwned::CloseChannel(m) => {
                if let Some(mut c) = self.channels.remove(&m.channel_id) {
                    warn!(channel_id = m.channel_id, reason = %text(&m.reason_code), "the pool closed a channel");
                    self.by_slot.remove(&c.slot);
                    c.fail_pending("the pool closed the channel");
                    if self.mode == crate::ChannelMode::Aggregated {
                        return Err(ConnectionError::Refused(
                            "the pool closed the channel".into(),
                        ));
                    }
                    // The miner is disconnected (its work sender dropped) and gets a new
                    // channel when it reconnects, rather than idling without work.
                    self.slots.remove(&c.slot);
                }
            }
            MiningOwned::UpdateChannelError(e) => {
                debug!(
                    channel_id = e.channel_id,
                    "hashrate update refused: {}",
                    text(&e.error_code)
                );
            }
            other => debug!("ignored from the pool: {other:?}"),
        }
        Ok(())
    }
}
