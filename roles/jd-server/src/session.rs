//! One job declarator client's connection: the Noise handshake, SetupConnection, and the
//! dispatch of its messages. Tokens are allocated here; declarations (with missing transactions
//! asked for) are handled in `declare` and pushed solutions in `solution`, both with the
//! checks of [`crate::declaration`].

mod declare;
mod solution;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use binary_sv2::{B0255Owned, B064KOwned};
use bitcoin::{consensus, Amount, TxOut};
use common_messages_sv2::Protocol;
use hashpool_job_declaration::SplitCoinbase;
use hashpool_sv2_io::{
    answer_setup, decode_frame, setup_refusal, str0255, Connection, ConnectionError, ServerIdentity,
};
use job_declaration_sv2::{
    AllocateMiningJobTokenSuccessOwned, DeclareMiningJobErrorOwned, DeclareMiningJobOwned,
};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, JobDeclarationOwned};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    declaration::{Allocated, DeclaredJob, Known, Refusal, TokenState},
    JdContext,
};

/// Tokens a connection may hold unused; beyond, the oldest are forgotten.
const MAX_TOKENS: usize = 1_024;
/// Accepted jobs a solution may still be for.
const RECENT_JOBS: usize = 16;

/// A declaration waiting for its missing transactions.
struct Pending {
    declare: DeclareMiningJobOwned,
    token: Vec<u8>,
    split: SplitCoinbase,
    known: Vec<Option<Known>>,
    missing: Vec<u16>,
}

