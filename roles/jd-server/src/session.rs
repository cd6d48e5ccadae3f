//! One job declarator client's connection: tokens, declarations (with missing transactions
//! asked for), solutions.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use binary_sv2::{B0255Owned, B064KOwned, Seq064KOwned};
use bitcoin::{
    block::{Header, Version as BlockVersion},
    consensus,
    hashes::Hash,
    script::{Builder, Instruction},
    Amount, Block, BlockHash, CompactTarget, Transaction, TxOut, Txid,
};
use common_messages_sv2::{Protocol, SetupConnectionErrorOwned, SetupConnectionSuccess};
use hashpool_job_declaration::{
    coinbase_merkle_path, split_coinbase, witness_commitment_script, JobCommitment, JobToken,
    SplitCoinbase,
};
use hashpool_sv2_io::{decode_frame, spawn_reader, str0255, SendError};
use job_declaration_sv2::{
    AllocateMiningJobTokenSuccessOwned, DeclareMiningJobErrorOwned, DeclareMiningJobOwned,
    DeclareMiningJobSuccessOwned, ProvideMissingTransactionsOwned,
    ProvideMissingTransactionsSuccessOwned, PushSolutionOwned,
    ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
    ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX, ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
    ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN,
    ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS, ERROR_CODE_DECLARE_MINING_JOB_STALE_CHAIN_TIP,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, JobDeclarationOwned};
use stratum_apps::network_helpers::{accept_noise_connection, noise_stream::NoiseTcpWriteHalf};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{rpc::RpcError, JdContext};

/// Tokens a connection may hold unused; beyond, the oldest are forgotten.
const MAX_TOKENS: usize = 1_024;
/// Accepted jobs a solution may still be for.
const RECENT_JOBS: usize = 16;
/// Declarations of one connection waiting for their missing transactions.
const MAX_PENDING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("noise: {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("peer closed the connection")]
    Closed,
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Free,
    /// A declaration waiting for its missing transactions uses it.
    Pending(u32),
    Used,
}

struct Allocated {
    expires: Instant,
    state: TokenState,
}

/// Where a declared transaction comes from.
#[derive(Clone)]
enum Known {
    Mempool { txid: Txid, fee: Amount },
    Provided(Transaction),
}

impl Known {
    fn txid(&self) -> Txid {
        match self {
            Known::Mempool { txid, .. } => *txid,
            Known::Provided(tx) => tx.compute_txid(),
        }
    }
}

struct Pending {
    declare: DeclareMiningJobOwned,
    token: Vec<u8>,
    split: SplitCoinbase,
    known: Vec<Option<Known>>,
    missing: Vec<u16>,
}

/// An accepted job: what a solution for it needs.
struct DeclaredJob {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    extranonce_len: usize,
    txids: Vec<Txid>,
    provided: HashMap<Txid, Transaction>,
}

/// A refusal: DeclareMiningJob.Error's code and details.
struct Refusal(&'static str, String);

impl From<RpcError> for Refusal {
    fn from(e: RpcError) -> Self {
        Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
            format!("the node: {e}"),
        )
    }
}

struct Session {
    ctx: Arc<JdContext>,
    writer: NoiseTcpWriteHalf,
    peer: std::net::SocketAddr,
    setup_done: bool,
    tokens: HashMap<Vec<u8>, Allocated>,
    pending: HashMap<u32, Pending>,
    jobs: VecDeque<DeclaredJob>,
}

