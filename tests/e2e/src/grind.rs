//! A miner that grinds real proof of work in the test itself, on a standard channel of a raw SV2
//! connection: for attacks that need shares of a chosen quality (blocks on a channel whose
//! target is harder than the network's).

use std::{net::SocketAddr, ops::Range, time::Duration};

use anyhow::{bail, ensure, Context};
use binary_sv2::U256Owned;
use bitcoin::{
    hashes::{sha256d, Hash},
    CompactTarget, Target,
};
use common_messages_sv2::Protocol;
use mining_sv2::{
    NewMiningJobOwned, OpenStandardMiningChannelOwned, SetNewPrevHashOwned,
    SubmitSharesStandardOwned,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

use crate::raw_client::{setup_connection, RawClient};

/// The network target of `nbits`.
pub fn network_target(nbits: u32) -> Target {
    Target::from_compact(CompactTarget::from_consensus(nbits))
}

/// A target as SV2 carries it (little-endian U256).
pub fn target_of(value: &U256Owned) -> Target {
    Target::from_le_bytes(value.to_array())
}

/// The hardest target there is: 1.
pub fn max_target_one() -> [u8; 32] {
    let mut t = [0u8; 32];
    t[0] = 1;
    t
}

/// The work of one standard channel: its jobs, current tip and target.
pub struct ChannelWork {
    pub channel_id: u32,
    pub jobs: Vec<NewMiningJobOwned>,
    pub tip: Option<SetNewPrevHashOwned>,
    pub target: Target,
}

impl ChannelWork {
    pub fn new(channel_id: u32, target: Target) -> Self {
        Self {
            channel_id,
            jobs: Vec::new(),
            tip: None,
            target,
        }
    }

    /// Takes in what the pool sent for this channel (others' messages are ignored).
    pub fn on(&mut self, m: &AnyMessageOwned) {
        match m {
            AnyMessageOwned::Mining(MiningOwned::NewMiningJob(j))
                if j.channel_id == self.channel_id =>
            {
                self.jobs.push(j.clone())
            }
            AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(p))
                if p.channel_id == self.channel_id =>
            {
                self.tip = Some(p.clone());
            }
            AnyMessageOwned::Mining(MiningOwned::SetTarget(t))
                if t.channel_id == self.channel_id =>
            {
                self.target = target_of(&t.maximum_target);
            }
            _ => {}
        }
    }

    /// The job active under the current tip: the one the tip names, or a later non-future one.
    pub fn active(&self) -> Option<(&NewMiningJobOwned, &SetNewPrevHashOwned)> {
        let tip = self.tip.as_ref()?;
        let job = self.jobs.iter().rev().find(|j| {
            j.job_id == tip.job_id || (j.job_id > tip.job_id && j.min_ntime.as_ref().is_some())
        })?;
        Some((job, tip))
    }
}

/// The 80-byte header of a standard job under `tip` with `nonce`.
pub fn header(job: &NewMiningJobOwned, tip: &SetNewPrevHashOwned, nonce: u32) -> [u8; 80] {
    let mut h = [0u8; 80];
    h[0..4].copy_from_slice(&job.version.to_le_bytes());
    h[4..36].copy_from_slice(&tip.prev_hash.to_array());
    h[36..68].copy_from_slice(&job.merkle_root.to_array());
    h[68..72].copy_from_slice(&tip.min_ntime.to_le_bytes());
    h[72..76].copy_from_slice(&tip.nbits.to_le_bytes());
    h[76..80].copy_from_slice(&nonce.to_le_bytes());
    h
}

/// A header's hash as a number comparable with targets.
pub fn hash_value(h: &[u8; 80]) -> Target {
    Target::from_le_bytes(sha256d::Hash::hash(h).to_byte_array())
}

