//! The translator's SV1 side: one task per miner connection. In aggregated mode a miner gets the
//! channel's extranonce prefix plus its own 4-byte index as extranonce1; in channel-per-miner
//! mode its channel's prefix. Each miner has its own difficulty (vardiff). Its shares are
//! rebuilt and checked against their job here (stale, duplicate, low difficulty are answered at
//! once); a share that reaches the channel's target goes to the pool and is answered with the
//! pool's verdict, and with no pool connected every share is refused. No miner is given a
//! difficulty under `Sv1Limits::min_share_difficulty`, and the shares a miner has sent on a job
//! are remembered (to refuse duplicates) up to `Sv1Limits::max_shares_per_job`.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bitcoin::Target;
use channels_sv2::{
    target::hash_rate_to_target,
    vardiff::{classic::VardiffState, Vardiff},
};
use futures::{SinkExt, StreamExt};
use hashpool_sv1::{
    difficulty_to_target, error_code, merkle_root, notify, parse_client_line, prev_hash_to_sv1,
    response_error, response_ok, set_difficulty, set_extranonce, target_to_difficulty,
    ClientRequest, Notify, ShareHeader, Submit, MAX_LINE_LEN,
};
use mining_sv2::ERROR_CODE_SUBMIT_SHARES_STALE_SHARE;
use serde_json::{json, Value};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tokio_util::{
    codec::{Framed, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};
use tracing::{debug, info};

use crate::{
    stats::{MinerCounters, TranslatorStats},
    upstream::{
        ActiveJob, Command, NotAccepted, ShareToPool, UpstreamState, UpstreamWork,
        MINER_EXTRANONCE_BYTES,
    },
    Sv1Limits, VardiffSettings,
};

/// Version bits SV1 miners may roll (BIP 320).
const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;
/// Jobs a miner may still submit to.
const RECENT_JOBS: usize = 8;
/// Initial read and write buffer of a miner connection.
const CONNECTION_BUFFER: usize = 512;
/// How long a new subscription waits for the pool's first work.
const WORK_WAIT: Duration = Duration::from_secs(10);

type Work = watch::Receiver<Option<Arc<UpstreamWork>>>;

/// What every miner connection shares.
pub struct Shared {
    /// The aggregated channel's work; `None` in channel-per-miner mode.
    pub aggregated: Option<Work>,
    pub commands: mpsc::Sender<Command>,
    pub vardiff: VardiffSettings,
    pub limits: Sv1Limits,
    pub stats: Arc<TranslatorStats>,
}

/// Targets every connection starts from.
#[derive(Clone, Copy)]
struct Targets {
    /// A new miner's, from `vardiff.initial_hashrate` (floored).
    initial: [u8; 32],
    /// The easiest any miner may have: `min_share_difficulty`'s.
    floor: [u8; 32],
}

pub async fn serve(listener: TcpListener, shared: Shared, shutdown: CancellationToken) {
    let floor = difficulty_to_target(shared.limits.min_share_difficulty);
    let initial = vardiff_target(
        shared.vardiff.initial_hashrate,
        shared.vardiff.shares_per_minute,
    )
    .map_or(floor, |t| harder(t, floor));
    let shared = Arc::new((shared, Targets { initial, floor }));
    let next_index = Arc::new(AtomicU32::new(1));
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (shared, stop) = (shared.clone(), stop.clone());
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        async move {
            let (shared, targets) = (&shared.0, shared.1);
            shared.stats.connections.fetch_add(1, Ordering::Relaxed);
            let result = connection(stream, peer, index, shared, targets, stop).await;
            shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
            if shared.aggregated.is_none() {
                let _ = shared.commands.send(Command::Close { miner: index }).await;
            }
            match result {
                Ok(()) => debug!(%peer, "SV1 miner disconnected"),
                Err(e) => info!(%peer, "SV1 miner dropped: {e}"),
            }
        }
    })
    .await
}

/// The most a miner may claim through `mining.suggest_difficulty` (1 PH/s, H/s).
const MAX_MINER_HASHRATE: f32 = 1e15;

/// Hashes in a difficulty-1 share.
const DIFFICULTY_1_HASHES: f64 = 4_294_967_296.0;

/// The little-endian target at which a miner of `hashrate` finds `shares_per_minute`.
fn vardiff_target(hashrate: f32, shares_per_minute: f32) -> Option<[u8; 32]> {
    hash_rate_to_target(hashrate as f64, shares_per_minute as f64)
        .ok()
        .map(|t| t.to_le_bytes())
}

/// The harder (lower) of two little-endian targets.
fn harder(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    if Target::from_le_bytes(a) <= Target::from_le_bytes(b) {
        a
    } else {
        b
    }
}

/// The difficulty a miner that suggested `difficulty` is given: never under `floor` (whatever
/// it sent: 1e-30, 0, negative, NaN), never over what a miner of [`MAX_MINER_HASHRATE`] would
/// need at `shares_per_minute` (a floor above that cap still wins).
fn clamp_suggestion(difficulty: f64, floor: f64, shares_per_minute: f64) -> f64 {
    let most = MAX_MINER_HASHRATE as f64 * 60.0 / shares_per_minute / DIFFICULTY_1_HASHES;
    if difficulty.is_nan() || difficulty < floor {
        floor
    } else {
        difficulty.min(most).max(floor)
    }
}

/// Why a share is refused here. Each has the stratum code miners know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("subscribe first")]
    NotSubscribed,
    #[error("worker not authorized")]
    Unauthorized,
    /// With no pool there is nobody to pay the work.
    #[error("the pool is unreachable")]
    NoPool,
    #[error("job not found (stale)")]
    Stale,
    #[error("wrong extranonce2 size")]
    Extranonce2Size,
    #[error("version rolling was not configured")]
    VersionRolling,
    #[error("duplicate share")]
    Duplicate,
    #[error("low difficulty share")]
    LowDifficulty,
    #[error("{0} shares on this job already: no more on it until the next job")]
    JobShareLimit(usize),
}