pub async fn run(
    stream: tokio::net::TcpStream,
    ctx: Arc<JdContext>,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let peer = stream.peer_addr().map_err(|_| SessionError::Closed)?;
    let noise = accept_noise_connection(
        stream,
        ctx.config.authority_public_key,
        ctx.config.authority_secret_key,
        ctx.config.cert_validity_secs,
    )
    .await
    .map_err(SessionError::Noise)?;
    let (reader, writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 32);
    let mut session = Session {
        ctx,
        writer,
        peer,
        setup_done: false,
        tokens: HashMap::new(),
        pending: HashMap::new(),
        jobs: VecDeque::new(),
    };
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(_)) | None => return Err(SessionError::Closed),
                };
                let (_, message, _) = decode_frame(&mut frame, &[])?;
                session.on_message(message).await?;
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Session {
    async fn send(&mut self, message: JobDeclarationOwned) -> Result<(), SessionError> {
        Ok(hashpool_sv2_io::send(&mut self.writer, message).await?)
    }

    async fn on_message(&mut self, message: AnyMessageOwned) -> Result<(), SessionError> {
        match message {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(m)) => {
                if self.setup_done {
                    return Err(SessionError::Protocol("second SetupConnection".into()));
                }
                if m.protocol != Protocol::JobDeclarationProtocol
                    || m.min_version > 2
                    || m.max_version < 2
                {
                    let code = if m.protocol != Protocol::JobDeclarationProtocol {
                        "unsupported-protocol"
                    } else {
                        "protocol-version-mismatch"
                    };
                    hashpool_sv2_io::send(
                        &mut self.writer,
                        CommonMessagesOwned::SetupConnectionError(SetupConnectionErrorOwned {
                            flags: 0,
                            error_code: str0255(code),
                        }),
                    )
                    .await?;
                    return Err(SessionError::Protocol(format!(
                        "refused SetupConnection: {code}"
                    )));
                }
                self.setup_done = true;
                hashpool_sv2_io::send(
                    &mut self.writer,
                    CommonMessagesOwned::SetupConnectionSuccess(SetupConnectionSuccess {
                        used_version: 2,
                        flags: 0,
                    }),
                )
                .await?;
                Ok(())
            }
            _ if !self.setup_done => Err(SessionError::Protocol(
                "message before SetupConnection".into(),
            )),
            AnyMessageOwned::JobDeclaration(m) => self.on_job_declaration(m).await,
            other => Err(SessionError::Protocol(format!(
                "a job declarator client does not send {other}"
            ))),
        }
    }

    async fn on_job_declaration(
        &mut self,
        message: JobDeclarationOwned,
    ) -> Result<(), SessionError> {
        match message {
            JobDeclarationOwned::AllocateMiningJobToken(m) => {
                let token = self.allocate();
                let outputs = vec![TxOut {
                    // The whole reward, whatever it comes to, goes to this script.
                    value: Amount::ZERO,
                    script_pubkey: self.ctx.config.pool_script.clone(),
                }];
                let reply = AllocateMiningJobTokenSuccessOwned {
                    request_id: m.request_id,
                    mining_job_token: B0255Owned::new(token).expect("16 bytes fit"),
                    coinbase_outputs: B064KOwned::new(consensus::serialize(&outputs))
                        .expect("the pool script is at most 10,000 bytes (checked at start)"),
                };
                self.send(JobDeclarationOwned::AllocateMiningJobTokenSuccess(reply))
                    .await
            }
            JobDeclarationOwned::DeclareMiningJob(m) => {
                let request_id = m.request_id;
                match self.declare(m).await {
                    Ok(Some(reply)) => self.send(reply).await,
                    Ok(None) => Ok(()),
                    Err(refusal) => self.refuse(request_id, refusal).await,
                }
            }
            JobDeclarationOwned::ProvideMissingTransactionsSuccess(m) => {
                let request_id = m.request_id;
                match self.provided(m).await {
                    Ok(reply) => self.send(reply).await,
                    Err(refusal) => self.refuse(request_id, refusal).await,
                }
            }
            JobDeclarationOwned::PushSolution(m) => {
                self.push_solution(m).await;
                Ok(())
            }
            other => Err(SessionError::Protocol(format!(
                "a job declarator client does not send {other}"
            ))),
        }
    }

    fn allocate(&mut self) -> Vec<u8> {
        let now = Instant::now();
        self.tokens
            .retain(|_, a| a.expires > now && a.state != TokenState::Used);
        if self.tokens.len() >= MAX_TOKENS {
            if let Some(oldest) = self
                .tokens
                .iter()
                .filter(|(_, a)| a.state == TokenState::Free)
                .min_by_key(|(_, a)| a.expires)
                .map(|(k, _)| k.clone())
            {
                self.tokens.remove(&oldest);
            }
        }
        let token: [u8; 16] = rand::random();
        let lifetime = Duration::from_secs(self.ctx.config.token_lifetime_secs);
        self.tokens.insert(
            token.to_vec(),
            Allocated {
                expires: now + lifetime,
                state: TokenState::Free,
            },
        );
        token.to_vec()
    }

    async fn refuse(
        &mut self,
        request_id: u32,
        Refusal(code, details): Refusal,
    ) -> Result<(), SessionError> {
        info!(peer = %self.peer, request_id, code, "declared job refused: {details}");
        let reply = DeclareMiningJobErrorOwned {
            request_id,
            error_code: str0255(code),
            error_details: B064KOwned::new(details.into_bytes())
                .unwrap_or_else(|_| B064KOwned::new(Vec::new()).expect("empty")),
        };
        self.send(JobDeclarationOwned::DeclareMiningJobError(reply))
            .await
    }

    /// Checks the token and the coinbase, looks the transactions up; asks for the missing ones
    /// (`Ok(Some(ProvideMissingTransactions))`) or finishes.
    async fn declare(
        &mut self,
        m: DeclareMiningJobOwned,
    ) -> Result<Option<JobDeclarationOwned>, Refusal> {
        let token = m.mining_job_token.as_ref().to_vec();
        let invalid_token = |why: &str| {
            Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN,
                why.to_string(),
            )
        };
        match self.tokens.get(&token) {
            None => {
                return Err(invalid_token(
                    "not a token this server allocated to this connection",
                ))
            }
            Some(a) if a.state == TokenState::Used => {
                return Err(invalid_token("already used for an accepted job"))
            }
            Some(a) if matches!(a.state, TokenState::Pending(_)) => {
                return Err(invalid_token(
                    "in use by a declaration waiting for its transactions",
                ))
            }
            Some(a) if a.expires <= Instant::now() => return Err(invalid_token("expired")),
            Some(_) => {}
        }
        if self.pending.contains_key(&m.request_id) {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                "a declaration with this request id is still waiting for its transactions".into(),
            ));
        }
        let split = split_coinbase(m.coinbase_tx_prefix.as_ref(), m.coinbase_tx_suffix.as_ref())
            .map_err(|e| {
                Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                    e.to_string(),
                )
            })?;
        // The witness reserved value the commitment is computed with, as every SV2 coinbase.
        let witness = &split.tx.input[0].witness;
        if witness.len() != 1 || witness.nth(0) != Some(&[0u8; 32][..]) {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "the coinbase witness must be one 32-byte all-zero item".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(i) = m.wtxid_list.iter().position(|w| !seen.insert(w.to_array())) {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                format!("the transaction at position {i} is listed twice"),
            ));
        }
        let wtxids: Vec<bitcoin::Wtxid> = m
            .wtxid_list
            .iter()
            .map(|w| bitcoin::Wtxid::from_byte_array(w.to_array()))
            .collect();
        let mempool = self.ctx.mempool_for(&wtxids).await?;
        let mut known = Vec::with_capacity(m.wtxid_list.iter().count());
        let mut missing = Vec::new();
        for (i, wtxid) in wtxids.iter().enumerate() {
            match mempool.get(wtxid) {
                Some(e) => known.push(Some(Known::Mempool {
                    txid: e.txid,
                    fee: e.fee,
                })),
                None => {
                    known.push(None);
                    missing.push(u16::try_from(i).map_err(|_| {
                        Refusal(
                            ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                            "too many transactions".into(),
                        )
                    })?);
                }
            }
        }
        let request_id = m.request_id;
        let pending = Pending {
            declare: m,
            token,
            split,
            known,
            missing,
        };
        if pending.missing.is_empty() {
            return self.finish(pending).await.map(Some);
        }
        self.expire_pending();
        if self.pending.len() >= MAX_PENDING {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                format!("{MAX_PENDING} declarations already wait for their transactions"),
            ));
        }
        debug!(peer = %self.peer, request_id, missing = pending.missing.len(), "asking for missing transactions");
        let ask = ProvideMissingTransactionsOwned {
            request_id,
            unknown_tx_position_list: Seq064KOwned::new(pending.missing.clone())
                .expect("fewer than 65536 positions"),
        };
        if let Some(a) = self.tokens.get_mut(&pending.token) {
            a.state = TokenState::Pending(request_id);
        }
        self.pending.insert(request_id, pending);
        Ok(Some(JobDeclarationOwned::ProvideMissingTransactions(ask)))
    }

    /// Drops waiting declarations whose token expired (their tokens go with them).
    fn expire_pending(&mut self) {
        let now = Instant::now();
        let tokens = &mut self.tokens;
        self.pending.retain(|_, p| {
            let alive = tokens.get(&p.token).is_some_and(|a| a.expires > now);
            if !alive {
                tokens.remove(&p.token);
            }
            alive
        });
    }

    async fn provided(
        &mut self,
        m: ProvideMissingTransactionsSuccessOwned,
    ) -> Result<JobDeclarationOwned, Refusal> {
        let mut pending = self.pending.remove(&m.request_id).ok_or_else(|| {
            Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
                "no declaration is waiting for transactions under this request id".into(),
            )
        })?;
        // Whatever happens now, the token is no longer held by a waiting declaration.
        match self.tokens.get_mut(&pending.token) {
            Some(a) if a.expires > Instant::now() => a.state = TokenState::Free,
            _ => {
                return Err(Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN,
                    "expired while waiting for the transactions".into(),
                ))
            }
        }
        let txs: Vec<&[u8]> = m.transaction_list.iter().map(|t| t.as_ref()).collect();
        if txs.len() != pending.missing.len() {
            return Err(Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
                format!(
                    "{} transactions asked for, {} provided",
                    pending.missing.len(),
                    txs.len()
                ),
            ));
        }
        let declared: Vec<[u8; 32]> = pending
            .declare
            .wtxid_list
            .iter()
            .map(|w| w.to_array())
            .collect();
        for (position, raw) in pending.missing.iter().zip(txs) {
            let tx: Transaction = consensus::deserialize(raw).map_err(|e| {
                Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
                    format!("transaction at position {position} does not decode: {e}"),
                )
            })?;
            if tx.compute_wtxid().to_byte_array() != declared[usize::from(*position)] {
                return Err(Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_MISSING_TXS,
                    format!(
                        "the transaction provided for position {position} is not the one declared"
                    ),
                ));
            }
            pending.known[usize::from(*position)] = Some(Known::Provided(tx));
        }
        self.finish(pending).await
    }

    /// Every transaction known: the coinbase's height and the pool's output, then the token.
    async fn finish(&mut self, pending: Pending) -> Result<JobDeclarationOwned, Refusal> {
        let Pending {
            declare,
            token,
            split,
            known,
            ..
        } = pending;
        let known: Vec<Known> = known.into_iter().flatten().collect();
        let coinbase = &split.tx;
        let (chain, tip_height) = self.ctx.rpc.chain().await?;
        let next_height = tip_height + 1;
        // BIP34 as consensus reads it: the minimal push of the height, before the extranonce.
        let expected = Builder::new()
            .push_int(i64::from(next_height))
            .into_script();
        if !split.script_sig_prefix.starts_with(expected.as_bytes()) {
            return Err(match bip34_height(coinbase) {
                Some(h) if h < next_height => Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_STALE_CHAIN_TIP,
                    format!("the coinbase is for height {h}; the next block is {next_height}"),
                ),
                _ => Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                    format!(
                        "the coinbase scriptSig must start with the minimal push of the next height, {next_height} (BIP34)"
                    ),
                ),
            });
        }
        let height = next_height;
        let fees = known
            .iter()
            .filter_map(|k| match k {
                Known::Mempool { fee, .. } => Some(*fee),
                Known::Provided(_) => None,
            })
            .try_fold(Amount::ZERO, |a, f| a.checked_add(f))
            .ok_or_else(|| {
                Refusal(
                    ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
                    "fee overflow".into(),
                )
            })?;
        let reward = subsidy(&chain, height) + fees;
        let bad_coinbase =
            |why: String| Refusal(ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX, why);
        let mut total = Amount::ZERO;
        let mut paid = Amount::ZERO;
        let mut pays_pool = false;
        for output in &coinbase.output {
            if output.value > Amount::MAX_MONEY {
                return Err(bad_coinbase(format!(
                    "an output pays {} sat, more than all bitcoin",
                    output.value.to_sat()
                )));
            }
            total = total
                .checked_add(output.value)
                .ok_or_else(|| bad_coinbase("the outputs' sum overflows".into()))?;
            if output.script_pubkey == self.ctx.config.pool_script {
                pays_pool = true;
                paid = paid
                    .checked_add(output.value)
                    .ok_or_else(|| bad_coinbase("the outputs' sum overflows".into()))?;
            }
        }
        if !pays_pool {
            return Err(bad_coinbase(
                "no output pays the pool's script (AllocateMiningJobToken.Success.coinbase_outputs)".into(),
            ));
        }
        if paid < reward {
            return Err(bad_coinbase(format!(
                "the pool's output pays {} sat; the block's reward is {} sat (subsidy and the fees of the mempool's transactions)",
                paid.to_sat(),
                reward.to_sat()
            )));
        }
        if total > reward {
            return Err(bad_coinbase(format!(
                "the coinbase pays {} sat in all, more than the block's reward of {} sat",
                total.to_sat(),
                reward.to_sat()
            )));
        }
        let wtxids: Vec<bitcoin::Wtxid> = declare
            .wtxid_list
            .iter()
            .map(|w| bitcoin::Wtxid::from_byte_array(w.to_array()))
            .collect();
        let commitment_script = witness_commitment_script(&wtxids);
        if !coinbase
            .output
            .iter()
            .any(|o| o.script_pubkey == commitment_script)
        {
            return Err(bad_coinbase(
                "the witness commitment for these transactions is missing or wrong".into(),
            ));
        }

        let txids: Vec<Txid> = known.iter().map(Known::txid).collect();
        let merkle_path = coinbase_merkle_path(&txids);
        let input = &coinbase.input[0];
        let commitment = JobCommitment::new(
            declare.version,
            coinbase.version.0 as u32,
            &split.script_sig_prefix,
            split.extranonce_len,
            input.sequence.0,
            &coinbase.output,
            coinbase.lock_time.to_consensus_u32(),
            &merkle_path,
        );
        let expires_at = unix_now() + self.ctx.config.token_lifetime_secs;
        let job_token = JobToken::issue(
            &self.ctx.config.authority_secret_key.into_bytes(),
            &commitment,
            expires_at,
        )
        .map_err(|e| Refusal(ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR, e.to_string()))?;
        if let Some(a) = self.tokens.get_mut(&token) {
            a.state = TokenState::Used;
        }
        let provided = known
            .into_iter()
            .filter_map(|k| match k {
                Known::Provided(tx) => Some((tx.compute_txid(), tx)),
                Known::Mempool { .. } => None,
            })
            .collect();
        self.jobs.push_back(DeclaredJob {
            prefix: declare.coinbase_tx_prefix.as_ref().to_vec(),
            suffix: declare.coinbase_tx_suffix.as_ref().to_vec(),
            extranonce_len: split.extranonce_len,
            txids,
            provided,
        });
        while self.jobs.len() > RECENT_JOBS {
            self.jobs.pop_front();
        }
        info!(
            peer = %self.peer,
            request_id = declare.request_id,
            height,
            transactions = self.jobs.back().map(|j| j.txids.len()).unwrap_or(0),
            "declared job accepted"
        );
        Ok(JobDeclarationOwned::DeclareMiningJobSuccess(
            DeclareMiningJobSuccessOwned {
                request_id: declare.request_id,
                new_mining_job_token: B0255Owned::new(job_token).expect("a job token fits"),
            },
        ))
    }

    /// Rebuilds the block of the accepted job the solution is for and submits it to the node.
    async fn push_solution(&mut self, m: PushSolutionOwned) {
        let extranonce = m.extranonce.as_ref().to_vec();
        let prev_hash = BlockHash::from_byte_array(m.prev_hash.to_array());
        for job in self.jobs.iter().rev() {
            if job.extranonce_len != extranonce.len() {
                continue;
            }
            let bytes = [job.prefix.as_slice(), &extranonce, job.suffix.as_slice()].concat();
            let Ok(coinbase) = consensus::deserialize::<Transaction>(&bytes) else {
                continue;
            };
            // Proof of work first, from the coinbase and the stored txids: a junk solution
            // costs no call to the node.
            let mut root = coinbase.compute_txid().to_byte_array();
            for step in coinbase_merkle_path(&job.txids) {
                let mut data = [0u8; 64];
                data[..32].copy_from_slice(&root);
                data[32..].copy_from_slice(&step);
                root = bitcoin::hashes::sha256d::Hash::hash(&data).to_byte_array();
            }
            let header = Header {
                version: BlockVersion::from_consensus(m.version as i32),
                prev_blockhash: prev_hash,
                merkle_root: bitcoin::TxMerkleNode::from_byte_array(root),
                time: m.ntime,
                bits: CompactTarget::from_consensus(m.nbits),
                nonce: m.nonce,
            };
            if !header.target().is_met_by(header.block_hash()) {
                continue;
            }
            let mut txdata = Vec::with_capacity(job.txids.len() + 1);
            txdata.push(coinbase);
            for txid in &job.txids {
                let tx = match job.provided.get(txid) {
                    Some(tx) => tx.clone(),
                    None => match self.ctx.rpc.transaction(txid).await {
                        Ok(tx) => tx,
                        Err(e) => {
                            warn!(peer = %self.peer, %txid, "solution's transaction not found: {e}");
                            return;
                        }
                    },
                };
                txdata.push(tx);
            }
            let block = Block { header, txdata };
            let hash = block.block_hash();
            match self.ctx.rpc.submit_block(&block).await {
                Ok(None) => {
                    info!(peer = %self.peer, %hash, "block submitted and accepted by the node")
                }
                Ok(Some(reason)) => {
                    warn!(peer = %self.peer, %hash, "node refused the block: {reason}")
                }
                Err(e) => warn!(peer = %self.peer, %hash, "could not submit the block: {e}"),
            }
            return;
        }
        warn!(peer = %self.peer, "a pushed solution matches no job this connection declared");
    }
}