/// The first nonce in `nonces` whose header meets `target` (blocking: run it off the runtime).
pub fn grind(
    job: &NewMiningJobOwned,
    tip: &SetNewPrevHashOwned,
    nonces: Range<u32>,
    target: Target,
) -> Option<u32> {
    let mut h = header(job, tip, 0);
    nonces.into_iter().find(|n| {
        h[76..80].copy_from_slice(&n.to_le_bytes());
        hash_value(&h) <= target
    })
}

/// A standard share of `job` under `tip`.
pub fn share(
    channel_id: u32,
    seq: u32,
    job: &NewMiningJobOwned,
    tip: &SetNewPrevHashOwned,
    nonce: u32,
) -> MiningOwned {
    MiningOwned::SubmitSharesStandard(SubmitSharesStandardOwned {
        channel_id,
        sequence_number: seq,
        job_id: job.job_id,
        nonce,
        ntime: tip.min_ntime,
        version: job.version,
    })
}

/// SetupConnection for mining; fails unless the pool answers Success.
pub async fn setup(c: &mut RawClient, wait: Duration) -> anyhow::Result<()> {
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::MiningProtocol,
    )))
    .await?;
    match c.recv(wait).await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => Ok(()),
        other => bail!("expected SetupConnection.Success, got {other}"),
    }
}

/// Opens a standard channel; returns the pool's answer (Success or Error) as a message.
pub async fn open_standard(
    c: &mut RawClient,
    request_id: u32,
    user: &str,
    hashrate: f32,
    max_target: [u8; 32],
    wait: Duration,
) -> anyhow::Result<MiningOwned> {
    c.send(MiningOwned::OpenStandardMiningChannel(
        OpenStandardMiningChannelOwned {
            request_id,
            user_identity: hashpool_sv2_io::str0255(user),
            nominal_hash_rate: hashrate,
            max_target: U256Owned::from(max_target),
        },
    ))
    .await?;
    c.recv_until(wait, |m| match m {
        AnyMessageOwned::Mining(
            m @ (MiningOwned::OpenStandardMiningChannelSuccess(_)
            | MiningOwned::OpenMiningChannelError(_)),
        ) => Some(m.clone()),
        _ => None,
    })
    .await
}

/// Nonces searched between two looks at the connection (new tips, targets).
const CHUNK: u32 = 200_000;

/// One block share the pool accepted.
#[derive(Debug, Clone, Copy)]
pub struct BlockShare {
    /// The share's hash: it meets the network target.
    pub hash: Target,
    /// The channel's target when it was sent.
    pub channel_target: Target,
}

/// What the pool said about one share.
enum Verdict {
    Accepted,
    /// Stale after a new block (honest): search the new job.
    Stale,
}

/// An attacker with one standard channel that claims an absurd hashrate with `max_target` 1,
/// so its target is far harder than the network's and every share it can find is a block.
pub struct BlockAttacker {
    client: RawClient,
    work: ChannelWork,
    seq: u32,
    /// Where the search goes on: (job id, tip time, prev hash, next nonce), so no share is
    /// sent twice.
    from: (u32, u32, [u8; 32], u32),
    /// Block shares refused as stale (an honest race with another block).
    pub stale: u32,
}

impl BlockAttacker {
    /// Connects (Noise, pinned to `authority`), sets up and opens the channel for `user`.
    pub async fn connect(
        pool: SocketAddr,
        authority: stratum_apps::key_utils::Secp256k1PublicKey,
        user: &str,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        let mut client = RawClient::connect(pool, Some(authority)).await?;
        setup(&mut client, wait).await?;
        let opened = match open_standard(&mut client, 1, user, 1e30, max_target_one(), wait).await?
        {
            MiningOwned::OpenStandardMiningChannelSuccess(s) => s,
            other => bail!("the attack channel was refused: {other:?}"),
        };
        Ok(Self {
            client,
            work: ChannelWork::new(opened.channel_id, target_of(&opened.target)),
            seq: 0,
            from: (u32::MAX, 0, [0; 32], 0),
            stale: 0,
        })
    }

