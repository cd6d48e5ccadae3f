//! The miner's connection to the pool: setup, one standard channel, jobs, targets, shares.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use binary_sv2::U256Owned;
use bitcoin::Target;
use common_messages_sv2::Protocol;
use hashpool_sv2_io::{
    decode_frame, encode_with_tlvs, extension_frame, keep_connected, str0255 as s, text, Backoff,
    ConnectionError, Dial, Healthy, Sv2Message,
};
use mining_sv2::{NewMiningJobOwned, OpenStandardMiningChannelOwned, SubmitSharesStandard};
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    hasher::{FoundShare, Hashers, Work, WorkSlot},
    MinerOptions, MinerStats,
};

/// SetupConnection flag: this device needs standard jobs (no extended ones via a group).
const REQUIRES_STANDARD_JOBS: u32 = 1;

/// Mines until `shutdown`, reconnecting with back-off whenever the pool goes away.
pub async fn run(options: MinerOptions, stats: Arc<MinerStats>, shutdown: CancellationToken) {
    let limit = options
        .hash_pace
        .or(options.limit_hashrate.then_some(options.nominal_hashrate))
        .map(f64::from);
    let mut hashers = Hashers::start(options.threads, limit, stats.clone());
    {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let (options, stats, slot) = (&options, &stats, &hashers.slot);
        // One session at a time takes the shares found.
        let shares = &Mutex::new(&mut hashers.shares);
        keep_connected("pool", backoff, &shutdown, |healthy| async move {
            let mut shares = shares.lock().await;
            let result = session(options, stats, slot, &mut shares, healthy).await;
            slot.set(None);
            stats.connected.store(false, Ordering::Relaxed);
            result
        })
        .await;
    }
    hashers.stop().await;
}

/// State of the one channel this device opens.
#[derive(Default)]
struct ChannelState {
    channel_id: Option<u32>,
    target: Option<Target>,
    future_jobs: HashMap<u32, NewMiningJobOwned>,
    active_job: Option<NewMiningJobOwned>,
    prev_hash: Option<([u8; 32], u32, u32)>,
    sequence: u32,
}

impl ChannelState {
    fn work(&self) -> Option<Work> {
        let job = self.active_job.as_ref()?;
        let (prev_hash, min_ntime, nbits) = self.prev_hash?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(min_ntime);
        let job_min = job.min_ntime.clone().into_inner().unwrap_or(min_ntime);
        Some(Work {
            job_id: job.job_id,
            version: job.version,
            prev_hash,
            merkle_root: job.merkle_root.to_array(),
            ntime: now.clamp(job_min, job_min.saturating_add(3600)),
            nbits,
            target: self.target?,
        })
    }
}

async fn session(
    options: &MinerOptions,
    stats: &MinerStats,
    slot: &WorkSlot,
    shares: &mut mpsc::Receiver<FoundShare>,
    healthy: Healthy,
) -> Result<(), ConnectionError> {
    let dial = Dial::new(
        options.pool_address,
        options.pool_authority_key,
        Protocol::MiningProtocol,
        "cpu",
    )
    .device_id(&options.device_id)
    .flags(REQUIRES_STANDARD_JOBS)
    .capacity(256);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.mint_quote_negotiated.store(false, Ordering::Relaxed);
    // Ask for the mint-quote extension; the channel opens once the pool has answered.
    let mut agreed = false;
    if options.locking_key.is_some() {
        agreed = conn.try_extension(ext_mint_quote::EXTENSION_TYPE).await?;
        stats.mint_quote_negotiated.store(agreed, Ordering::Relaxed);
        info!(mint_quote = agreed, "extension negotiation answered");
    }
    match open_channel(options, agreed)? {
        Reply::Message(m) => conn.send(m).await?,
        Reply::Frame(f) => conn.send_frame(f).await?,
    }
    // Drain shares found on work of an earlier connection: they cannot be submitted now.
    while shares.try_recv().is_ok() {}

    let mut ch = ChannelState::default();
    loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                let mut frame = frame?;
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension_frame(&ext, options, stats);
                    continue;
                }
                let (_, message, _) = decode_frame(&mut frame, &[])?;
                if on_message(message, stats, &mut ch, slot)? {
                    healthy.mark();
                }
            }
            share = shares.recv() => {
                let Some(share) = share else { return Ok(()) };
                let Some(channel_id) = ch.channel_id else { continue };
                ch.sequence = ch.sequence.wrapping_add(1);
                conn.send(MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
                    channel_id,
                    sequence_number: ch.sequence,
                    job_id: share.job_id,
                    nonce: share.nonce,
                    ntime: share.ntime,
                    version: share.version,
                })).await?;
                stats.shares_submitted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The channel request: with the locking-key TLV when the pool took the extension.
