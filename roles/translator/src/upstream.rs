//! The translator's SV2 side: one Noise connection to the pool (its key pinned) carrying either
//! one aggregated extended channel for every SV1 miner behind it or one extended channel per
//! miner. It turns the pool's jobs into the work SV1 miners see, forwards their shares with
//! per-channel sequence numbers, and answers each forwarded share only with the pool's verdict.
//! It reconnects with back-off (reopening every miner's channel); meanwhile miners stay
//! connected with no work and every share is refused.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use binary_sv2::{B032Owned, Seq064KOwned, U256Owned};
use common_messages_sv2::{Protocol, SetupConnectionOwned};
use extensions_sv2::RequestExtensionsOwned;
use hashpool_sv2_io::{
    decode_frame, encode_with_tlvs, extension_frame, spawn_reader, str0255, text, Backoff,
    IncomingFrames,
};
use mining_sv2::{
    CloseChannelOwned, NewExtendedMiningJobOwned, OpenExtendedMiningChannelOwned,
    SubmitSharesExtendedOwned, UpdateChannelOwned,
};
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned, MiningOwned,
};
use stratum_apps::network_helpers::{connect_with_noise, noise_stream::NoiseTcpWriteHalf};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::TranslatorRunConfig;

/// Bytes of an aggregated channel's extranonce each SV1 connection owns (its index).
pub const MINER_EXTRANONCE_BYTES: usize = 4;
/// What the SV1 miner rolls itself.
pub const MIN_EXTRANONCE2_BYTES: usize = 4;

/// The job SV1 miners work on.
#[derive(Debug, Clone)]
pub struct ActiveJob {
    pub job_id: u32,
    pub version: u32,
    pub coinbase_prefix: Vec<u8>,
    pub coinbase_suffix: Vec<u8>,
    pub merkle_path: Vec<[u8; 32]>,
    pub prev_hash: [u8; 32],
    pub nbits: u32,
    pub ntime: u32,
    /// A new tip: older jobs are stale.
    pub clean: bool,
    /// The channel's target when the job became active (little-endian). The pool judges the
    /// job's shares by it, whatever SetTarget says later; shares that meet it go to the pool.
    pub channel_target: [u8; 32],
}

/// The channel and its current job, as the downstream side needs them.
#[derive(Debug, Clone)]
pub struct UpstreamWork {
    /// Which opening of a channel this is (unique in the process): a miner's jobs from an
    /// earlier opening are stale even if the pool reuses channel ids and prefixes.
    pub opening: u64,
    pub channel_id: u32,
    pub extranonce_prefix: Vec<u8>,
    pub extranonce_size: usize,
    /// The channel's target (little-endian): shares that meet it go to the pool.
    pub target: [u8; 32],
    /// Shared by every miner (each owns a 4-byte slice of the extranonce), or this miner's own.
    pub aggregated: bool,
    pub job: Option<ActiveJob>,
}

pub type UpstreamState = watch::Sender<Option<Arc<UpstreamWork>>>;

/// What the SV1 side asks of the upstream.
#[derive(Debug)]
pub enum Command {
    Share(ShareToPool),
    /// Channel-per-miner mode: open (and after a reconnect, reopen) a channel for this miner;
    /// its work is published on `work`.
    Open {
        miner: u32,
        hashrate: f32,
        work: UpstreamState,
    },
    /// Channel-per-miner mode: the miner's vardiff estimate, sent to the pool as UpdateChannel.
    Hashrate {
        miner: u32,
        hashrate: f32,
    },
    /// The miner disconnected: its channel is closed.
    Close {
        miner: u32,
    },
}

/// A channel the translator keeps open whenever a pool is connected: the aggregated one, or
/// one per subscribed miner (keyed by the miner's index, also the open request's id).
struct Slot {
    user_identity: String,
    hashrate: f32,
    work: UpstreamState,
}

type Slots = BTreeMap<u32, Slot>;

