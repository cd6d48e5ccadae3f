//! The jd-client's state, owned by one task: templates from its template provider, tokens and
//! declarations with the jd-server, the pool channel and its jobs, and the miners' channels.
//! Every connection talks to it through [`Event`]s, so no state is shared or locked.
//!
//! The work miners get is always a job the pool knows: the custom job the jd-server accepted
//! for the current template (declared mode), or, while that is not possible (no jd-server, a
//! refusal, a new tip not yet declared), the pool's own job on the same channel. Switching is
//! a new job for every channel: miners stay connected.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{atomic::Ordering, Arc},
};

use binary_sv2::{B016MOwned, B0255Owned, B032Owned, B064KOwned, Seq064KOwned, U256Owned};
use bitcoin::{consensus, hashes::Hash, ScriptBuf, Target, Transaction, TxOut};
use channels_sv2::{chain_tip::ChainTip, server::jobs::factory::JobFactory, Vardiff, VardiffState};
use job_declaration_sv2::{
    AllocateMiningJobTokenOwned, DeclareMiningJobOwned, ProvideMissingTransactionsSuccessOwned,
    PushSolutionOwned,
};
use mining_sv2::{
    NewExtendedMiningJobOwned, NewMiningJobOwned, OpenExtendedMiningChannelSuccessOwned,
    OpenMiningChannelErrorOwned, OpenStandardMiningChannelSuccessOwned, SetCustomMiningJobOwned,
    SetNewPrevHashOwned, SetTargetOwned, SubmitSharesErrorOwned, SubmitSharesExtendedOwned,
    SubmitSharesSuccess,
};
use parsers_sv2::{AnyMessageOwned, JobDeclarationOwned, MiningOwned, TemplateDistributionOwned};
use template_distribution_sv2::{
    NewTemplateOwned, RequestTransactionData, SetNewPrevHashOwned as TpPrevHash,
    SubmitSolutionOwned,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    stats::{FoundBlock, JdClientStats},
    work::{Checked, Declared, ShareHeader, Work, INDEX_BYTES},
    JdClientRunConfig,
};

type Out = mpsc::Sender<AnyMessageOwned>;

/// What the connections tell the core.
pub enum Event {
    TpUp(Out),
    TpLost,
    Tp(TemplateDistributionOwned),
    JdsUp(Out),
    JdsLost,
    Jds(JobDeclarationOwned),
    PoolUp {
        tx: Out,
        channel: OpenExtendedMiningChannelSuccessOwned,
    },
    PoolLost,
    Pool(MiningOwned),
    MinerUp {
        conn: u64,
        tx: Out,
    },
    MinerGone {
        conn: u64,
    },
    Miner {
        conn: u64,
        message: MiningOwned,
    },
}

/// How long a declaration may wait for the jd-server's answer.
const DECLARATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Templates kept (the current one and a few future ones).
const MAX_TEMPLATES: usize = 16;
/// Jobs a downstream channel keeps under one tip (older ones' shares are stale).
const MAX_CHANNEL_JOBS: usize = 32;
/// Shares remembered per channel and tip to refuse duplicates.
const MAX_SEEN_SHARES: usize = 1 << 16;

fn u256(target: &Target) -> U256Owned {
    U256Owned::from(target.to_le_bytes())
}

fn target(u: &U256Owned) -> Target {
    Target::from_le_bytes(u.to_array())
}

struct PoolLink {
    tx: Out,
    opening: u64,
    channel_id: u32,
    prefix: Vec<u8>,
    size: usize,
    target: Target,
    tip: Option<SetNewPrevHashOwned>,
    future_jobs: HashMap<u32, NewExtendedMiningJobOwned>,
    active_job: Option<NewExtendedMiningJobOwned>,
    sequence: u32,
}

struct JdsLink {
    tx: Out,
    tokens: VecDeque<Vec<u8>>,
    allocating: bool,
    pool_script: Option<ScriptBuf>,
    /// The declaration waiting for its answer (one at a time: the newest template wins).
    declaring: Option<(u32, std::time::Instant)>,
}

/// A declaration on its way (to the jd-server, then as a custom job to the pool).
struct Declaration {
    template: NewTemplateOwned,
    txs: Vec<Transaction>,
    outputs: Vec<TxOut>,
    full_extranonce_size: usize,
    opening: u64,
    prev_hash: [u8; 32],
    coinbase_prefix_bip141: Vec<u8>,
    coinbase_suffix_bip141: Vec<u8>,
}

struct Channel {
    index: [u8; INDEX_BYTES],
    /// `Some(rollable bytes)` for an extended channel.
    extended: Option<usize>,
    target: Target,
    max_target: Target,
    jobs: HashMap<u32, Arc<Work>>,
    tip: Option<[u8; 32]>,
    seen: HashSet<bitcoin::BlockHash>,
    /// The hashrate the target is set for (announced, then measured by vardiff).
    hashrate: f32,
    vardiff: VardiffState,
    /// The target before the last retarget and the first job id sent after it: a miner may
    /// still send shares it found at the older target on the jobs it had then.
    before: Option<(Target, u32)>,
}

impl Channel {
    /// A new target, from the job `next_job_id` on. After several quick retargets a job sent
    /// before them is judged by the easiest target it may have been worked at.
    fn retarget(&mut self, new: Target, next_job_id: u32) {
        let older = match self.before {
            Some((t, _)) => t.max(self.target),
            None => self.target,
        };
        self.before = Some((older, next_job_id));
        self.target = new;
    }

    /// The target a share on `job_id` is checked against.
    fn target_for(&self, job_id: u32) -> Target {
        match self.before {
            Some((older, first_job)) if job_id < first_job => older.max(self.target),
            _ => self.target,
        }
    }
}

struct Miner {
    tx: Out,
    channels: HashMap<u32, Channel>,
}