struct Session {
    ctx: Arc<JdContext>,
    conn: Connection,
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
) -> Result<(), ConnectionError> {
    let peer = stream.peer_addr().map_err(|_| ConnectionError::Closed)?;
    let identity = ServerIdentity {
        public_key: ctx.config.authority_public_key,
        secret_key: ctx.config.authority_secret_key,
        cert_validity_secs: ctx.config.cert_validity_secs,
    };
    let conn =
        hashpool_sv2_io::accept(stream, peer, &identity, 32, Duration::from_secs(10)).await?;
    let _open = ctx.stats.connection_opened();
    // Setup is answered in the message loop: anything before it is refused there.
    let mut session = Session {
        ctx,
        conn,
        peer,
        setup_done: false,
        tokens: HashMap::new(),
        pending: HashMap::new(),
        jobs: VecDeque::new(),
    };
    loop {
        tokio::select! {
            frame = session.conn.recv_frame() => {
                let (_, message, _) = decode_frame(&mut frame?, &[])?;
                session.on_message(message).await?;
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

impl Session {
    async fn send(&mut self, message: JobDeclarationOwned) -> Result<(), ConnectionError> {
        self.conn.send(message).await
    }

    async fn on_message(&mut self, message: AnyMessageOwned) -> Result<(), ConnectionError> {
        match message {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(m)) => {
                if self.setup_done {
                    return Err(ConnectionError::Protocol("second SetupConnection".into()));
                }
                match answer_setup(&m, Protocol::JobDeclarationProtocol) {
                    Ok(success) => {
                        self.setup_done = true;
                        self.conn
                            .send(CommonMessagesOwned::SetupConnectionSuccess(success))
                            .await?;
                        Ok(())
                    }
                    Err(code) => {
                        self.conn.send(setup_refusal(code)).await?;
                        Err(ConnectionError::Protocol(format!(
                            "refused SetupConnection: {code}"
                        )))
                    }
                }
            }
            _ if !self.setup_done => Err(ConnectionError::Protocol(
                "message before SetupConnection".into(),
            )),
            AnyMessageOwned::JobDeclaration(m) => self.on_job_declaration(m).await,
            other => Err(ConnectionError::Protocol(format!(
                "a job declarator client does not send {other}"
            ))),
        }
    }

    async fn on_job_declaration(
        &mut self,
        message: JobDeclarationOwned,
    ) -> Result<(), ConnectionError> {
        match message {
            JobDeclarationOwned::AllocateMiningJobToken(m) => {
                let (payouts_height, payouts) = self.payouts_for_next_block().await;
                let token = self.allocate(payouts_height, payouts.clone());
                self.ctx.stats.token_allocated();
                // The pool's script first (the reward less the payouts, whatever it comes
                // to), then the payouts a coinbase at the next height must carry.
                let mut outputs = vec![TxOut {
                    value: Amount::ZERO,
                    script_pubkey: self.ctx.config.pool_script.clone(),
                }];
                outputs.extend(payouts);
                let reply = AllocateMiningJobTokenSuccessOwned {
                    request_id: m.request_id,
                    mining_job_token: B0255Owned::new(token).expect("16 bytes fit"),
                    coinbase_outputs: B064KOwned::new(consensus::serialize(&outputs)).expect(
                        "the pool script is at most 10,000 bytes (checked at start) and the \
                             payouts at most 1,000 of 34-byte scripts (payouts::outputs)",
                    ),
                };
                self.send(JobDeclarationOwned::AllocateMiningJobTokenSuccess(reply))
                    .await
            }
            JobDeclarationOwned::DeclareMiningJob(m) => {
                let request_id = m.request_id;
                match self.declare(m).await {
                    Ok(Some(reply)) => {
                        self.count_accepted(&reply);
                        self.send(reply).await
                    }
                    Ok(None) => Ok(()),
                    Err(refusal) => self.refuse(request_id, refusal).await,
                }
            }
            JobDeclarationOwned::ProvideMissingTransactionsSuccess(m) => {
                let request_id = m.request_id;
                match self.provided(m).await {
                    Ok(reply) => {
                        self.count_accepted(&reply);
                        self.send(reply).await
                    }
                    Err(refusal) => self.refuse(request_id, refusal).await,
                }
            }
            JobDeclarationOwned::PushSolution(m) => {
                self.push_solution(m).await;
                Ok(())
            }
            other => Err(ConnectionError::Protocol(format!(
                "a job declarator client does not send {other}"
            ))),
        }
    }

    /// Counts a declaration answered with its job token (not a request for transactions).
    fn count_accepted(&self, reply: &JobDeclarationOwned) {
        if matches!(reply, JobDeclarationOwned::DeclareMiningJobSuccess(_)) {
            self.ctx.stats.declaration(crate::metrics::DECLARED);
        }
    }

    /// The withdrawals a coinbase at the next height must pay, as the pool offers them for
    /// that height within its subsidy (fees are not known yet). On any trouble none: the
    /// declared block then pays none, and the pool settles the height without them.
    async fn payouts_for_next_block(&self) -> (Option<u32>, Vec<TxOut>) {
        let Some(client) = &self.ctx.payouts else {
            return (None, Vec::new());
        };
        let (chain, tip) = match self.ctx.rpc.chain().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("no payouts with this token: the node: {e}");
                return (None, Vec::new());
            }
        };
        let height = tip + 1;
        match client
            .offered(height, crate::declaration::subsidy(&chain, height))
            .await
        {
            Ok(payouts) => (Some(height), payouts),
            Err(e) => {
                tracing::warn!(height, "no payouts with this token: the pool: {e}");
                (None, Vec::new())
            }
        }
    }

    fn allocate(&mut self, payouts_height: Option<u32>, payouts: Vec<TxOut>) -> Vec<u8> {
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
                payouts_height,
                payouts,
            },
        );
        token.to_vec()
    }

    async fn refuse(
        &mut self,
        request_id: u32,
        Refusal(code, details): Refusal,
    ) -> Result<(), ConnectionError> {
        info!(peer = %self.peer, request_id, code, "declared job refused: {details}");
        self.ctx.stats.declaration(code);
        let reply = DeclareMiningJobErrorOwned {
            request_id,
            error_code: str0255(code),
            error_details: B064KOwned::new(details.into_bytes())
                .unwrap_or_else(|_| B064KOwned::new(Vec::new()).expect("empty")),
        };
        self.send(JobDeclarationOwned::DeclareMiningJobError(reply))
            .await
    }
}
