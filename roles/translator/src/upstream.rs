//! The translator's SV2 side: one Noise connection to the pool (its key pinned) with one
//! extended channel for every SV1 miner behind it. It turns the pool's jobs into the work SV1
//! miners see, forwards their shares with sequence numbers, and answers each share only with
//! the pool's verdict. It reconnects with back-off; meanwhile miners stay connected with no work.

use std::{collections::HashMap, sync::Arc, time::Duration};

use binary_sv2::{B032Owned, Seq064KOwned, U256Owned};
use common_messages_sv2::{Protocol, SetupConnectionOwned};
use extensions_sv2::RequestExtensionsOwned;
use hashpool_sv2_io::{
    decode_frame, encode_with_tlvs, extension_frame, spawn_reader, str0255, text, Backoff,
    IncomingFrames,
};
use mining_sv2::{
    NewExtendedMiningJobOwned, OpenExtendedMiningChannelOwned, SubmitSharesExtendedOwned,
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

/// Bytes of the channel's extranonce each SV1 connection owns (its index).
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
}

/// The channel and its current job, as the downstream side needs them.
#[derive(Debug, Clone)]
pub struct UpstreamWork {
    pub channel_id: u32,
    pub extranonce_prefix: Vec<u8>,
    pub extranonce_size: usize,
    /// The channel's target (little-endian), the difficulty SV1 miners get.
    pub target: [u8; 32],
    pub job: Option<ActiveJob>,
}

pub type UpstreamState = watch::Sender<Option<Arc<UpstreamWork>>>;

/// A share on its way to the pool, with where its verdict goes.
#[derive(Debug)]
pub struct ShareToPool {
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
    /// The part of the extranonce after the channel's prefix.
    pub extranonce: Vec<u8>,
    pub verdict: oneshot::Sender<Result<(), String>>,
}