fn apply_offline(slots: &mut Slots, config: &TranslatorRunConfig, command: Command) {
    match command {
        Command::Share(s) => {
            let _ = s
                .verdict
                .send(Err(NotAccepted::Unjudged("the pool is unreachable")));
        }
        Command::Open {
            miner,
            hashrate,
            work,
        } => {
            slots.insert(
                miner,
                Slot {
                    user_identity: format!("{}.{miner}", config.user_identity),
                    hashrate,
                    work,
                },
            );
        }
        Command::Hashrate { miner, hashrate } => {
            if let Some(slot) = slots.get_mut(&miner) {
                slot.hashrate = hashrate;
            }
        }
        Command::Close { miner } => {
            slots.remove(&miner);
        }
    }
}

/// Why a forwarded share was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAccepted {
    /// The pool refused it (`SubmitSharesError`), with the pool's error code.
    #[error("refused by the pool: {0}")]
    Refused(String),
    /// No pool judged it: the connection, the channel or the miner went first (or it could
    /// not be sent at all).
    #[error("{0}")]
    Unjudged(&'static str),
}

/// A share on its way to the pool, with where its verdict goes.
#[derive(Debug)]
pub struct ShareToPool {
    pub channel_id: u32,
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
    /// The part of the extranonce after the channel's prefix.
    pub extranonce: Vec<u8>,
    pub verdict: oneshot::Sender<Result<(), NotAccepted>>,
}