/// The height a coinbase's scriptSig starts with (BIP34).
fn bip34_height(coinbase: &Transaction) -> Option<u32> {
    let first = coinbase
        .input
        .first()?
        .script_sig
        .instructions()
        .next()?
        .ok()?;
    let height = match first {
        Instruction::Op(op) => {
            let code = op.to_u8();
            // OP_1..OP_16 push 1..16.
            (0x51..=0x60)
                .contains(&code)
                .then(|| i64::from(code - 0x50))?
        }
        Instruction::PushBytes(bytes) => bitcoin::script::read_scriptint(bytes.as_bytes()).ok()?,
    };
    u32::try_from(height).ok()
}

/// The block subsidy at `height` on `chain` (regtest halves every 150 blocks).
fn subsidy(chain: &str, height: u32) -> Amount {
    let interval = if chain == "regtest" { 150 } else { 210_000 };
    let halvings = height / interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(5_000_000_000 >> halvings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{
        absolute::LockTime, script::Builder, transaction::Version, OutPoint, Sequence, TxIn,
        Witness,
    };

    fn coinbase_at(script_sig: bitcoin::ScriptBuf) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![],
        }
    }

    #[test]
    fn heights_are_read_as_bip34_writes_them() {
        for height in [1u32, 16, 17, 150, 1_000, 840_000] {
            let script = Builder::new()
                .push_int(i64::from(height))
                .push_slice(b"tag")
                .into_script();
            assert_eq!(bip34_height(&coinbase_at(script)), Some(height));
        }
        assert_eq!(bip34_height(&coinbase_at(bitcoin::ScriptBuf::new())), None);
    }

    #[test]
    fn subsidy_halves_per_chain() {
        assert_eq!(subsidy("regtest", 149), Amount::from_sat(5_000_000_000));
        assert_eq!(subsidy("regtest", 150), Amount::from_sat(2_500_000_000));
        assert_eq!(subsidy("testnet4", 150), Amount::from_sat(5_000_000_000));
        assert_eq!(
            subsidy("testnet4", 210_000),
            Amount::from_sat(2_500_000_000)
        );
        assert_eq!(subsidy("main", 64 * 210_000), Amount::ZERO);
    }
}