impl Refusal {
    fn code(self) -> i64 {
        match self {
            Refusal::NotSubscribed => error_code::NOT_SUBSCRIBED,
            Refusal::Unauthorized => error_code::UNAUTHORIZED,
            Refusal::Stale => error_code::JOB_NOT_FOUND,
            Refusal::Duplicate => error_code::DUPLICATE_SHARE,
            Refusal::LowDifficulty => error_code::LOW_DIFFICULTY,
            Refusal::NoPool
            | Refusal::Extranonce2Size
            | Refusal::VersionRolling
            | Refusal::JobShareLimit(_) => error_code::OTHER,
        }
    }

    /// The counter of refusals for this reason, beside the total.
    fn counter(self, stats: &TranslatorStats) -> Option<&AtomicU64> {
        match self {
            Refusal::Stale => Some(&stats.shares_refused_stale),
            Refusal::Duplicate => Some(&stats.shares_refused_duplicate),
            Refusal::LowDifficulty => Some(&stats.shares_refused_low_difficulty),
            Refusal::JobShareLimit(_) => Some(&stats.shares_refused_job_share_limit),
            _ => None,
        }
    }
}

/// The shares a miner submitted on each job it may still submit to, to refuse duplicates.
/// Bounded: a job's set never holds more than `limit` shares (further shares on that job are
/// refused, never remembered by forgetting others), and a job's set goes when the job can no
/// longer be submitted to.
struct SeenShares {
    by_job: HashMap<u32, HashSet<u128>>,
    limit: usize,
}

impl SeenShares {
    fn new(limit: usize) -> Self {
        SeenShares {
            by_job: HashMap::new(),
            limit,
        }
    }

    /// A share's identity: the low 128 bits of its header hash. The same share always hashes
    /// the same, so a duplicate is always found; two different shares sharing the bits would
    /// only get the second refused, never a duplicate accepted.
    fn key(hash: &Target) -> u128 {
        let mut low = [0u8; 16];
        low.copy_from_slice(&hash.to_le_bytes()[..16]);
        u128::from_le_bytes(low)
    }

    fn contains(&self, job: u32, key: u128) -> bool {
        self.by_job.get(&job).is_some_and(|s| s.contains(&key))
    }

    fn insert(&mut self, job: u32, key: u128) -> Result<(), Refusal> {
        let set = self.by_job.entry(job).or_default();
        if set.len() >= self.limit {
            return Err(Refusal::JobShareLimit(self.limit));
        }
        set.insert(key);
        Ok(())
    }

    fn clear(&mut self) {
        self.by_job.clear();
    }