pub async fn run(
    config: TranslatorRunConfig,
    work: UpstreamState,
    mut shares: mpsc::Receiver<ShareToPool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut index = 0;
    loop {
        let endpoint = config.upstreams[index % config.upstreams.len()];
        let mut established = false;
        let result = tokio::select! {
            r = session(&config, endpoint, &work, &mut shares, &mut established) => r,
            _ = shutdown.cancelled() => return,
        };
        work.send_replace(None);
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
                s = shares.recv() => match s {
                    Some(s) => { let _ = s.verdict.send(Err("the pool is unreachable".into())); }
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

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

struct Channel {
    id: u32,
    extranonce_prefix: Vec<u8>,
    extranonce_size: usize,
    target: [u8; 32],
    future_jobs: HashMap<u32, NewExtendedMiningJobOwned>,
    tip: Option<([u8; 32], u32, u32)>,
    active: Option<ActiveJob>,
}

impl Channel {
    fn publish(&self, work: &UpstreamState) {
        work.send_replace(Some(Arc::new(UpstreamWork {
            channel_id: self.id,
            extranonce_prefix: self.extranonce_prefix.clone(),
            extranonce_size: self.extranonce_size,
            target: self.target,
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
        });
    }
}

async fn session(
    config: &TranslatorRunConfig,
    endpoint: crate::UpstreamEndpoint,
    work: &UpstreamState,
    shares: &mut mpsc::Receiver<ShareToPool>,
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
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {}
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
    let open = OpenExtendedMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(&config.user_identity),
        nominal_hash_rate: config.nominal_hashrate,
        max_target: U256Owned::from([0xff; 32]),
        min_extranonce_size: (MINER_EXTRANONCE_BYTES + MIN_EXTRANONCE2_BYTES) as u16,
    };
    let open = MiningOwned::OpenExtendedMiningChannel(open);
    match config.locking_key.filter(|_| with_tlv) {
        Some(key) => {
            let frame = encode_with_tlvs(open, &[ext_mint_quote::locking_key_tlv(&key)])?;
            send_frame(&mut writer, frame).await?
        }
        None => hashpool_sv2_io::send(&mut writer, open).await?,
    }

    let mut channel: Option<Channel> = None;
    let mut sequence = 0u32;
    let mut pending: std::collections::BTreeMap<u32, oneshot::Sender<Result<(), String>>> =
        Default::default();
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => {
                        for (_, v) in std::mem::take(&mut pending) {
                            let _ = v.send(Err("the pool connection dropped".into()));
                        }
                        return Err(UpstreamError::Closed);
                    }
                };
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension(config, &ext);
                    continue;
                }
                let message = decode_frame(&mut frame, &[])?.1;
                let AnyMessageOwned::Mining(m) = message else { continue };
                match m {
                    MiningOwned::OpenExtendedMiningChannelSuccess(s) => {
                        info!(pool = %endpoint.address, channel_id = s.channel_id, extranonce_size = s.extranonce_size, "extended channel open");
                        *established = true;
                        let c = Channel {
                            id: s.channel_id,
                            extranonce_prefix: s.extranonce_prefix.as_bytes().to_vec(),
                            extranonce_size: s.extranonce_size as usize,
                            target: s.target.to_array(),
                            future_jobs: HashMap::new(),
                            tip: None,
                            active: None,
                        };
                        c.publish(work);
                        channel = Some(c);
                    }
                    MiningOwned::OpenMiningChannelError(e) => {
                        return Err(UpstreamError::Refused(format!("channel: {}", text(&e.error_code))));
                    }
                    MiningOwned::NewExtendedMiningJob(job) => {
                        let Some(c) = channel.as_mut() else { continue };
                        if job.min_ntime.clone().into_inner().is_some() {
                            c.activate(&job, false);
                            c.publish(work);
                        } else {
                            c.future_jobs.insert(job.job_id, job);
                        }
                    }
                    MiningOwned::SetNewPrevHash(p) => {
                        let Some(c) = channel.as_mut() else { continue };
                        c.tip = Some((p.prev_hash.to_array(), p.min_ntime, p.nbits));
                        if let Some(job) = c.future_jobs.remove(&p.job_id) {
                            c.future_jobs.clear();
                            c.activate(&job, true);
                            c.publish(work);
                        }
                    }
                    MiningOwned::SetTarget(t) => {
                        let Some(c) = channel.as_mut() else { continue };
                        c.target = t.maximum_target.to_array();
                        c.publish(work);
                    }
                    MiningOwned::SubmitSharesSuccess(s) => {
                        let rest = pending.split_off(&s.last_sequence_number.wrapping_add(1));
                        for (_, v) in std::mem::replace(&mut pending, rest) {
                            let _ = v.send(Ok(()));
                        }
                    }
                    MiningOwned::SubmitSharesError(e) => {
                        if let Some(v) = pending.remove(&e.sequence_number) {
                            let _ = v.send(Err(text(&e.error_code)));
                        }
                    }
                    other => debug!("ignored from the pool: {other:?}"),
                }
            }
            share = shares.recv() => {
                let Some(share) = share else { return Ok(()) };
                let Some(c) = channel.as_ref() else {
                    let _ = share.verdict.send(Err("no channel with the pool yet".into()));
                    continue;
                };
                sequence = sequence.wrapping_add(1);
                let Ok(extranonce) = B032Owned::new(share.extranonce) else {
                    let _ = share.verdict.send(Err("extranonce too long".into()));
                    continue;
                };
                pending.insert(sequence, share.verdict);
                let submit = MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
                    channel_id: c.id,
                    sequence_number: sequence,
                    job_id: share.job_id,
                    nonce: share.nonce,
                    ntime: share.ntime,
                    version: share.version,
                    extranonce,
                });
                hashpool_sv2_io::send(&mut writer, submit).await?;
            }
        }
    }
}

/// Quote announcements go to the wallet; anything else from an extension is only logged.
fn on_extension(config: &TranslatorRunConfig, ext: &hashpool_sv2_io::ExtensionFrame) {
    if ext.extension_type != ext_mint_quote::EXTENSION_TYPE {
        debug!(
            extension = ext.extension_type,
            "ignoring a frame of an unknown extension"
        );
        return;
    }
    match ext_mint_quote::MintQuoteMessage::decode(ext.message_type, &ext.payload) {
        Ok(ext_mint_quote::MintQuoteMessage::Announcement(a)) => {
            let quote = text(&a.quote_id);
            debug!(%quote, amount = a.amount, "ehash quote announced");
            if let Some(minter) = &config.minter {
                minter.announce(quote);
            }
        }
        Ok(other) => warn!(
            "unexpected mint-quote message {:#04x} from the pool",
            other.message_type()
        ),
        Err(e) => warn!("undecodable mint-quote message from the pool: {e}"),
    }
}