pub struct Core {
    config: JdClientRunConfig,
    stats: Arc<JdClientStats>,
    factory: JobFactory,
    tp: Option<Out>,
    templates: HashMap<u64, NewTemplateOwned>,
    tp_tip: Option<TpPrevHash>,
    current_template: Option<u64>,
    tx_data: HashMap<u64, Vec<Transaction>>,
    jds: Option<JdsLink>,
    next_request: u32,
    declarations: HashMap<u32, Declaration>,
    custom: HashMap<u32, (Declaration, SetCustomMiningJobOwned)>,
    /// (template, tip, pool opening) last declared: each is declared once.
    last_declared: Option<(u64, [u8; 32], u64)>,
    pool: Option<PoolLink>,
    openings: u64,
    work: Option<Arc<Work>>,
    miners: HashMap<u64, Miner>,
    next_channel_id: u32,
    used_indexes: HashSet<u16>,
    next_index: u16,
    next_job_id: u32,
}

impl Core {
    pub fn new(config: JdClientRunConfig, stats: Arc<JdClientStats>) -> Self {
        let factory = JobFactory::new(true, None, Some(config.miner_tag.clone()));
        Self {
            config,
            stats,
            factory,
            tp: None,
            templates: HashMap::new(),
            tp_tip: None,
            current_template: None,
            tx_data: HashMap::new(),
            jds: None,
            next_request: 1,
            declarations: HashMap::new(),
            custom: HashMap::new(),
            last_declared: None,
            pool: None,
            openings: 0,
            work: None,
            miners: HashMap::new(),
            next_channel_id: 1,
            used_indexes: HashSet::new(),
            next_index: 0,
            next_job_id: 1,
        }
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut vardiff = tokio::time::interval(self.config.vardiff_interval);
        vardiff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => return },
                _ = vardiff.tick() => {
                    self.run_vardiff();
                    continue;
                }
                _ = shutdown.cancelled() => return,
            };
            self.on_event(event);
        }
    }

    /// Moves each miner's target toward `shares_per_minute` from the shares it sent.
    fn run_vardiff(&mut self) {
        let spm = self.config.shares_per_minute;
        let mut updates = Vec::new();
        for (conn, miner) in self.miners.iter_mut() {
            for (id, ch) in miner.channels.iter_mut() {
                let hashrate = match ch.vardiff.try_vardiff(ch.hashrate, &ch.target, spm) {
                    Ok(Some(h)) => h,
                    Ok(None) => continue,
                    Err(e) => {
                        debug!(channel_id = id, "vardiff: {e:?}");
                        continue;
                    }
                };
                let Ok(t) = channels_sv2::target::hash_rate_to_target(hashrate as f64, spm as f64)
                else {
                    continue;
                };
                let t = t.min(ch.max_target);
                ch.hashrate = hashrate;
                if t != ch.target {
                    ch.retarget(t, self.next_job_id);
                    debug!(channel_id = id, hashrate, "vardiff: new target");
                    updates.push((*conn, *id, t));
                }
            }
        }
        for (conn, channel_id, t) in updates {
            self.reply(
                conn,
                MiningOwned::SetTarget(SetTargetOwned {
                    channel_id,
                    maximum_target: u256(&t),
                }),
            );
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::TpUp(tx) => {
                let outputs = vec![TxOut {
                    value: bitcoin::Amount::ZERO,
                    script_pubkey: ScriptBuf::from_bytes(vec![
                        0;
                        self.config.max_pool_script_bytes
                    ]),
                }];
                let constraints =
                    stratum_apps::coinbase_output_constraints::coinbase_output_constraints_message(
                        outputs,
                    );
                let _ = tx.try_send(AnyMessageOwned::TemplateDistribution(
                    TemplateDistributionOwned::CoinbaseOutputConstraints(constraints),
                ));
                self.tp = Some(tx);
                self.stats.tp_connected.store(true, Ordering::Relaxed);
            }
            Event::TpLost => {
                self.tp = None;
                self.templates.clear();
                self.tx_data.clear();
                self.tp_tip = None;
                self.current_template = None;
                self.stats.tp_connected.store(false, Ordering::Relaxed);
            }
            Event::Tp(m) => self.on_tp(m),
            Event::JdsUp(tx) => {
                self.jds = Some(JdsLink {
                    tx,
                    tokens: VecDeque::new(),
                    allocating: false,
                    pool_script: None,
                    declaring: None,
                });
                self.stats.jds_connected.store(true, Ordering::Relaxed);
                self.request_token();
            }
            Event::JdsLost => {
                self.jds = None;
                self.declarations.clear();
                self.stats.jds_connected.store(false, Ordering::Relaxed);
                // Jobs already set stay good at the pool, but without a jd-server no newer
                // template can be declared: the pool's jobs follow the mempool.
                self.last_declared = None;
                self.fall_back();
            }
            Event::Jds(m) => self.on_jds(m),
            Event::PoolUp { tx, channel } => self.on_pool_up(tx, channel),
            Event::PoolLost => {
                self.pool = None;
                self.work = None;
                self.custom.clear();
                self.stats.pool_connected.store(false, Ordering::Relaxed);
                self.stats.mining_declared.store(false, Ordering::Relaxed);
                for miner in self.miners.values_mut() {
                    for ch in miner.channels.values_mut() {
                        ch.jobs.clear();
                    }
                }
            }
            Event::Pool(m) => self.on_pool(m),
            Event::MinerUp { conn, tx } => {
                self.miners.insert(
                    conn,
                    Miner {
                        tx,
                        channels: HashMap::new(),
                    },
                );
            }
            Event::MinerGone { conn } => {
                if let Some(m) = self.miners.remove(&conn) {
                    for ch in m.channels.values() {
                        self.used_indexes.remove(&u16::from_be_bytes(ch.index));
                    }
                }
                self.count_channels();
            }
            Event::Miner { conn, message } => self.on_miner(conn, message),
        }
    }

    // ---- template provider ----

    fn on_tp(&mut self, m: TemplateDistributionOwned) {
        match m {
            TemplateDistributionOwned::NewTemplate(t) => {
                debug!(
                    template_id = t.template_id,
                    future = t.future_template,
                    "new template"
                );
                let id = t.template_id;
                let future = t.future_template;
                self.templates.insert(id, t);
                while self.templates.len() > MAX_TEMPLATES {
                    let Some(oldest) = self.templates.keys().min().copied() else {
                        break;
                    };
                    self.templates.remove(&oldest);
                    self.tx_data.remove(&oldest);
                }
                if !future && self.tp_tip.is_some() {
                    self.current_template = Some(id);
                    self.request_tx_data(id);
                }
            }
            TemplateDistributionOwned::SetNewPrevHash(p) => {
                debug!(
                    template_id = p.template_id,
                    "new tip from the template provider"
                );
                self.current_template = Some(p.template_id);
                let id = p.template_id;
                self.tp_tip = Some(p);
                self.request_tx_data(id);
            }
            TemplateDistributionOwned::RequestTransactionDataSuccess(s) => {
                let mut txs = Vec::new();
                for raw in s.transaction_list.into_inner() {
                    match consensus::deserialize::<Transaction>(raw.as_ref()) {
                        Ok(t) => txs.push(t),
                        Err(e) => {
                            warn!(
                                template_id = s.template_id,
                                "undecodable transaction from the template provider: {e}"
                            );
                            return;
                        }
                    }
                }
                self.tx_data.insert(s.template_id, txs);
                self.try_declare();
            }
            TemplateDistributionOwned::RequestTransactionDataError(e) => {
                warn!(template_id = e.template_id, code = %hashpool_sv2_io::text(&e.error_code), "the template provider has no transactions for a template");
            }
            other => debug!("ignoring template provider message {other}"),
        }
    }

    fn request_tx_data(&mut self, template_id: u64) {
        if self.tx_data.contains_key(&template_id) {
            self.try_declare();
            return;
        }
        if let Some(tp) = &self.tp {
            let _ = tp.try_send(AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::RequestTransactionData(RequestTransactionData {
                    template_id,
                }),
            ));
        }
    }

    // ---- jd-server ----

    fn request_token(&mut self) {
        let id = self.request_id();
        let Some(jds) = &mut self.jds else { return };
        if jds.allocating || jds.tokens.len() >= 2 {
            return;
        }
        jds.allocating = true;
        let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
            JobDeclarationOwned::AllocateMiningJobToken(AllocateMiningJobTokenOwned {
                user_identifier: hashpool_sv2_io::str0255(&self.config.pool.user_identity),
                request_id: id,
            }),
        ));
    }

    /// Declares the current template when everything it needs is there.
    fn try_declare(&mut self) {
        let Some(template_id) = self.current_template else {
            return;
        };
        let (Some(tp_tip), Some(pool)) = (&self.tp_tip, &self.pool) else {
            return;
        };
        let Some(pool_tip) = &pool.tip else { return };
        let prev_hash = tp_tip.prev_hash.to_array();
        // The pool takes custom jobs on its own tip only.
        if pool_tip.prev_hash.to_array() != prev_hash {
            return;
        }
        if self.last_declared == Some((template_id, prev_hash, pool.opening)) {
            return;
        }
        let (Some(template), Some(txs)) = (
            self.templates.get(&template_id),
            self.tx_data.get(&template_id),
        ) else {
            return;
        };
        let Some(jds) = &self.jds else {
            // No jd-server: this template is mined through the pool's job.
            self.fall_back();
            return;
        };
        if let Some((request_id, at)) = jds.declaring {
            if at.elapsed() < DECLARATION_TIMEOUT {
                return;
            }
            // The jd-server never answered (or asked for what the job does not have): this
            // template is mined through the pool's job; the next one is declared.
            warn!(request_id, "no answer to a declaration: giving up on it");
            self.declarations.remove(&request_id);
            self.stats
                .declarations_refused
                .fetch_add(1, Ordering::Relaxed);
            if let Some(jds) = &mut self.jds {
                jds.declaring = None;
            }
            self.fall_back();
            return;
        }
        let Some(script) = jds.pool_script.clone() else {
            return;
        };
        if jds.tokens.is_empty() {
            self.request_token();
            return;
        }
        let outputs = vec![TxOut {
            value: bitcoin::Amount::from_sat(template.coinbase_tx_value_remaining),
            script_pubkey: script,
        }];
        let full_extranonce_size = pool.prefix.len() + pool.size;
        let (prefix, suffix) = match self.factory.new_coinbase_tx_prefix_and_suffix(
            template.clone(),
            outputs.clone(),
            full_extranonce_size,
        ) {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    template_id,
                    "cannot build the coinbase for a declaration: {e:?}"
                );
                return;
            }
        };
        let wtxids: Vec<U256Owned> = txs
            .iter()
            .map(|t| U256Owned::from(t.compute_wtxid().to_byte_array()))
            .collect();
        let declaration = Declaration {
            template: template.clone(),
            txs: txs.clone(),
            outputs,
            full_extranonce_size,
            opening: pool.opening,
            prev_hash,
            coinbase_prefix_bip141: prefix.clone(),
            coinbase_suffix_bip141: suffix.clone(),
        };
        let version = template.version;
        let opening = pool.opening;
        let request_id = self.request_id();
        let Some(jds) = &mut self.jds else { return };
        let Some(token) = jds.tokens.pop_front() else {
            return;
        };
        let message = (|| {
            Some(DeclareMiningJobOwned {
                request_id,
                mining_job_token: B0255Owned::new(token).ok()?,
                version,
                coinbase_tx_prefix: B064KOwned::new(prefix).ok()?,
                coinbase_tx_suffix: B064KOwned::new(suffix).ok()?,
                wtxid_list: Seq064KOwned::new(wtxids).ok()?,
                excess_data: B064KOwned::new(Vec::new()).ok()?,
            })
        })();
        let Some(message) = message else {
            warn!(template_id, "a declaration does not fit its message");
            return;
        };
        if jds
            .tx
            .try_send(AnyMessageOwned::JobDeclaration(
                JobDeclarationOwned::DeclareMiningJob(message),
            ))
            .is_err()
        {
            return;
        }
        jds.declaring = Some((request_id, std::time::Instant::now()));
        self.declarations.insert(request_id, declaration);
        self.last_declared = Some((template_id, prev_hash, opening));
        debug!(
            template_id,
            request_id,
            txs = self.declarations[&request_id].txs.len(),
            "declaring"
        );
        self.request_token();
    }

    fn on_jds(&mut self, m: JobDeclarationOwned) {
        match m {
            JobDeclarationOwned::AllocateMiningJobTokenSuccess(s) => {
                let max = self.config.max_pool_script_bytes;
                let Some(jds) = &mut self.jds else { return };
                jds.allocating = false;
                let script = consensus::deserialize::<Vec<TxOut>>(s.coinbase_outputs.as_ref())
                    .ok()
                    .and_then(|o| o.into_iter().next())
                    .map(|o| o.script_pubkey);
                match script {
                    Some(script) if !script.is_empty() && script.len() <= max => {
                        jds.pool_script = Some(script);
                        jds.tokens.push_back(s.mining_job_token.as_ref().to_vec());
                        self.stats.tokens_allocated.fetch_add(1, Ordering::Relaxed);
                        self.try_declare();
                    }
                    _ => warn!(
                        max_pool_script_bytes = max,
                        "the jd-server's coinbase outputs are missing or their script is larger than configured: not declaring"
                    ),
                }
            }
            JobDeclarationOwned::ProvideMissingTransactions(p) => {
                let Some(d) = self.declarations.get(&p.request_id) else {
                    return;
                };
                let mut list = Vec::new();
                for position in p.unknown_tx_position_list.into_inner() {
                    match d.txs.get(position as usize) {
                        Some(t) => match B016MOwned::new(consensus::serialize(t)) {
                            Ok(b) => list.push(b),
                            Err(_) => return,
                        },
                        None => {
                            warn!(
                                position,
                                "the jd-server asked for a transaction the job does not have"
                            );
                            return;
                        }
                    }
                }
                debug!(
                    request_id = p.request_id,
                    count = list.len(),
                    "providing transactions"
                );
                if let (Some(jds), Ok(transaction_list)) = (&self.jds, Seq064KOwned::new(list)) {
                    let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
                        JobDeclarationOwned::ProvideMissingTransactionsSuccess(
                            ProvideMissingTransactionsSuccessOwned {
                                request_id: p.request_id,
                                transaction_list,
                            },
                        ),
                    ));
                }
            }
            JobDeclarationOwned::DeclareMiningJobSuccess(s) => {
                if let Some(jds) = &mut self.jds {
                    jds.declaring = None;
                }
                let Some(d) = self.declarations.remove(&s.request_id) else {
                    return;
                };
                self.stats.jobs_declared.fetch_add(1, Ordering::Relaxed);
                self.set_custom_job(d, s.new_mining_job_token.as_ref().to_vec());
                self.try_declare();
            }
            JobDeclarationOwned::DeclareMiningJobError(e) => {
                if let Some(jds) = &mut self.jds {
                    jds.declaring = None;
                }
                self.declarations.remove(&e.request_id);
                self.stats
                    .declarations_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    code = %hashpool_sv2_io::text(&e.error_code),
                    details = %String::from_utf8_lossy(e.error_details.as_ref()),
                    "the jd-server refused a job: mining pool jobs"
                );
                self.fall_back();
                self.try_declare();
            }
            other => debug!("ignoring jd-server message {other}"),
        }
    }

    fn set_custom_job(&mut self, d: Declaration, job_token: Vec<u8>) {
        let request_id = self.request_id();
        let Some(pool) = &self.pool else { return };
        let Some(tip) = &pool.tip else { return };
        if pool.opening != d.opening || tip.prev_hash.to_array() != d.prev_hash {
            debug!("a declared job outlived its tip or channel: not set");
            return;
        }
        let Ok(token) = B0255Owned::new(job_token) else {
            return;
        };
        let chain_tip = ChainTip::new(tip.prev_hash.clone(), tip.nbits, tip.min_ntime);
        let job = match self.factory.new_custom_job(
            pool.channel_id,
            request_id,
            token,
            chain_tip,
            d.template.clone(),
            d.outputs.clone(),
            d.full_extranonce_size,
        ) {
            Ok(j) => j,
            Err(e) => {
                warn!("cannot build the custom job: {e:?}");
                return;
            }
        };
        if pool
            .tx
            .try_send(AnyMessageOwned::Mining(MiningOwned::SetCustomMiningJob(
                job.clone(),
            )))
            .is_ok()
        {
            self.custom.insert(request_id, (d, job));
        }
    }
}