    pub fn channel_id(&self) -> u32 {
        self.work.channel_id
    }

    /// The channel's current target.
    pub fn target(&self) -> Target {
        self.work.target
    }

    /// Reads what the pool sent so far without waiting.
    async fn drain(&mut self) -> anyhow::Result<()> {
        loop {
            match tokio::time::timeout(Duration::ZERO, self.client.recv(Duration::from_secs(3600)))
                .await
            {
                Err(_) => return Ok(()),
                Ok(Ok(m)) => self.work.on(&m),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Grinds until the pool accepts one share that meets `network` (a block); shares made
    /// stale by someone else's block are honest and the search goes on on the new job. Fails
    /// if the channel's target ever becomes easier than `network` (the attack needs it harder)
    /// or nothing is accepted within `timeout`.
    pub async fn block_share(
        &mut self,
        network: Target,
        timeout: Duration,
    ) -> anyhow::Result<BlockShare> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no block share accepted within {timeout:?} ({} stale)",
                self.stale
            );
            self.drain().await?;
            let Some((job, tip)) = self.work.active().map(|(j, t)| (j.clone(), t.clone())) else {
                // No work yet: wait for the next message instead of spinning.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let m = self.client.recv(left).await.context("waiting for work")?;
                self.work.on(&m);
                continue;
            };
            let here = (job.job_id, tip.min_ntime, tip.prev_hash.to_array());
            let start = if (self.from.0, self.from.1, self.from.2) == here {
                self.from.3
            } else {
                0
            };
            ensure!(start < u32::MAX - CHUNK, "nonce space of one job exhausted");
            let range = start..start + CHUNK;
            let found = {
                let (job, tip) = (job.clone(), tip.clone());
                tokio::task::spawn_blocking(move || grind(&job, &tip, range, network)).await?
            };
            let Some(nonce) = found else {
                self.from = (here.0, here.1, here.2, start + CHUNK);
                continue;
            };
            self.from = (here.0, here.1, here.2, nonce + 1);
            // A new tip while grinding makes this share stale: look before sending.
            self.drain().await?;
            let same_work = self
                .work
                .active()
                .is_some_and(|(j, t)| (j.job_id, t.min_ntime, t.prev_hash.to_array()) == here);
            if !same_work {
                continue;
            }
            let channel_target = self.work.target;
            ensure!(
                channel_target < network,
                "the attack channel's target is no longer harder than the network's"
            );
            let hash = hash_value(&header(&job, &tip, nonce));
            match self.submit(&job, &tip, nonce, deadline).await? {
                Verdict::Accepted => {
                    return Ok(BlockShare {
                        hash,
                        channel_target,
                    })
                }
                Verdict::Stale => self.stale += 1,
            }
        }
    }

    async fn submit(
        &mut self,
        job: &NewMiningJobOwned,
        tip: &SetNewPrevHashOwned,
        nonce: u32,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Verdict> {
        self.seq += 1;
        let channel_id = self.work.channel_id;
        self.client
            .send(share(channel_id, self.seq, job, tip, nonce))
            .await?;
        let work = &mut self.work;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let verdict = self
            .client
            .recv_until(left.max(Duration::from_secs(30)), |m| {
                work.on(m);
                match m {
                    AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s))
                        if s.channel_id == channel_id =>
                    {
                        Some(Ok(()))
                    }
                    AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e))
                        if e.channel_id == channel_id =>
                    {
                        Some(Err(hashpool_sv2_io::text(&e.error_code)))
                    }
                    _ => None,
                }
            })
            .await
            .context("waiting for the verdict on a block share")?;
        match verdict {
            Ok(()) => Ok(Verdict::Accepted),
            // A new block made the job stale before the share arrived: honest, try again.
            Err(code) if code == "stale-share" || code == "invalid-job-id" => Ok(Verdict::Stale),
            Err(code) => bail!("a block share was refused with {code}"),
        }
    }
}