/// `max_target`: the easiest target the translator's floor allows; every channel is opened
/// and updated with it, so the pool never sets one easier.
pub async fn run(
    config: TranslatorRunConfig,
    aggregated: Option<UpstreamState>,
    mut commands: mpsc::Receiver<Command>,
    max_target: [u8; 32],
    stats: Arc<crate::TranslatorStats>,
    shutdown: CancellationToken,
) {
    let mut slots = Slots::new();
    if let Some(work) = aggregated {
        slots.insert(
            AGGREGATED_SLOT,
            Slot {
                user_identity: config.user_identity.clone(),
                hashrate: config.nominal_hashrate,
                work,
            },
        );
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut index = 0;
    loop {
        let endpoint = config.upstreams[index % config.upstreams.len()];
        let mut established = false;
        let result = tokio::select! {
            r = session(&config, endpoint, max_target, &mut slots, &mut commands, &stats, &mut established) => r,
            _ = shutdown.cancelled() => return,
        };
        stats.pool_connected.store(0, Ordering::Relaxed);
        for slot in slots.values() {
            slot.work.send_replace(None);
        }
        warn!(pool = %endpoint.address, "pool connection lost: {result:?}");
        if established {
            // Back to the preferred pool first.
            backoff.reset();
            index = 0;
        } else {
            index += 1;
        }
        // A full round of pools without a channel: wait before the next round.
        let delay = if established || index % config.upstreams.len() == 0 {
            backoff.next_delay()
        } else {
            Duration::ZERO
        };
        // Shares that arrive while no pool is there are refused honestly.
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                c = commands.recv() => match c {
                    Some(c) => apply_offline(&mut slots, &config, c),
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The aggregated channel's slot (miner indexes start at 1).
const AGGREGATED_SLOT: u32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("noise handshake: {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("the pool closed the connection")]
    Closed,
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("send: {0}")]
    Send(#[from] hashpool_sv2_io::SendError),
    #[error("refused: {0}")]
    Refused(String),
}

async fn next(frames: &mut IncomingFrames) -> Result<codec_sv2::SerializedFrame, UpstreamError> {
    match frames.recv().await {
        Some(Ok(f)) => Ok(f),
        _ => Err(UpstreamError::Closed),
    }
}

async fn send_frame(
    writer: &mut NoiseTcpWriteHalf,
    frame: codec_sv2::SerializedFrame,
) -> Result<(), UpstreamError> {
    Ok(hashpool_sv2_io::send_frame(writer, frame).await?)
}

type Verdict = oneshot::Sender<Result<(), NotAccepted>>;

static OPENINGS: AtomicU64 = AtomicU64::new(1);

struct Channel {
    opening: u64,
    id: u32,
    slot: u32,
    aggregated: bool,
    extranonce_prefix: Vec<u8>,
    extranonce_size: usize,
    target: [u8; 32],
    future_jobs: HashMap<u32, NewExtendedMiningJobOwned>,
    tip: Option<([u8; 32], u32, u32)>,
    active: Option<ActiveJob>,
    sequence: u32,
    /// Forwarded shares by sequence number, waiting for the pool's verdict.
    pending: BTreeMap<u32, Verdict>,
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

    fn fail_pending(&mut self, reason: &'static str) {
        for (_, v) in std::mem::take(&mut self.pending) {
            let _ = v.send(Err(NotAccepted::Unjudged(reason)));
        }
    }
}

fn open_message(slot_id: u32, slot: &Slot, aggregated: bool, max_target: [u8; 32]) -> MiningOwned {
    let miner_bytes = if aggregated {
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

/// Sends an open request, with the wallet's locking key when the pool took the extension.
async fn open_channel(
    writer: &mut NoiseTcpWriteHalf,
    open: MiningOwned,
    locking_key: Option<ext_mint_quote::LockingKey>,
) -> Result<(), UpstreamError> {
    match locking_key {
        Some(key) => {
            let frame = encode_with_tlvs(open, &[ext_mint_quote::locking_key_tlv(&key)])?;
            send_frame(writer, frame).await
        }
        None => Ok(hashpool_sv2_io::send(writer, open).await?),
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    config: &TranslatorRunConfig,
    endpoint: crate::UpstreamEndpoint,
    max_target: [u8; 32],
    slots: &mut Slots,
    commands: &mut mpsc::Receiver<Command>,
    stats: &crate::TranslatorStats,
    established: &mut bool,
) -> Result<(), UpstreamError> {
    let stream = TcpStream::connect(endpoint.address)
        .await
        .map_err(UpstreamError::Connect)?;
    stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
    let noise = connect_with_noise(stream, Some(endpoint.authority_public_key))
        .await
        .map_err(UpstreamError::Noise)?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 4096);
    hashpool_sv2_io::send(
        &mut writer,
        CommonMessagesOwned::SetupConnection(SetupConnectionOwned {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: str0255(&endpoint.address.ip().to_string()),
            endpoint_port: endpoint.address.port(),
            vendor: str0255("hashpool"),
            hardware_version: str0255("translator"),
            firmware: str0255(env!("CARGO_PKG_VERSION")),
            device_id: str0255(&config.user_identity),
        }),
    )
    .await?;
    match decode_frame(&mut next(&mut frames).await?, &[])?.1 {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {
            stats.pool_connected.store(1, Ordering::Relaxed);
            crate::TranslatorStats::add(&stats.pool_connections);
        }
        other => return Err(UpstreamError::Refused(format!("setup: {other}"))),
    }
    let mut with_tlv = false;
    if config.locking_key.is_some() {
        hashpool_sv2_io::send(
            &mut writer,
            ExtensionsOwned::ExtensionsNegotiation(ExtensionsNegotiationOwned::RequestExtensions(
                RequestExtensionsOwned {
                    request_id: 1,
                    requested_extensions: Seq064KOwned::new(vec![ext_mint_quote::EXTENSION_TYPE])
                        .expect("one extension"),
                },
            )),
        )
        .await?;
        match decode_frame(&mut next(&mut frames).await?, &[])?.1 {
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsSuccess(_),
            )) => with_tlv = true,
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsError(_),
            )) => warn!("the pool does not offer the mint-quote extension: mining without ehash"),
            other => return Err(UpstreamError::Refused(format!("extensions: {other}"))),
        }
    }
    let locking_key = config.locking_key.filter(|_| with_tlv);
    let aggregated = config.channel_mode == crate::ChannelMode::Aggregated;
    for (id, slot) in slots.iter() {
        open_channel(
            &mut writer,
            open_message(*id, slot, aggregated, max_target),
            locking_key,
        )
        .await?;
    }
    // The pool connection counts as established once a channel opens on it, or, in
    // channel-per-miner mode with no miner yet, once it has set up.
    *established = !aggregated && slots.is_empty();

    let mut channels: HashMap<u32, Channel> = HashMap::new();
    let mut by_slot: HashMap<u32, u32> = HashMap::new();
    let mut group_channel_id = None;
    let result = loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => break Err(UpstreamError::Closed),
                };
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension(config, &ext);
                    continue;
                }
                let message = match decode_frame(&mut frame, &[]) {
                    Ok(m) => m.1,
                    Err(e) => break Err(e.into()),
                };
                let AnyMessageOwned::Mining(m) = message else { continue };
                match m {
                    MiningOwned::OpenExtendedMiningChannelSuccess(s) => {
                        if !slots.contains_key(&s.request_id) || by_slot.contains_key(&s.request_id) {
                            // The miner left while its channel was being opened.
                            let close = MiningOwned::CloseChannel(CloseChannelOwned {
                                channel_id: s.channel_id,
                                reason_code: str0255("miner disconnected"),
                            });
                            if let Err(e) = hashpool_sv2_io::send(&mut writer, close).await {
                                break Err(e.into());
                            }
                            continue;
                        }
                        info!(pool = %endpoint.address, channel_id = s.channel_id, extranonce_size = s.extranonce_size, "extended channel open");
                        *established = true;
                        group_channel_id = Some(s.group_channel_id);
                        let c = Channel {
                            opening: OPENINGS.fetch_add(1, Ordering::Relaxed),
                            id: s.channel_id,
                            slot: s.request_id,
                            aggregated,
                            extranonce_prefix: s.extranonce_prefix.as_bytes().to_vec(),
                            extranonce_size: s.extranonce_size as usize,
                            target: s.target.to_array(),
                            future_jobs: HashMap::new(),
                            tip: None,
                            active: None,
                            sequence: 0,
                            pending: BTreeMap::new(),
                        };
                        c.publish(slots);
                        by_slot.insert(s.request_id, s.channel_id);
                        channels.insert(s.channel_id, c);
                    }
                    MiningOwned::OpenMiningChannelError(e) => {
                        let reason = text(&e.error_code);
                        // No channel works on this pool: the next one may take them all.
                        if aggregated || channels.is_empty() {
                            break Err(UpstreamError::Refused(format!("channel: {reason}")));
                        }
                        // Others work: this miner is disconnected (its work sender dropped)
                        // and asks again when it reconnects, rather than idling without work.
                        warn!(miner = e.request_id, "the pool refused the miner's channel: {reason}; disconnecting the miner");
                        slots.remove(&e.request_id);
                    }
                    MiningOwned::NewExtendedMiningJob(job) => {
                        for c in addressed(&mut channels, group_channel_id, job.channel_id) {
                            c.on_job(&job, slots);
                        }
                    }
                    MiningOwned::SetNewPrevHash(p) => {
                        for c in addressed(&mut channels, group_channel_id, p.channel_id) {
                            c.on_prev_hash(&p, slots);
                        }
                    }
                    MiningOwned::SetTarget(t) => {
                        for c in addressed(&mut channels, group_channel_id, t.channel_id) {
                            c.target = t.maximum_target.to_array();
                            c.publish(slots);
                        }
                    }
                    MiningOwned::SubmitSharesSuccess(s) => {
                        if let Some(c) = channels.get_mut(&s.channel_id) {
                            let rest = c.pending.split_off(&s.last_sequence_number.wrapping_add(1));
                            for (_, v) in std::mem::replace(&mut c.pending, rest) {
                                let _ = v.send(Ok(()));
                            }
                        }
                    }
                    MiningOwned::SubmitSharesError(e) => {
                        if let Some(v) = channels
                            .get_mut(&e.channel_id)
                            .and_then(|c| c.pending.remove(&e.sequence_number))
                        {
                            let _ = v.send(Err(NotAccepted::Refused(text(&e.error_code))));
                        }
                    }
                    MiningOwned::CloseChannel(m) => {
                        if let Some(mut c) = channels.remove(&m.channel_id) {
                            warn!(channel_id = m.channel_id, reason = %text(&m.reason_code), "the pool closed a channel");
                            by_slot.remove(&c.slot);
                            c.fail_pending("the pool closed the channel");
                            if aggregated {
                                break Err(UpstreamError::Refused("the pool closed the channel".into()));
                            }
                            // The miner is disconnected (its work sender dropped) and gets a new
                            // channel when it reconnects, rather than idling without work.
                            slots.remove(&c.slot);
                        }
                    }
                    MiningOwned::UpdateChannelError(e) => {
                        debug!(channel_id = e.channel_id, "hashrate update refused: {}", text(&e.error_code));
                    }
                    other => debug!("ignored from the pool: {other:?}"),
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break Ok(()) };
                let sent = on_command(command, &mut writer, slots, &mut channels, &mut by_slot, config, locking_key, aggregated, max_target).await;
                if let Err(e) = sent {
                    break Err(e);
                }
            }
        }
    };
    for c in channels.values_mut() {
        c.fail_pending("the pool connection dropped");
    }
    result
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