    /// Forgets the jobs no longer listed: their shares are refused as stale before any
    /// duplicate check, and the pool never makes an old job current again.
    fn keep_jobs(&mut self, jobs: &VecDeque<(String, SentJob)>) {
        self.by_job
            .retain(|id, _| jobs.iter().any(|(_, j)| j.job.job_id == *id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_job.values().map(HashSet::len).sum()
    }
}

/// A job as this miner saw it: what its shares are checked against.
struct SentJob {
    job: ActiveJob,
    /// The miner's target when the job was sent.
    target: [u8; 32],
    channel_id: u32,
}

struct Miner {
    index: u32,
    subscribed: bool,
    authorized: Option<String>,
    version_rolling: bool,
    /// The channel opening the miner's jobs come from.
    opening: Option<u64>,
    aggregated: bool,
    extranonce_prefix: Vec<u8>,
    extranonce2_size: usize,
    target: Option<[u8; 32]>,
    jobs: VecDeque<(String, SentJob)>,
    seen: SeenShares,
    /// The easiest target it may have (`min_share_difficulty`).
    floor: [u8; 32],
    /// Vardiff's estimate of the miner's hashrate.
    hashrate: f32,
    vardiff: VardiffState,
    /// The target vardiff chose (aggregated mode; never harder than the channel's).
    vardiff_target: [u8; 32],
    /// Channel-per-miner mode: where the upstream publishes this miner's channel, handed over
    /// at subscribe.
    own_channel: Option<UpstreamState>,
    /// The miner sent `mining.extranonce.subscribe`: it follows `mining.set_extranonce`.
    extranonce_subscribed: bool,
    /// Its extranonce changed and it cannot be told: the connection is closed so that the miner
    /// reconnects and subscribes anew.
    must_reconnect: bool,
    /// Its accepted shares and work, for stats (set at authorize).
    counters: Option<Arc<MinerCounters>>,
}

impl Miner {
    fn miner_part(&self) -> Vec<u8> {
        if self.aggregated {
            self.index.to_be_bytes().to_vec()
        } else {
            Vec::new()
        }
    }

    fn extranonce1(&self) -> Vec<u8> {
        [self.extranonce_prefix.as_slice(), &self.miner_part()].concat()
    }

    fn take_extranonce(&mut self, w: &UpstreamWork) {
        self.aggregated = w.aggregated;
        self.extranonce_prefix = w.extranonce_prefix.clone();
        let miner_bytes = if w.aggregated {
            MINER_EXTRANONCE_BYTES
        } else {
            0
        };
        self.extranonce2_size = w.extranonce_size.saturating_sub(miner_bytes);
    }

    /// The miner's difficulty: its vardiff target in aggregated mode (or the channel's when that
    /// is easier, so every share at the miner's difficulty counts), its channel's otherwise;
    /// never easier than the floor, whatever the pool or vardiff say.
    fn target_for(&self, w: &UpstreamWork) -> [u8; 32] {
        let target = if w.aggregated
            && Target::from_le_bytes(self.vardiff_target) > Target::from_le_bytes(w.target)
        {
            self.vardiff_target
        } else {
            w.target
        };
        harder(target, self.floor)
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    index: u32,
    shared: &Shared,
    targets: Targets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    // Small initial buffers: they grow for long lines, and thousands of idle miners stay cheap.
    let (mut sink, mut lines) = Framed::with_capacity(
        stream,
        LinesCodec::new_with_max_length(MAX_LINE_LEN),
        CONNECTION_BUFFER,
    )
    .split();
    // Answers decided later (the pool's verdicts) come back through here.
    let (out_tx, mut out) = mpsc::unbounded_channel::<String>();
    let (own_channel, mut work) = match &shared.aggregated {
        Some(work) => (None, work.clone()),
        None => {
            let (tx, rx) = watch::channel(None);
            (Some(tx), rx)
        }
    };
    let mut m = Miner {
        index,
        subscribed: false,
        authorized: None,
        version_rolling: false,
        opening: None,
        aggregated: shared.aggregated.is_some(),
        extranonce_prefix: Vec::new(),
        extranonce2_size: 0,
        target: None,
        jobs: VecDeque::new(),
        seen: SeenShares::new(shared.limits.max_shares_per_job),
        floor: targets.floor,
        hashrate: shared.vardiff.initial_hashrate,
        vardiff: VardiffState::new().map_err(|e| anyhow::anyhow!("vardiff: {e:?}"))?,
        vardiff_target: targets.initial,
        own_channel,
        extranonce_subscribed: false,
        must_reconnect: false,
        counters: None,
    };
    let period = shared.vardiff.interval;
    let mut vardiff = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    vardiff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    debug!(%peer, index, "SV1 miner connected");
    let result = async {
        loop {
            tokio::select! {
                line = lines.next() => {
                    let line = match line {
                        None => return Ok(()),
                        Some(Ok(l)) => l,
                        Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                            // The codec cannot resynchronise after an oversized line: answer, close.
                            sink.send(trim(response_error(&Value::Null, error_code::INVALID_REQUEST, "line too long"))).await?;
                            anyhow::bail!("sent a line longer than {MAX_LINE_LEN} bytes");
                        }
                        Some(Err(e)) => return Err(e.into()),
                    };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let request = match parse_client_line(&line) {
                        Ok(r) => r,
                        Err(e) => {
                            sink.send(trim(response_error(&e.id, e.code, &e.message))).await?;
                            continue;
                        }
                    };
                    for reply in on_request(request, &mut m, &mut work, shared, &out_tx).await {
                        sink.send(trim(reply)).await?;
                    }
                }
                answer = out.recv() => {
                    if let Some(answer) = answer {
                        sink.send(trim(answer)).await?;
                    }
                }
                changed = work.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let current = work.borrow_and_update().clone();
                    if let Some(w) = current {
                        for line in on_work(&mut m, &w) {
                            sink.send(trim(line)).await?;
                        }
                    }
                }
                _ = vardiff.tick() => {
                    for line in retarget(&mut m, &work, shared).await {
                        sink.send(trim(line)).await?;
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
            if m.must_reconnect {
                anyhow::bail!(
                    "its extranonce changed (new pool channel) and it did not send \
                     mining.extranonce.subscribe: closed so that it reconnects"
                );
            }
        }
    }
    .await;
    if m.authorized.is_some() {
        shared.stats.rehash(m.hashrate, 0.0);
        shared.stats.unregister_miner(m.index);
    }
    result
}

/// Vardiff: re-estimates the miner's hashrate from its shares; in aggregated mode moves its
/// difficulty, in channel-per-miner mode asks the pool to retarget its channel.
async fn retarget(m: &mut Miner, work: &Work, shared: &Shared) -> Vec<String> {
    let Some(target) = m.target.filter(|_| m.authorized.is_some()) else {
        return Vec::new();
    };
    let spm = shared.vardiff.shares_per_minute;
    let hashrate = match m
        .vardiff
        .try_vardiff(m.hashrate, &Target::from_le_bytes(target), spm)
    {
        Ok(Some(h)) => h,
        Ok(None) => return Vec::new(),
        Err(e) => {
            debug!(miner = m.index, "vardiff: {e:?}");
            return Vec::new();
        }
    };
    debug!(miner = m.index, hashrate, "vardiff: new hashrate estimate");
    shared.stats.rehash(m.hashrate, hashrate);
    m.hashrate = hashrate;
    if let Some(c) = &m.counters {
        c.hashrate.set(hashrate as f64);
    }
    if !m.aggregated {
        let update = Command::Hashrate {
            miner: m.index,
            hashrate,
        };
        if shared.commands.send(update).await.is_ok() {
            TranslatorStats::add(&shared.stats.vardiff_updates);
        }
        return Vec::new();
    }
    let Some(new_target) = vardiff_target(hashrate, spm) else {
        return Vec::new();
    };
    // However slow vardiff measures the miner, its shares stay at the floor or harder.
    m.vardiff_target = harder(new_target, m.floor);
    let current = work.borrow().clone();
    let lines = current.map(|w| on_work(m, &w)).unwrap_or_default();
    if !lines.is_empty() {
        TranslatorStats::add(&shared.stats.vardiff_updates);
    }
    lines
}

fn trim(mut line: String) -> String {
    while line.ends_with('\n') {
        line.pop();
    }
    line
}

/// SV1 job ids are unique across channel openings, so a stale job is never mistaken for a new
/// one after the pool reconnects.
fn sv1_job_id(opening: u64, job_id: u32) -> String {
    format!("{:x}", (opening << 32) | job_id as u64)
}

/// What a miner is sent when the pool's work (or the miner's difficulty) changes.
fn on_work(m: &mut Miner, w: &UpstreamWork) -> Vec<String> {
    let mut out = Vec::new();
    if !m.subscribed || m.authorized.is_none() {
        return out;
    }
    let fresh = m.opening != Some(w.opening);
    if fresh {
        // A new channel (the pool reconnected): earlier jobs are stale, and the extranonce may
        // have changed with it.
        m.opening = Some(w.opening);
        m.jobs.clear();
        m.seen.clear();
        let before = (m.extranonce1(), m.extranonce2_size);
        m.take_extranonce(w);
        if before != (m.extranonce1(), m.extranonce2_size) {
            if !m.extranonce_subscribed {
                m.must_reconnect = true;
                return out;
            }
            out.push(set_extranonce(&m.extranonce1(), m.extranonce2_size));
        }
    }
    let target = m.target_for(w);
    let retargeted = m.target != Some(target);
    if retargeted {
        m.target = Some(target);
        out.push(set_difficulty(target_to_difficulty(&target)));
    }
    if let Some(job) = &w.job {
        let sv1_id = sv1_job_id(w.opening, job.job_id);
        let already_sent = !fresh && m.jobs.front().map(|(id, _)| id) == Some(&sv1_id);
        if retargeted || !already_sent {
            // A job re-sent only for its new difficulty is not clean: the miner keeps its work,
            // and the job's earlier, easier listing must stay for the shares still in flight.
            let clean = !already_sent && (job.clean || fresh);
            if clean {
                m.jobs.clear();
                m.seen.clear();
            }
            m.jobs.push_front((
                sv1_id.clone(),
                SentJob {
                    job: job.clone(),
                    target,
                    channel_id: w.channel_id,
                },
            ));
            m.jobs.truncate(RECENT_JOBS);
            m.seen.keep_jobs(&m.jobs);
            out.push(notify(&Notify {
                job_id: sv1_id,
                prev_hash: prev_hash_to_sv1(&job.prev_hash),
                coinbase1: job.coinbase_prefix.clone(),
                coinbase2: job.coinbase_suffix.clone(),
                merkle_branch: job.merkle_path.clone(),
                version: job.version,
                nbits: job.nbits,
                ntime: job.ntime,
                clean_jobs: clean,
            }));
        }
    }
    out
}

async fn on_request(
    request: ClientRequest,
    m: &mut Miner,
    work: &mut Work,
    shared: &Shared,
    out: &mpsc::UnboundedSender<String>,
) -> Vec<String> {
    match request {
        ClientRequest::Subscribe { id, .. } => {
            if let Some(own) = m.own_channel.take() {
                let open = Command::Open {
                    miner: m.index,
                    hashrate: m.hashrate,
                    work: own,
                };
                if shared.commands.send(open).await.is_err() {
                    return vec![response_error(
                        &id,
                        error_code::OTHER,
                        "translator stopping",
                    )];
                }
            }
            let current =
                match tokio::time::timeout(WORK_WAIT, work.wait_for(|w| w.is_some())).await {
                    Ok(Ok(w)) => w.clone(),
                    _ => None,
                };
            let Some(w) = current else {
                return vec![response_error(
                    &id,
                    error_code::OTHER,
                    "the pool is unreachable; try again",
                )];
            };
            m.subscribed = true;
            m.take_extranonce(&w);
            let subscription = format!("{:08x}", m.index);
            vec![response_ok(
                &id,
                json!([
                    [
                        ["mining.set_difficulty", subscription],
                        ["mining.notify", subscription]
                    ],
                    hex::encode(m.extranonce1()),
                    m.extranonce2_size
                ]),
            )]
        }
        ClientRequest::Authorize { id, user, .. } => {
            if !m.subscribed {
                return vec![response_error(
                    &id,
                    error_code::NOT_SUBSCRIBED,
                    "subscribe first",
                )];
            }
            if user.is_empty() {
                return vec![response_error(
                    &id,
                    error_code::UNAUTHORIZED,
                    "empty worker name",
                )];
            }
            if m.authorized.is_none() {
                shared.stats.rehash(0.0, m.hashrate);
            }
            m.counters = Some(shared.stats.register_miner(m.index, &user, m.hashrate));
            m.authorized = Some(user);
            let mut replies = vec![response_ok(&id, json!(true))];
            let current = work.borrow().clone();
            if let Some(w) = current {
                replies.extend(on_work(m, &w));
            }
            replies
        }
        ClientRequest::Configure {
            id,
            extensions,
            version_rolling_mask,
            ..
        } => {
            let mut result = serde_json::Map::new();
            for e in extensions {
                if e == "version-rolling" {
                    let mask =
                        version_rolling_mask.unwrap_or(VERSION_ROLLING_MASK) & VERSION_ROLLING_MASK;
                    m.version_rolling = mask != 0;
                    result.insert("version-rolling".into(), json!(mask != 0));
                    result.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
                } else {
                    result.insert(e, json!(false));
                }
            }
            vec![response_ok(&id, Value::Object(result))]
        }
        ClientRequest::ExtranonceSubscribe { id } => {
            m.extranonce_subscribed = true;
            vec![response_ok(&id, json!(true))]
        }
        ClientRequest::SuggestDifficulty { id, difficulty } => {
            suggest_difficulty(m, difficulty, work, shared).await;
            let mut replies = vec![response_ok(&id, json!(true))];
            let current = work.borrow().clone();
            if let Some(w) = current {
                replies.extend(on_work(m, &w));
            }
            replies
        }
        ClientRequest::Submit { id, submit } => {
            let channel = work
                .borrow()
                .as_ref()
                .map(|w| ChannelNow { opening: w.opening });
            let checked = check_share(m, &submit, channel);
            let stats = &shared.stats;
            match checked {
                Err(refusal) => {
                    TranslatorStats::add(&stats.shares_refused_here);
                    if let Some(counter) = refusal.counter(stats) {
                        TranslatorStats::add(counter);
                    }
                    vec![response_error(&id, refusal.code(), &refusal.to_string())]
                }
                Ok(Checked::BelowChannelTarget { work }) => {
                    m.vardiff.increment_shares_since_last_update();
                    TranslatorStats::add(&stats.shares_below_channel_target);
                    if let Some(c) = &m.counters {
                        stats.accepted(c, work);
                    }
                    vec![response_ok(&id, json!(true))]
                }
                Ok(Checked::ToPool(share, work)) => {
                    m.vardiff.increment_shares_since_last_update();
                    let (verdict, answer) = oneshot::channel();
                    let share = ShareToPool { verdict, ..share };
                    if shared.commands.send(Command::Share(share)).await.is_err() {
                        return vec![response_error(
                            &id,
                            error_code::OTHER,
                            "translator stopping",
                        )];
                    }
                    TranslatorStats::add(&stats.shares_forwarded);
                    let (out, stats, counters) = (out.clone(), stats.clone(), m.counters.clone());
                    tokio::spawn(async move {
                        let line = match answer.await {
                            Ok(Ok(())) => {
                                TranslatorStats::add(&stats.shares_accepted_by_pool);
                                if let Some(c) = &counters {
                                    stats.accepted(c, work);
                                }
                                response_ok(&id, json!(true))
                            }
                            Ok(Err(why)) => {
                                TranslatorStats::add(&stats.shares_refused_upstream);
                                let code = match &why {
                                    // A block found since the share's job was sent: as stale
                                    // as one refused here, and answered with the same code.
                                    NotAccepted::Refused(c)
                                        if c == ERROR_CODE_SUBMIT_SHARES_STALE_SHARE =>
                                    {
                                        TranslatorStats::add(&stats.shares_refused_upstream_stale);
                                        error_code::JOB_NOT_FOUND
                                    }
                                    NotAccepted::Refused(_) => error_code::OTHER,
                                    NotAccepted::Unjudged(_) => {
                                        TranslatorStats::add(&stats.shares_unjudged_upstream);
                                        error_code::OTHER
                                    }
                                };
                                response_error(&id, code, &why.to_string())
                            }
                            Err(_) => {
                                TranslatorStats::add(&stats.shares_refused_upstream);
                                TranslatorStats::add(&stats.shares_unjudged_upstream);
                                response_error(&id, error_code::OTHER, "no answer from the pool")
                            }
                        };
                        let _ = out.send(line);
                    });
                    Vec::new()
                }
            }
        }
    }
}

/// `mining.suggest_difficulty`: the miner's own idea of its difficulty replaces the initial
/// estimate; vardiff corrects it from there. Clamped to `[min_share_difficulty, the difficulty
/// of MAX_MINER_HASHRATE]`: a miner cannot ask for free shares, nor swamp the totals.
async fn suggest_difficulty(m: &mut Miner, difficulty: f64, work: &Work, shared: &Shared) {
    let spm = shared.vardiff.shares_per_minute as f64;
    let clamped = clamp_suggestion(difficulty, shared.limits.min_share_difficulty, spm);
    if clamped != difficulty {
        TranslatorStats::add(&shared.stats.suggested_difficulty_clamped);
        debug!(
            miner = m.index,
            suggested = difficulty,
            given = clamped,
            "suggested difficulty clamped"
        );
    }
    let difficulty = clamped;
    let hashrate = ((difficulty * DIFFICULTY_1_HASHES * spm / 60.0) as f32).min(MAX_MINER_HASHRATE);
    if !hashrate.is_finite() {
        return;
    }
    if m.authorized.is_some() {
        shared.stats.rehash(m.hashrate, hashrate);
    }
    m.hashrate = hashrate;
    if let Some(c) = &m.counters {
        c.hashrate.set(hashrate as f64);
    }
    m.vardiff_target = harder(difficulty_to_target(difficulty), m.floor);
    let channel_open = work.borrow().is_some();
    if !m.aggregated && m.own_channel.is_none() && channel_open {
        let _ = shared
            .commands
            .send(Command::Hashrate {
                miner: m.index,
                hashrate,
            })
            .await;
    }
}

enum Checked {
    /// Valid at the miner's difficulty, not at the channel's: answered here. `work`: the
    /// share's, in difficulty-1 shares (the miner's difficulty).
    BelowChannelTarget { work: f64 },
    /// For the pool's verdict.
    ToPool(ShareToPool, f64),
}

/// Which opening of the miner's channel the upstream has now: jobs from an earlier one are
/// stale, even before the miner has been sent its new work.
#[derive(Clone, Copy)]
struct ChannelNow {
    opening: u64,
}

/// Rebuilds the share's header from its job and checks it.
fn check_share(m: &mut Miner, s: &Submit, channel: Option<ChannelNow>) -> Result<Checked, Refusal> {
    if !m.subscribed {
        return Err(Refusal::NotSubscribed);
    }
    if m.authorized.as_deref() != Some(s.worker.as_str()) {
        return Err(Refusal::Unauthorized);
    }
    let Some(channel) = channel else {
        return Err(Refusal::NoPool);
    };
    // The channel reopened and the miner has not been sent its new work yet: every job it holds
    // belongs to the old channel.
    if m.opening != Some(channel.opening) {
        return Err(Refusal::Stale);
    }
    // A job re-sent with a new difficulty is listed once per difficulty: work done under the
    // older, easier one still counts.
    let mut sent = m
        .jobs
        .iter()
        .filter(|(id, _)| *id == s.job_id)
        .map(|(_, j)| j);
    let Some(newest) = sent.next() else {
        return Err(Refusal::Stale);
    };
    let easiest = sent
        .map(|j| Target::from_le_bytes(j.target))
        .fold(Target::from_le_bytes(newest.target), std::cmp::max);
    // Every listing was floored when sent; the floor holds here whatever was listed.
    let required = Target::from_le_bytes(harder(easiest.to_le_bytes(), m.floor));
    if s.extranonce2.len() != m.extranonce2_size {
        return Err(Refusal::Extranonce2Size);
    }
    let job = &newest.job;
    let version = match s.version_bits {
        Some(bits) if m.version_rolling => {
            (job.version & !VERSION_ROLLING_MASK) | (bits & VERSION_ROLLING_MASK)
        }
        Some(_) => return Err(Refusal::VersionRolling),
        None => job.version,
    };
    let miner_part = [m.miner_part().as_slice(), &s.extranonce2].concat();
    let coinbase = [
        job.coinbase_prefix.as_slice(),
        &m.extranonce_prefix,
        &miner_part,
        &job.coinbase_suffix,
    ]
    .concat();
    let hash = ShareHeader {
        version,
        prev_hash: &job.prev_hash,
        merkle_root: &merkle_root(&coinbase, &job.merkle_path),
        ntime: s.ntime,
        nbits: job.nbits,
        nonce: s.nonce,
    }
    .hash();
    let key = SeenShares::key(&hash);
    if m.seen.contains(job.job_id, key) {
        return Err(Refusal::Duplicate);
    }
    if hash > required {
        return Err(Refusal::LowDifficulty);
    }
    m.seen.insert(job.job_id, key)?;
    // Work at the difficulty the share was asked for (the easiest of the job's targets).
    let work = target_to_difficulty(&required.to_le_bytes());
    // The pool judges a share by its job's target (fixed when the job became active), not by
    // a SetTarget that came later.
    if hash > Target::from_le_bytes(job.channel_target) {
        return Ok(Checked::BelowChannelTarget { work });
    }
    let (verdict, _) = oneshot::channel();
    Ok(Checked::ToPool(
        ShareToPool {
            channel_id: newest.channel_id,
            job_id: job.job_id,
            nonce: s.nonce,
            ntime: s.ntime,
            version,
            extranonce: miner_part,
            verdict,
        },
        work,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner(aggregated: bool) -> Miner {
        Miner {
            index: 7,
            subscribed: true,
            authorized: Some("w".into()),
            version_rolling: false,
            opening: None,
            aggregated,
            extranonce_prefix: Vec::new(),
            extranonce2_size: 0,
            target: None,
            jobs: VecDeque::new(),
            seen: SeenShares::new(Sv1Limits::DEFAULT_MAX_SHARES_PER_JOB),
            floor: [0xff; 32],
            hashrate: 1.0,
            vardiff: VardiffState::new().unwrap(),
            vardiff_target: [0xff; 32],
            own_channel: None,
            extranonce_subscribed: false,
            must_reconnect: false,
            counters: None,
        }
    }

    fn work(opening: u64, prefix: &[u8], target: [u8; 32]) -> UpstreamWork {
        UpstreamWork {
            opening,
            channel_id: 1,
            extranonce_prefix: prefix.to_vec(),
            extranonce_size: 8,
            target,
            aggregated: true,
            job: Some(ActiveJob {
                job_id: 5,
                version: 0x2000_0000,
                coinbase_prefix: vec![1],
                coinbase_suffix: vec![2],
                merkle_path: Vec::new(),
                prev_hash: [0; 32],
                nbits: 0x207f_ffff,
                ntime: 1,
                clean: false,
                channel_target: target,
            }),
        }
    }

    #[test]
    fn a_moved_extranonce_is_announced_or_the_miner_is_reconnected() {
        let mut m = miner(true);
        // As at subscribe.
        m.take_extranonce(&work(1, &[0xaa], [0x0f; 32]));
        let first = on_work(&mut m, &work(1, &[0xaa], [0x0f; 32]));
        assert!(first.iter().any(|l| l.contains("mining.notify")));
        assert!(!m.must_reconnect);
        // Same extranonce on a new opening: the job is new and clean, nothing else.
        let again = on_work(&mut m, &work(2, &[0xaa], [0x0f; 32]));
        assert!(again
            .iter()
            .any(|l| l.contains("mining.notify") && l.contains("true]")));
        assert!(!again.iter().any(|l| l.contains("set_extranonce")));
        assert!(!m.must_reconnect);
        // A new prefix: a miner that did not subscribe to extranonce changes must reconnect.
        assert!(on_work(&mut m, &work(3, &[0xbb], [0x0f; 32])).is_empty());
        assert!(m.must_reconnect);
        // One that did gets mining.set_extranonce with prefix + its index.
        let mut m = miner(true);
        m.extranonce_subscribed = true;
        m.take_extranonce(&work(1, &[0xaa], [0x0f; 32]));
        on_work(&mut m, &work(1, &[0xaa], [0x0f; 32]));
        let moved = on_work(&mut m, &work(2, &[0xbb], [0x0f; 32]));
        assert!(moved[0].contains("mining.set_extranonce"), "{moved:?}");
        assert!(moved[0].contains("bb00000007"), "{moved:?}");
        assert!(!m.must_reconnect);
    }

    #[test]
    fn an_aggregated_miner_is_never_given_a_target_harder_than_the_channels() {
        let mut m = miner(true);
        // Vardiff wants a harder target than the channel's: the channel's is used.
        m.vardiff_target = [0x01; 32];
        let w = work(1, &[0xaa], [0x0f; 32]);
        assert_eq!(m.target_for(&w), [0x0f; 32]);
        // An easier one is the miner's own.
        m.vardiff_target = [0x3f; 32];
        assert_eq!(m.target_for(&w), [0x3f; 32]);
        // Channel-per-miner: always the channel's.
        let mut own = work(1, &[0xaa], [0x0f; 32]);
        own.aggregated = false;
        assert_eq!(m.target_for(&own), [0x0f; 32]);
    }

    fn submit(job_id: &str, nonce: u32) -> Submit {
        Submit {
            worker: "w".into(),
            job_id: job_id.into(),
            extranonce2: vec![0; 4],
            ntime: 1,
            nonce,
            version_bits: None,
        }
    }

    #[test]
    fn shares_are_judged_by_their_jobs_channel_target_and_the_current_opening() {
        let mut m = miner(true);
        let easiest = [0xff; 32];
        let w = work(1, &[0xaa], easiest);
        m.take_extranonce(&w);
        on_work(&mut m, &w);
        let job = sv1_job_id(1, 5);
        let now = Some(ChannelNow { opening: 1 });
        // Every hash meets the job's (easiest) channel target: the share goes to the pool.
        assert!(matches!(
            check_share(&mut m, &submit(&job, 1), now),
            Ok(Checked::ToPool(..))
        ));
        // The pool made the channel harder (SetTarget): it still judges this job's shares by
        // the job's own target, so they still go to the pool.
        on_work(&mut m, &work(1, &[0xaa], [0; 32]));
        assert!(matches!(
            check_share(&mut m, &submit(&job, 2), now),
            Ok(Checked::ToPool(..))
        ));
        // A job that became active after it carries the harder target: shares under it are
        // answered here.
        let mut harder = work(1, &[0xaa], [0; 32]);
        if let Some(j) = harder.job.as_mut() {
            j.job_id = 6;
            j.channel_target = [0; 32];
        }
        on_work(&mut m, &harder);
        assert!(matches!(
            check_share(&mut m, &submit(&sv1_job_id(1, 6), 3), now),
            Ok(Checked::BelowChannelTarget { .. })
        ));
        // The channel reopened and the miner has not had its new work yet: its jobs are stale.
        let reopened = Some(ChannelNow { opening: 2 });
        assert!(matches!(
            check_share(&mut m, &submit(&job, 3), reopened),
            Err(Refusal::Stale)
        ));
        // No pool: refused, whatever the share.
        assert!(matches!(
            check_share(&mut m, &submit(&job, 4), None),
            Err(Refusal::NoPool)
        ));
    }

    #[test]
    fn shares_hashed_before_a_retarget_of_a_clean_job_still_count() {
        let mut m = miner(false);
        let mut first = work(1, &[0xaa], [0xff; 32]);
        first.aggregated = false;
        if let Some(j) = first.job.as_mut() {
            j.clean = true;
        }
        m.take_extranonce(&first);
        on_work(&mut m, &first);
        // Vardiff made the channel far harder; the same (clean) job is re-sent with it.
        let mut harder = first.clone();
        harder.target = [0; 32];
        harder.target[0] = 1;
        let resent = on_work(&mut m, &harder);
        assert!(resent[0].contains("mining.set_difficulty"), "{resent:?}");
        assert!(
            resent[1].contains("mining.notify") && resent[1].trim_end().ends_with("false]}"),
            "a re-sent job must not make the miner drop its work: {resent:?}"
        );
        // A share the miner found at the old difficulty, answered after the retarget.
        let now = Some(ChannelNow { opening: 1 });
        let share = Submit {
            extranonce2: vec![0; m.extranonce2_size],
            ..submit(&sv1_job_id(1, 5), 1)
        };
        let checked = check_share(&mut m, &share, now);
        assert!(
            matches!(checked, Ok(Checked::ToPool(..))),
            "{:?}",
            checked.err()
        );
    }

    /// A miner at the test defaults with its floor at `floor` (difficulty) on an aggregated
    /// channel whose target is the easiest there is, subscribed and sent job 5.
    fn floored_miner(floor: f64) -> (Miner, UpstreamWork, Vec<String>) {
        let mut m = miner(true);
        m.floor = difficulty_to_target(floor);
        let w = work(1, &[0xaa], [0xff; 32]);
        m.take_extranonce(&w);
        let sent = on_work(&mut m, &w);
        (m, w, sent)
    }

    fn sent_difficulty(lines: &[String]) -> Option<f64> {
        lines.iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["method"] == "mining.set_difficulty").then(|| v["params"][0].as_f64())?
        })
    }

    #[test]
    fn suggested_difficulties_are_clamped_to_the_floor_and_the_cap() {
        let (floor, spm) = (1e-6, 10.0);
        let cap = MAX_MINER_HASHRATE as f64 * 60.0 / spm / DIFFICULTY_1_HASHES;
        for nonsense in [1e-30, 0.0, -1.0, f64::NAN, f64::NEG_INFINITY, 5e-7] {
            assert_eq!(clamp_suggestion(nonsense, floor, spm), floor, "{nonsense}");
        }
        for huge in [1e300, f64::INFINITY, cap * 2.0] {
            assert_eq!(clamp_suggestion(huge, floor, spm), cap, "{huge}");
        }
        assert_eq!(clamp_suggestion(0.5, floor, spm), 0.5);
        assert_eq!(clamp_suggestion(floor, floor, spm), floor);
        // A floor above the cap (a strange config) still wins.
        assert_eq!(clamp_suggestion(1.0, cap * 10.0, spm), cap * 10.0);
    }

    #[tokio::test]
    async fn a_suggested_1e_30_gets_the_floor_and_is_counted() {
        let (commands, _rx) = mpsc::channel(4);
        let shared = Shared {
            aggregated: None,
            commands,
            vardiff: VardiffSettings::default(),
            limits: Sv1Limits::default(),
            stats: Arc::new(TranslatorStats::default()),
        };
        let floor = Sv1Limits::DEFAULT_MIN_SHARE_DIFFICULTY;
        let mut m = miner(true);
        m.floor = difficulty_to_target(floor);
        let (_tx, work_rx) = watch::channel(None);
        suggest_difficulty(&mut m, 1e-30, &work_rx, &shared).await;
        assert_eq!(m.vardiff_target, m.floor);
        assert_eq!(
            TranslatorStats::get(&shared.stats.suggested_difficulty_clamped),
            1
        );
        // The hashrate it stands for is the floor's, not 1e-30's.
        let spm = shared.vardiff.shares_per_minute as f64;
        let expected = (floor * DIFFICULTY_1_HASHES * spm / 60.0) as f32;
        assert!((m.hashrate / expected - 1.0).abs() < 1e-3, "{}", m.hashrate);
        // On a channel far easier than the floor, the difficulty it is sent is the floor.
        let w = work(1, &[0xaa], [0xff; 32]);
        m.take_extranonce(&w);
        let d = sent_difficulty(&on_work(&mut m, &w)).expect("a difficulty");
        assert!(d >= floor * (1.0 - 1e-9), "sent {d}");
        // A reasonable suggestion is taken as it is, and not counted.
        suggest_difficulty(&mut m, 0.25, &work_rx, &shared).await;
        assert_eq!(m.vardiff_target, difficulty_to_target(0.25));
        assert_eq!(
            TranslatorStats::get(&shared.stats.suggested_difficulty_clamped),
            1
        );
    }

    #[test]
    fn no_miner_is_given_a_target_easier_than_the_floor_nor_credited_under_it() {
        // 2^-24: a share meets it once in ~256 hashes, quick to find both kinds.
        let floor = 1.0 / 16_777_216.0;
        let (mut m, w, sent) = floored_miner(floor);
        // The channel and vardiff would allow every hash; the miner is sent the floor.
        let d = sent_difficulty(&sent).expect("a difficulty");
        assert!((d / floor - 1.0).abs() < 1e-9, "sent {d}");
        assert_eq!(m.target_for(&w), m.floor);
        // Channel-per-miner: a pool target easier than the floor is floored too.
        let mut own = w.clone();
        own.aggregated = false;
        assert_eq!(m.target_for(&own), m.floor);
        // However easy a target vardiff picks, the miner stays at the floor.
        m.vardiff_target = [0xfe; 32];
        assert_eq!(m.target_for(&w), m.floor);
        // A listing that somehow carries an easier target: shares are still held to the floor.
        for (_, j) in m.jobs.iter_mut() {
            j.target = [0xff; 32];
        }
        let now = Some(ChannelNow { opening: 1 });
        let job = sv1_job_id(1, 5);
        let (mut low, mut good) = (0, 0);
        for nonce in 0..20_000 {
            match check_share(&mut m, &submit(&job, nonce), now) {
                Err(Refusal::LowDifficulty) => low += 1,
                Ok(Checked::ToPool(_, work)) => {
                    assert!((work / floor - 1.0).abs() < 1e-9, "credited {work}");
                    good += 1;
                }
                other => panic!("nonce {nonce}: {:?}", other.err()),
            }
        }
        assert!(low > 19_000 && good > 10, "{low} low, {good} good");
        assert_eq!(Refusal::LowDifficulty.code(), error_code::LOW_DIFFICULTY);
    }

    #[test]
    fn seen_shares_are_bounded_per_job_and_a_duplicate_is_never_accepted() {
        let mut m = miner(true);
        m.seen = SeenShares::new(3);
        let w = work(1, &[0xaa], [0xff; 32]);
        m.take_extranonce(&w);
        on_work(&mut m, &w);
        let now = Some(ChannelNow { opening: 1 });
        let job = sv1_job_id(1, 5);
        // Every hash is a share here (all-ff targets): three are remembered...
        for nonce in 0..3 {
            assert!(check_share(&mut m, &submit(&job, nonce), now).is_ok());
        }
        // ...the fourth on that job is refused, with its own code and reason...
        let full = check_share(&mut m, &submit(&job, 3), now).err();
        assert_eq!(full, Some(Refusal::JobShareLimit(3)));
        assert_eq!(Refusal::JobShareLimit(3).code(), error_code::OTHER);
        assert!(Refusal::JobShareLimit(3).to_string().contains("next job"));
        // ...and nothing was forgotten to make room: the first is still a duplicate.
        for nonce in 0..3 {
            assert_eq!(
                check_share(&mut m, &submit(&job, nonce), now).err(),
                Some(Refusal::Duplicate)
            );
        }
        assert_eq!(m.seen.len(), 3);
        // The next job has room of its own; the full one stays full.
        let mut next = w.clone();
        if let Some(j) = next.job.as_mut() {
            j.job_id = 6;
        }
        on_work(&mut m, &next);
        assert!(check_share(&mut m, &submit(&sv1_job_id(1, 6), 0), now).is_ok());
        assert_eq!(
            check_share(&mut m, &submit(&job, 4), now).err(),
            Some(Refusal::JobShareLimit(3))
        );
        // Jobs that can no longer be submitted to take their shares with them: memory stays
        // bounded by the recent jobs.
        for id in 7..7 + RECENT_JOBS as u32 {
            let mut newer = w.clone();
            if let Some(j) = newer.job.as_mut() {
                j.job_id = id;
            }
            on_work(&mut m, &newer);
        }
        assert_eq!(m.seen.len(), 0);
        assert_eq!(
            check_share(&mut m, &submit(&job, 0), now).err(),
            Some(Refusal::Stale)
        );
    }

    #[tokio::test]
    async fn a_share_the_pool_calls_stale_is_answered_as_stale_and_counted_apart() {
        let (commands, mut upstream) = mpsc::channel(4);
        let shared = Shared {
            aggregated: None,
            commands,
            vardiff: VardiffSettings::default(),
            limits: Sv1Limits::default(),
            stats: Arc::new(TranslatorStats::default()),
        };
        let mut m = miner(true);
        let w = work(1, &[0xaa], [0xff; 32]);
        m.take_extranonce(&w);
        on_work(&mut m, &w);
        let (_tx, mut work_rx) = watch::channel(Some(Arc::new(w)));
        let (out, mut answers) = mpsc::unbounded_channel();
        let job = sv1_job_id(1, 5);
        for (nonce, verdict) in [
            (1, ERROR_CODE_SUBMIT_SHARES_STALE_SHARE),
            (2, "invalid-share"),
        ] {
            let request = ClientRequest::Submit {
                id: json!(nonce),
                submit: submit(&job, nonce),
            };
            assert!(on_request(request, &mut m, &mut work_rx, &shared, &out)
                .await
                .is_empty());
            let Some(Command::Share(share)) = upstream.recv().await else {
                panic!("no share forwarded");
            };
            let _ = share
                .verdict
                .send(Err(NotAccepted::Refused(verdict.into())));
            let answer: Value =
                serde_json::from_str(&answers.recv().await.expect("an answer")).expect("JSON");
            let code = if verdict == ERROR_CODE_SUBMIT_SHARES_STALE_SHARE {
                error_code::JOB_NOT_FOUND
            } else {
                error_code::OTHER
            };
            assert_eq!(answer["error"][0], json!(code), "{answer}");
        }
        let stats = &shared.stats;
        assert_eq!(TranslatorStats::get(&stats.shares_refused_upstream), 2);
        assert_eq!(
            TranslatorStats::get(&stats.shares_refused_upstream_stale),
            1
        );
    }
}