impl Core {
    // ---- pool ----

    fn on_pool_up(&mut self, tx: Out, channel: OpenExtendedMiningChannelSuccessOwned) {
        self.openings += 1;
        let prefix = channel.extranonce_prefix.as_ref().to_vec();
        let size = channel.extranonce_size as usize;
        self.pool = Some(PoolLink {
            tx,
            opening: self.openings,
            channel_id: channel.channel_id,
            prefix,
            size,
            target: target(&channel.target),
            tip: None,
            future_jobs: HashMap::new(),
            active_job: None,
            sequence: 0,
        });
        self.stats.pool_connected.store(true, Ordering::Relaxed);
        self.work = None;
        self.custom.clear();
        // Miners keep their channels: the pool channel's prefix is part of the coinbase prefix
        // their jobs carry, so a new one changes nothing for them. Only an extended channel
        // whose rollable part no longer fits is closed (its miner reopens).
        let rollable = size.saturating_sub(INDEX_BYTES);
        for miner in self.miners.values_mut() {
            let mut closed = Vec::new();
            for (id, ch) in miner.channels.iter_mut() {
                ch.jobs.clear();
                ch.tip = None;
                if ch.extended.is_some_and(|r| r > rollable) {
                    closed.push(*id);
                }
            }
            for id in closed {
                if let Some(ch) = miner.channels.remove(&id) {
                    self.used_indexes.remove(&u16::from_be_bytes(ch.index));
                }
                let _ = miner
                    .tx
                    .try_send(AnyMessageOwned::Mining(MiningOwned::CloseChannel(
                        mining_sv2::CloseChannelOwned {
                            channel_id: id,
                            reason_code: hashpool_sv2_io::str0255("extranonce-size-changed"),
                        },
                    )));
            }
        }
        self.count_channels();
    }