enum Reply {
    Message(AnyMessageOwned),
    Frame(codec_sv2::SerializedFrame),
}

fn open_channel(options: &MinerOptions, with_tlv: bool) -> Result<Reply, ConnectionError> {
    let open = MiningOwned::OpenStandardMiningChannel(OpenStandardMiningChannelOwned {
        request_id: 1,
        user_identity: s(&options.user_identity),
        nominal_hash_rate: options.nominal_hashrate,
        max_target: U256Owned::from([0xffu8; 32]),
    });
    match options.locking_key.filter(|_| with_tlv) {
        Some(key) => Ok(Reply::Frame(encode_with_tlvs(
            open,
            &[ext_mint_quote::locking_key_tlv(&key)],
        )?)),
        None => Ok(Reply::Message(open.into_any())),
    }
}

/// Quote announcements (mint-quote extension): counted, and handed to the wallet if there is one.
fn on_extension_frame(
    ext: &hashpool_sv2_io::ExtensionFrame,
    options: &MinerOptions,
    stats: &MinerStats,
) {
    let Some((quote, amount)) =
        hashpool_wallet::announced_quote(ext.extension_type, ext.message_type, &ext.payload)
    else {
        return;
    };
    stats.quotes_announced.fetch_add(1, Ordering::Relaxed);
    stats.ehash_announced.fetch_add(amount, Ordering::Relaxed);
    if let Some(minter) = &options.minter {
        minter.announce(quote);
    }
}

/// Applies a message from the pool; true once the channel is open (the link is healthy).
fn on_message(
    message: AnyMessageOwned,
    stats: &MinerStats,
    ch: &mut ChannelState,
    slot: &WorkSlot,
) -> Result<bool, ConnectionError> {
    let mining = match message {
        AnyMessageOwned::Mining(m) => m,
        other => {
            debug!("ignoring {other}");
            return Ok(false);
        }
    };
    let mut opened = false;
    let mut work_changed = false;
    match mining {
        MiningOwned::OpenStandardMiningChannelSuccess(m) => {
            info!(channel_id = m.channel_id, "channel open");
            ch.channel_id = Some(m.channel_id);
            ch.target = Some(Target::from_le_bytes(m.target.to_array()));
            stats.connected.store(true, Ordering::Relaxed);
            opened = true;
            work_changed = true;
        }
        MiningOwned::OpenMiningChannelError(e) => {
            return Err(ConnectionError::Refused(text(&e.error_code)));
        }
        MiningOwned::NewMiningJob(job) => {
            stats.jobs.fetch_add(1, Ordering::Relaxed);
            if job.min_ntime.clone().into_inner().is_some() {
                ch.active_job = Some(job);
                work_changed = true;
            } else {
                ch.future_jobs.insert(job.job_id, job);
            }
        }
        MiningOwned::SetNewPrevHash(p) => {
            ch.prev_hash = Some((p.prev_hash.to_array(), p.min_ntime, p.nbits));
            if let Some(job) = ch.future_jobs.remove(&p.job_id) {
                ch.active_job = Some(job);
            }
            ch.future_jobs.clear();
            work_changed = true;
        }
        MiningOwned::SetTarget(t) => {
            stats.set_targets.fetch_add(1, Ordering::Relaxed);
            ch.target = Some(Target::from_le_bytes(t.maximum_target.to_array()));
            work_changed = true;
        }
        MiningOwned::SubmitSharesSuccess(s) => {
            stats
                .shares_acknowledged
                .fetch_add(s.new_submits_accepted_count as u64, Ordering::Relaxed);
        }
        MiningOwned::SubmitSharesError(e) => {
            stats.shares_rejected.fetch_add(1, Ordering::Relaxed);
            debug!(code = %text(&e.error_code), "share rejected");
        }
        MiningOwned::CloseChannel(c) => {
            return Err(ConnectionError::Refused(format!(
                "channel closed: {}",
                text(&c.reason_code)
            )));
        }
        other => debug!("ignoring {other}"),
    }
    if work_changed {
        slot.set(ch.work());
    }
    Ok(opened)
}