#[allow(clippy::too_many_arguments)]
async fn on_command(
    command: Command,
    writer: &mut NoiseTcpWriteHalf,
    slots: &mut Slots,
    channels: &mut HashMap<u32, Channel>,
    by_slot: &mut HashMap<u32, u32>,
    config: &TranslatorRunConfig,
    locking_key: Option<ext_mint_quote::LockingKey>,
    aggregated: bool,
    max_target: [u8; 32],
) -> Result<(), UpstreamError> {
    match command {
        Command::Share(share) => {
            let Some(c) = channels.get_mut(&share.channel_id) else {
                let _ = share.verdict.send(Err(NotAccepted::Unjudged(
                    "the miner's channel is not open",
                )));
                return Ok(());
            };
            let Ok(extranonce) = B032Owned::new(share.extranonce) else {
                let _ = share
                    .verdict
                    .send(Err(NotAccepted::Unjudged("extranonce too long")));
                return Ok(());
            };
            c.sequence = c.sequence.wrapping_add(1);
            c.pending.insert(c.sequence, share.verdict);
            let submit = MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
                channel_id: c.id,
                sequence_number: c.sequence,
                job_id: share.job_id,
                nonce: share.nonce,
                ntime: share.ntime,
                version: share.version,
                extranonce,
            });
            hashpool_sv2_io::send(writer, submit).await?;
        }
        Command::Open {
            miner,
            hashrate,
            work,
        } => {
            apply_offline(
                slots,
                config,
                Command::Open {
                    miner,
                    hashrate,
                    work,
                },
            );
            if let Some(slot) = slots.get(&miner) {
                let open = open_message(miner, slot, aggregated, max_target);
                open_channel(writer, open, locking_key).await?;
            }
        }
        Command::Hashrate { miner, hashrate } => {
            apply_offline(slots, config, Command::Hashrate { miner, hashrate });
            if let Some(&channel_id) = by_slot.get(&miner) {
                let update = MiningOwned::UpdateChannel(UpdateChannelOwned {
                    channel_id,
                    nominal_hash_rate: hashrate,
                    maximum_target: U256Owned::from(max_target),
                });
                hashpool_sv2_io::send(writer, update).await?;
            }
        }
        Command::Close { miner } => {
            slots.remove(&miner);
            if let Some(channel_id) = by_slot.remove(&miner) {
                if let Some(mut c) = channels.remove(&channel_id) {
                    c.fail_pending("the miner disconnected");
                }
                let close = MiningOwned::CloseChannel(CloseChannelOwned {
                    channel_id,
                    reason_code: str0255("miner disconnected"),
                });
                hashpool_sv2_io::send(writer, close).await?;
            }
        }
    }
    Ok(())
}

/// Quote announcements go to the wallet; anything else from an extension is only logged.
fn on_extension(config: &TranslatorRunConfig, ext: &hashpool_sv2_io::ExtensionFrame) {
    let announced =
        hashpool_wallet::announced_quote(ext.extension_type, ext.message_type, &ext.payload);
    if let (Some((quote, _)), Some(minter)) = (announced, &config.minter) {
        minter.announce(quote);
    }
}