    fn on_pool(&mut self, m: MiningOwned) {
        let Some(pool) = &mut self.pool else { return };
        match m {
            MiningOwned::SetNewPrevHash(p) if p.channel_id == pool.channel_id => {
                pool.active_job = pool.future_jobs.remove(&p.job_id);
                pool.future_jobs.clear();
                pool.tip = Some(p);
                // Until the new tip's job is declared, miners mine the pool's.
                self.fall_back();
                self.try_declare();
            }
            MiningOwned::NewExtendedMiningJob(j) if j.channel_id == pool.channel_id => {
                if j.min_ntime.clone().into_inner().is_some() {
                    pool.active_job = Some(j);
                    let declared = self.work.as_ref().is_some_and(|w| w.declared.is_some());
                    if !declared {
                        self.fall_back();
                    }
                } else {
                    pool.future_jobs.insert(j.job_id, j);
                }
            }
            MiningOwned::SetTarget(t) if t.channel_id == pool.channel_id => {
                pool.target = target(&t.maximum_target);
            }
            MiningOwned::SetExtranoncePrefix(p) if p.channel_id == pool.channel_id => {
                // Rare: handled as a new opening of the same channel.
                let channel = OpenExtendedMiningChannelSuccessOwned {
                    request_id: 0,
                    channel_id: pool.channel_id,
                    target: u256(&pool.target),
                    extranonce_size: pool.size as u16,
                    extranonce_prefix: p.extranonce_prefix,
                    group_channel_id: 0,
                };
                let tx = pool.tx.clone();
                self.on_pool_up(tx, channel);
            }
            MiningOwned::SetCustomMiningJobSuccess(s) => {
                let Some((d, job)) = self.custom.remove(&s.request_id) else {
                    return;
                };
                self.on_custom_job_set(d, job, s.job_id);
            }
            MiningOwned::SetCustomMiningJobError(e) => {
                self.custom.remove(&e.request_id);
                self.stats
                    .custom_jobs_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!(code = %hashpool_sv2_io::text(&e.error_code), "the pool refused a declared job: mining pool jobs");
                self.fall_back();
            }
            MiningOwned::SubmitSharesSuccess(s) => {
                self.stats
                    .pool_shares_accepted
                    .fetch_add(s.new_submits_accepted_count as u64, Ordering::Relaxed);
            }
            MiningOwned::SubmitSharesError(e) => {
                self.stats
                    .pool_shares_rejected
                    .fetch_add(1, Ordering::Relaxed);
                debug!(code = %hashpool_sv2_io::text(&e.error_code), "the pool refused a share");
            }
            MiningOwned::CloseChannel(c) if c.channel_id == pool.channel_id => {
                warn!(reason = %hashpool_sv2_io::text(&c.reason_code), "the pool closed the channel: reconnecting");
                // Dropping the link's sender ends its session; it reconnects.
                self.on_event(Event::PoolLost);
            }
            other => debug!("ignoring pool message {other}"),
        }
    }

    fn on_custom_job_set(&mut self, d: Declaration, job: SetCustomMiningJobOwned, job_id: u32) {
        let Some(pool) = &self.pool else { return };
        if pool.opening != d.opening {
            return;
        }
        let txids = d.txs.iter().map(|t| t.compute_txid()).collect();
        let built = self.factory.new_extended_job_from_custom_job(
            job.clone(),
            pool.prefix.clone(),
            d.full_extranonce_size,
        );
        let ext = match built {
            Ok(e) => e,
            Err(e) => {
                warn!("cannot rebuild the custom job: {e:?}");
                return;
            }
        };
        let message = ext.get_job_message();
        let work = Work {
            upstream_job_id: job_id,
            opening: pool.opening,
            version: job.version,
            version_rolling_allowed: true,
            coinbase_prefix: message.coinbase_tx_prefix.as_ref().to_vec(),
            coinbase_suffix: message.coinbase_tx_suffix.as_ref().to_vec(),
            pool_prefix: pool.prefix.clone(),
            pool_size: pool.size,
            merkle_path: job
                .merkle_path
                .clone()
                .into_inner()
                .iter()
                .map(|h| h.to_array())
                .collect(),
            prev_hash: job.prev_hash.to_array(),
            nbits: job.nbits,
            min_ntime: job.min_ntime,
            upstream_target: pool.target,
            declared: Some(Declared {
                template_id: d.template.template_id,
                coinbase_prefix_bip141: d.coinbase_prefix_bip141,
                coinbase_suffix_bip141: d.coinbase_suffix_bip141,
                txids,
            }),
        };
        self.stats.custom_jobs_set.fetch_add(1, Ordering::Relaxed);
        info!(
            job_id,
            template_id = d.template.template_id,
            txs = d.txs.len(),
            "mining a declared job"
        );
        self.set_work(work);
    }

    /// Miners mine the pool's current job (if the work is not that already).
    fn fall_back(&mut self) {
        let Some(pool) = &self.pool else { return };
        let (Some(tip), Some(job)) = (&pool.tip, &pool.active_job) else {
            return;
        };
        if self.work.as_ref().is_some_and(|w| {
            w.declared.is_none() && w.upstream_job_id == job.job_id && w.opening == pool.opening
        }) {
            return;
        }
        let work = Work {
            upstream_job_id: job.job_id,
            opening: pool.opening,
            version: job.version,
            version_rolling_allowed: job.version_rolling_allowed,
            coinbase_prefix: job.coinbase_tx_prefix.as_ref().to_vec(),
            coinbase_suffix: job.coinbase_tx_suffix.as_ref().to_vec(),
            pool_prefix: pool.prefix.clone(),
            pool_size: pool.size,
            merkle_path: job
                .merkle_path
                .clone()
                .into_inner()
                .iter()
                .map(|h| h.to_array())
                .collect(),
            prev_hash: tip.prev_hash.to_array(),
            nbits: tip.nbits,
            min_ntime: job.min_ntime.clone().into_inner().unwrap_or(tip.min_ntime),
            upstream_target: pool.target,
            declared: None,
        };
        debug!(job_id = job.job_id, "mining the pool's job");
        self.set_work(work);
    }

    fn set_work(&mut self, work: Work) {
        self.stats
            .mining_declared
            .store(work.declared.is_some(), Ordering::Relaxed);
        let work = Arc::new(work);
        self.work = Some(work.clone());
        let conns: Vec<u64> = self.miners.keys().copied().collect();
        for conn in conns {
            let ids: Vec<u32> = self.miners[&conn].channels.keys().copied().collect();
            for id in ids {
                self.send_job(conn, id, &work);
            }
        }
    }

    /// A channel's next job on `work` (after a new tip: a future job and SetNewPrevHash).
    fn send_job(&mut self, conn: u64, channel_id: u32, work: &Arc<Work>) {
        let job_id = self.next_job_id;
        self.next_job_id = self.next_job_id.wrapping_add(1).max(1);
        let Some(miner) = self.miners.get_mut(&conn) else {
            return;
        };
        let Some(ch) = miner.channels.get_mut(&channel_id) else {
            return;
        };
        let new_tip = ch.tip != Some(work.prev_hash);
        if new_tip {
            ch.jobs.clear();
            ch.seen.clear();
            ch.tip = Some(work.prev_hash);
        }
        while ch.jobs.len() >= MAX_CHANNEL_JOBS {
            let Some(oldest) = ch.jobs.keys().min().copied() else {
                break;
            };
            ch.jobs.remove(&oldest);
        }
        ch.jobs.insert(job_id, work.clone());
        let min_ntime = if new_tip { None } else { Some(work.min_ntime) };
        let job = match ch.extended {
            Some(rollable) => {
                // The pool channel's prefix goes into the coinbase prefix, and the bytes after
                // the miner's rollable part (if the pool channel has more) into the suffix:
                // the miner's own extranonce prefix is just its index.
                let Some(pad) = work.pool_size.checked_sub(INDEX_BYTES + rollable) else {
                    return;
                };
                let prefix = [&work.coinbase_prefix[..], &work.pool_prefix[..]].concat();
                let suffix = [&vec![0u8; pad][..], &work.coinbase_suffix[..]].concat();
                let (Ok(p), Ok(s), Ok(path)) = (
                    B064KOwned::new(prefix),
                    B064KOwned::new(suffix),
                    binary_sv2::Seq0255Owned::new(
                        work.merkle_path
                            .iter()
                            .map(|h| U256Owned::from(*h))
                            .collect(),
                    ),
                ) else {
                    return;
                };
                MiningOwned::NewExtendedMiningJob(NewExtendedMiningJobOwned {
                    channel_id,
                    job_id,
                    min_ntime: binary_sv2::Sv2OptionOwned::new(min_ntime),
                    version: work.version,
                    version_rolling_allowed: work.version_rolling_allowed,
                    merkle_path: path,
                    coinbase_tx_prefix: p,
                    coinbase_tx_suffix: s,
                })
            }
            None => {
                let extranonce = work.extranonce(&ch.index, &[]);
                MiningOwned::NewMiningJob(NewMiningJobOwned {
                    channel_id,
                    job_id,
                    min_ntime: binary_sv2::Sv2OptionOwned::new(min_ntime),
                    version: work.version,
                    merkle_root: U256Owned::from(work.merkle_root(&extranonce)),
                })
            }
        };
        let mut ok = miner.tx.try_send(AnyMessageOwned::Mining(job)).is_ok();
        if new_tip {
            ok &= miner
                .tx
                .try_send(AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(
                    SetNewPrevHashOwned {
                        channel_id,
                        job_id,
                        prev_hash: U256Owned::from(work.prev_hash),
                        min_ntime: work.min_ntime,
                        nbits: work.nbits,
                    },
                )))
                .is_ok();
        }
        if !ok {
            warn!(conn, "a miner is not reading its jobs: dropping it");
            self.on_event(Event::MinerGone { conn });
        }
    }

    // ---- miners ----

    fn count_channels(&self) {
        let n: usize = self.miners.values().map(|m| m.channels.len()).sum();
        self.stats.channels.store(n as u64, Ordering::Relaxed);
    }

    fn allocate_index(&mut self) -> Option<[u8; INDEX_BYTES]> {
        for _ in 0..=u16::MAX as u32 {
            let i = self.next_index;
            self.next_index = self.next_index.wrapping_add(1);
            if self.used_indexes.insert(i) {
                return Some(i.to_be_bytes());
            }
        }
        None
    }

    fn reply(&mut self, conn: u64, m: MiningOwned) {
        if let Some(miner) = self.miners.get(&conn) {
            if miner.tx.try_send(AnyMessageOwned::Mining(m)).is_err() {
                warn!(conn, "a miner is not reading: dropping it");
                self.on_event(Event::MinerGone { conn });
            }
        }
    }

    fn open_error(&mut self, conn: u64, request_id: u32, code: &str) {
        info!(conn, code, "channel refused");
        self.reply(
            conn,
            MiningOwned::OpenMiningChannelError(OpenMiningChannelErrorOwned {
                request_id,
                error_code: hashpool_sv2_io::str0255(code),
            }),
        );
    }

    fn channel_target(&self, hashrate: f32, max_target: &Target) -> Option<Target> {
        let t = channels_sv2::target::hash_rate_to_target(
            hashrate as f64,
            self.config.shares_per_minute as f64,
        )
        .ok()?;
        Some(if t > *max_target { *max_target } else { t })
    }

    fn on_miner(&mut self, conn: u64, m: MiningOwned) {
        match m {
            MiningOwned::OpenStandardMiningChannel(o) => self.open(
                conn,
                o.request_id,
                o.nominal_hash_rate,
                target(&o.max_target),
                None,
            ),
            MiningOwned::OpenExtendedMiningChannel(o) => self.open(
                conn,
                o.request_id,
                o.nominal_hash_rate,
                target(&o.max_target),
                Some(o.min_extranonce_size as usize),
            ),
            MiningOwned::UpdateChannel(u) => {
                let Some(ch) = self
                    .miners
                    .get(&conn)
                    .and_then(|m| m.channels.get(&u.channel_id))
                else {
                    return;
                };
                let max = target(&u.maximum_target).min(ch.max_target);
                let Some(t) = self.channel_target(u.nominal_hash_rate, &max) else {
                    return;
                };
                if let Some(ch) = self
                    .miners
                    .get_mut(&conn)
                    .and_then(|m| m.channels.get_mut(&u.channel_id))
                {
                    ch.retarget(t, self.next_job_id);
                    ch.hashrate = u.nominal_hash_rate;
                }
                self.reply(
                    conn,
                    MiningOwned::SetTarget(SetTargetOwned {
                        channel_id: u.channel_id,
                        maximum_target: u256(&t),
                    }),
                );
            }
            MiningOwned::CloseChannel(c) => {
                if let Some(ch) = self
                    .miners
                    .get_mut(&conn)
                    .and_then(|m| m.channels.remove(&c.channel_id))
                {
                    self.used_indexes.remove(&u16::from_be_bytes(ch.index));
                }
                self.count_channels();
            }
            MiningOwned::SubmitSharesStandard(s) => self.on_share(
                conn,
                s.channel_id,
                s.sequence_number,
                s.job_id,
                ShareHeader {
                    version: s.version,
                    ntime: s.ntime,
                    nonce: s.nonce,
                },
                None,
            ),
            MiningOwned::SubmitSharesExtended(s) => self.on_share(
                conn,
                s.channel_id,
                s.sequence_number,
                s.job_id,
                ShareHeader {
                    version: s.version,
                    ntime: s.ntime,
                    nonce: s.nonce,
                },
                Some(s.extranonce.as_ref().to_vec()),
            ),
            other => debug!(conn, "ignoring miner message {other}"),
        }
    }

    fn open(
        &mut self,
        conn: u64,
        request_id: u32,
        hashrate: f32,
        max_target: Target,
        min_extranonce: Option<usize>,
    ) {
        let Some(pool) = &self.pool else {
            return self.open_error(conn, request_id, "no-upstream");
        };
        let (prefix, size) = (pool.prefix.clone(), pool.size);
        let rollable = size - INDEX_BYTES;
        if min_extranonce.is_some_and(|m| m > rollable) {
            return self.open_error(conn, request_id, "min-extranonce-size-too-large");
        }
        if !(hashrate.is_finite() && hashrate > 0.0) {
            return self.open_error(conn, request_id, "invalid-nominal-hashrate");
        }
        if max_target == Target::ZERO {
            return self.open_error(conn, request_id, "max-target-out-of-range");
        }
        let Some(t) = self.channel_target(hashrate, &max_target) else {
            return self.open_error(conn, request_id, "invalid-nominal-hashrate");
        };
        if !self.miners.contains_key(&conn) {
            return;
        }
        let Some(index) = self.allocate_index() else {
            return self.open_error(conn, request_id, "too-many-channels");
        };
        let channel_id = self.next_channel_id;
        self.next_channel_id = self.next_channel_id.wrapping_add(1).max(1);
        let success = match min_extranonce {
            Some(_) => B032Owned::new(index.to_vec()).map(|p| {
                MiningOwned::OpenExtendedMiningChannelSuccess(
                    OpenExtendedMiningChannelSuccessOwned {
                        request_id,
                        channel_id,
                        target: u256(&t),
                        extranonce_size: rollable as u16,
                        extranonce_prefix: p,
                        group_channel_id: 0,
                    },
                )
            }),
            None => B032Owned::new(standard_extranonce(&prefix, &index, size)).map(|p| {
                MiningOwned::OpenStandardMiningChannelSuccess(
                    OpenStandardMiningChannelSuccessOwned {
                        request_id,
                        channel_id,
                        target: u256(&t),
                        extranonce_prefix: p,
                        group_channel_id: 0,
                    },
                )
            }),
        };
        let Ok(success) = success else {
            self.used_indexes.remove(&u16::from_be_bytes(index));
            return self.open_error(conn, request_id, "internal-error");
        };
        if let Some(miner) = self.miners.get_mut(&conn) {
            miner.channels.insert(
                channel_id,
                Channel {
                    index,
                    extended: min_extranonce.map(|_| rollable),
                    target: t,
                    max_target,
                    jobs: HashMap::new(),
                    tip: None,
                    seen: HashSet::new(),
                    hashrate,
                    vardiff: VardiffState::new().expect("the default vardiff parameters are valid"),
                    before: None,
                },
            );
        }
        self.count_channels();
        info!(
            conn,
            channel_id,
            extended = min_extranonce.is_some(),
            "miner channel open"
        );
        self.reply(conn, success);
        if let Some(work) = self.work.clone() {
            self.send_job(conn, channel_id, &work);
        }
    }

    fn share_error(&mut self, conn: u64, channel_id: u32, sequence_number: u32, code: &str) {
        self.stats.shares_rejected.fetch_add(1, Ordering::Relaxed);
        self.reply(
            conn,
            MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
                channel_id,
                sequence_number,
                error_code: hashpool_sv2_io::str0255(code),
            }),
        );
    }

    fn on_share(
        &mut self,
        conn: u64,
        channel_id: u32,
        sequence_number: u32,
        job_id: u32,
        header: ShareHeader,
        rolled: Option<Vec<u8>>,
    ) {
        let Some(pool) = &self.pool else {
            return self.share_error(conn, channel_id, sequence_number, "no-upstream");
        };
        let opening = pool.opening;
        let Some(ch) = self
            .miners
            .get(&conn)
            .and_then(|m| m.channels.get(&channel_id))
        else {
            return self.share_error(conn, channel_id, sequence_number, "invalid-channel-id");
        };
        let Some(work) = ch.jobs.get(&job_id).cloned() else {
            let code = if job_id < self.next_job_id {
                "stale-share"
            } else {
                "invalid-job-id"
            };
            return self.share_error(conn, channel_id, sequence_number, code);
        };
        if work.opening != opening {
            return self.share_error(conn, channel_id, sequence_number, "stale-share");
        }
        let extranonce = match (ch.extended, rolled) {
            (Some(r), Some(e)) if e.len() == r => work.extranonce(&ch.index, &e),
            (None, None) => work.extranonce(&ch.index, &[]),
            _ => {
                return self.share_error(
                    conn,
                    channel_id,
                    sequence_number,
                    "invalid-extranonce-size",
                )
            }
        };
        let checked = match work.check(&extranonce, header, &ch.target_for(job_id)) {
            Ok(c) => c,
            Err(e) => return self.share_error(conn, channel_id, sequence_number, e.code()),
        };
        let Some(ch) = self
            .miners
            .get_mut(&conn)
            .and_then(|m| m.channels.get_mut(&channel_id))
        else {
            return;
        };
        if ch.seen.len() >= MAX_SEEN_SHARES {
            ch.seen.clear();
        }
        if !ch.seen.insert(checked.hash) {
            return self.share_error(conn, channel_id, sequence_number, "duplicate-share");
        }
        ch.vardiff.increment_shares_since_last_update();
        self.stats.shares_accepted.fetch_add(1, Ordering::Relaxed);
        self.reply(
            conn,
            MiningOwned::SubmitSharesSuccess(SubmitSharesSuccess {
                channel_id,
                last_sequence_number: sequence_number,
                new_submits_accepted_count: 1,
                new_shares_sum: 1,
            }),
        );
        self.forward(
            &work,
            &extranonce[work.pool_prefix.len()..],
            header,
            checked,
        );
        if checked.block {
            self.submit_block(&work, &extranonce, header, checked);
        }
    }

    fn forward(&mut self, work: &Work, extranonce: &[u8], header: ShareHeader, checked: Checked) {
        if !checked.for_pool {
            return;
        }
        let Some(pool) = &mut self.pool else { return };
        let Ok(extranonce) = B032Owned::new(extranonce.to_vec()) else {
            return;
        };
        pool.sequence = pool.sequence.wrapping_add(1);
        let share = SubmitSharesExtendedOwned {
            channel_id: pool.channel_id,
            sequence_number: pool.sequence,
            job_id: work.upstream_job_id,
            nonce: header.nonce,
            ntime: header.ntime,
            version: header.version,
            extranonce,
        };
        if pool
            .tx
            .try_send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesExtended(
                share,
            )))
            .is_ok()
        {
            self.stats.shares_forwarded.fetch_add(1, Ordering::Relaxed);
            if work.declared.is_some() {
                self.stats
                    .shares_forwarded_declared
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A block on a declared job: to the template provider (which connects it) and to the
    /// jd-server (which submits it to the pool's node).
    fn submit_block(
        &mut self,
        work: &Work,
        extranonce: &[u8],
        header: ShareHeader,
        checked: Checked,
    ) {
        let (Some(declared), Some(coinbase)) = (&work.declared, work.full_coinbase(extranonce))
        else {
            // A pool job: the pool, which has its transactions, submits it.
            return;
        };
        info!(hash = %checked.hash, template_id = declared.template_id, txs = declared.txids.len(), "block found on a declared job");
        self.stats.blocks_found.fetch_add(1, Ordering::Relaxed);
        self.stats.record_block(FoundBlock {
            hash: checked.hash,
            template_id: declared.template_id,
            txids: declared.txids.clone(),
        });
        if let (Some(tp), Ok(coinbase_tx)) = (&self.tp, B064KOwned::new(coinbase)) {
            let _ = tp.try_send(AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::SubmitSolution(SubmitSolutionOwned {
                    template_id: declared.template_id,
                    version: header.version,
                    header_timestamp: header.ntime,
                    header_nonce: header.nonce,
                    coinbase_tx,
                }),
            ));
        }
        if let (Some(jds), Ok(e)) = (&self.jds, B032Owned::new(extranonce.to_vec())) {
            let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
                JobDeclarationOwned::PushSolution(PushSolutionOwned {
                    extranonce: e,
                    prev_hash: U256Owned::from(work.prev_hash),
                    nonce: header.nonce,
                    ntime: header.ntime,
                    nbits: work.nbits,
                    version: header.version,
                }),
            ));
        }
    }
}

/// A standard channel's fixed extranonce: the pool channel's prefix, the channel's index,
/// zeros for the rest.
fn standard_extranonce(prefix: &[u8], index: &[u8; INDEX_BYTES], size: usize) -> Vec<u8> {
    let mut e = [prefix, &index[..]].concat();
    e.resize(prefix.len() + size, 0);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(target: Target) -> Channel {
        Channel {
            index: [0, 1],
            extended: None,
            target,
            max_target: Target::MAX,
            jobs: HashMap::new(),
            tip: None,
            seen: HashSet::new(),
            hashrate: 1.0,
            vardiff: VardiffState::new().expect("default vardiff"),
            before: None,
        }
    }

    #[test]
    fn shares_on_jobs_sent_before_a_retarget_are_judged_by_the_older_target() {
        let easy = Target::from_le_bytes([0xff; 32]);
        let mid = Target::from_le_bytes([0x0f; 32]);
        let hard = Target::from_le_bytes([0x01; 32]);
        let mut ch = channel(easy);
        assert_eq!(ch.target_for(3), easy);
        // Jobs 1..=4 were sent; vardiff makes the channel harder from job 5 on.
        ch.retarget(mid, 5);
        assert_eq!(ch.target_for(4), easy, "work found before the SetTarget");
        assert_eq!(ch.target_for(5), mid);
        // A second retarget soon after: every job sent before it keeps the easiest target
        // of the two (job 5 a little lenient rather than any job unfairly strict).
        ch.retarget(hard, 6);
        assert_eq!(ch.target_for(4), easy);
        assert_eq!(ch.target_for(5), easy);
        assert_eq!(ch.target_for(6), hard);
        // An easier target applies to every job at once.
        ch.retarget(easy, 7);
        assert_eq!(ch.target_for(6), easy);
        assert_eq!(ch.target_for(7), easy);
    }
}
