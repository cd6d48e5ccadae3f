//! One miner connection: its task reads frames, applies them to the connection's channels,
//! follows job events, runs vardiff and sends what results, in that order, until the miner
//! goes, misbehaves or meets a limit.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use common_messages_sv2::Protocol;
use ext_mint_quote::MintQuoteMessage;
use hashpool_sv2_io::{
    accept_transport, answer_extensions, answer_setup, decode_received, encode, setup_refusal,
    ConnectionError, FrameWriter, ReceiveError, Received, ServerIdentity,
};
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned, MiningOwned,
    Tlv,
};
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    admission::{Admitted, LimitReason},
    channel_set::ChannelSet,
    custom, open,
    registry::Announcer,
    shares, MinerHandles,
};
use crate::{accepted_share::AcceptedShare, ledger::Receipts};

/// Largest payload a miner has reason to send (SetCustomMiningJob with a full coinbase is
/// well under this); anything bigger is refused before decoding.
pub const MAX_MINER_FRAME_PAYLOAD: usize = 1 << 17;
/// Frames already received that are handled together before their replies go out.
const MAX_FRAMES_PER_COMMIT: usize = 255;
/// Replies waiting for their shares to be durable, at most; beyond that the connection stops
/// reading until the oldest goes out.
const MAX_OUTBOX: usize = 16;

/// Replies waiting for the shares they acknowledge (and every share before them).
struct Outgoing {
    receipts: VecDeque<Receipts>,
    messages: Vec<AnyMessageOwned>,
    /// The connection closes once these replies are sent.
    close: Option<MinerError>,
}

/// Waits until every receipt of `out` resolved. Cancel-safe: a receipt is removed only once it
/// resolved. A share the ledger refuses (its key's accrual would overflow) closes this miner's
/// connection before anything acknowledges it; other miners' shares are not affected.
async fn settle(out: &mut Outgoing) -> Result<(), MinerError> {
    while let Some(receipts) = out.receipts.front_mut() {
        let outcomes = receipts.await;
        out.receipts.pop_front();
        let Ok(outcomes) = outcomes else {
            return Err(MinerError::Ledger("ledger writer stopped".into()));
        };
        for outcome in outcomes {
            match outcome {
                Ok(true) => {}
                Ok(false) => warn!("a share already in the ledger was not credited again"),
                Err(e) => return Err(MinerError::Ledger(e.to_string())),
            }
        }
    }
    Ok(())
}

/// The next quote announcement, or never while the connection has none.
async fn next_announcement(
    announcements: &mut Option<mpsc::UnboundedReceiver<MintQuoteMessage>>,
) -> Option<MintQuoteMessage> {
    match announcements {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// [`settle`] for the oldest waiting replies.
async fn settle_front(outbox: &mut VecDeque<Outgoing>) -> Result<(), MinerError> {
    match outbox.front_mut() {
        Some(front) => settle(front).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error(transparent)]
    Connection(ConnectionError),
    #[error("undecodable frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("connection closed")]
    Closed,
    #[error("unreadable transport frame (bad encryption or framing): {0}")]
    Transport(String),
    #[error("accepted shares could not be made durable, so they are not acknowledged: {0}")]
    Ledger(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("limit `{}` met: {detail}", reason.as_str())]
    Limit { reason: LimitReason, detail: String },
}

/// Accepts miners until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<MinerHandles>, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let _ = stream.set_nodelay(true);
        let (ctx, shutdown) = (ctx.clone(), stop.clone());
        // Checked before the handshake: a refused connection costs one accept and a close.
        let admitted = ctx.admission.admit(peer.ip());
        async move {
            let admitted = match admitted {
                Ok(a) => a,
                Err(reason) => {
                    warn!(%peer, limit = reason.as_str(), "miner connection refused");
                    return;
                }
            };
            match Connection::run(stream, &ctx, admitted, shutdown).await {
                Ok(()) | Err(MinerError::Closed) => debug!(%peer, "miner disconnected"),
                // Port probes (health checks, load balancers) connect and close at once.
                Err(MinerError::Connection(e)) if e.is_probe() => {
                    debug!(%peer, "connection closed before the Noise handshake")
                }
                // A connection that set up and then did nothing (a proxy without miners, a
                // miner gone quiet) is routine; other limits point at a hostile peer.
                Err(
                    e @ MinerError::Limit {
                        reason: LimitReason::FirstChannelTimeout | LimitReason::IdleTimeout,
                        ..
                    },
                ) => info!(%peer, "miner connection closed: {e}"),
                Err(e) => warn!(%peer, "miner connection dropped: {e}"),
            }
        }
    })
    .await
}

struct Connection {
    client_id: usize,
    /// Quote announcements for this connection, once it negotiated the mint-quote extension
    /// (the registry holds the sender). Made then, not before: a channel costs a block of
    /// slots, and most connections never announce.
    announcements: Option<mpsc::UnboundedReceiver<MintQuoteMessage>>,
    writer: FrameWriter,
    channels: Arc<Mutex<ChannelSet>>,
    setup_done: bool,
    /// Set when a reply must be the last thing the connection sends.
    close_after_send: Option<MinerError>,
    /// Extensions agreed with RequestExtensions (their TLVs are read, their messages sent).
    negotiated: Vec<u16>,
    /// Shares accepted since the last send, to be made durable before anything is sent.
    accepted: Vec<AcceptedShare>,
    /// A channel was opened at some point (the first-channel deadline no longer applies).
    had_channel: bool,
    write_timeout: Duration,
}

/// The deadlines a connection must meet, from `limits`.
struct Deadlines {
    setup: Instant,
    first_channel: Instant,
    idle: Duration,
    last_frame: Instant,
}

impl Deadlines {
    /// The next deadline that applies and the limit it enforces.
    fn next(&self, setup_done: bool, had_channel: bool) -> (Instant, LimitReason) {
        let mut next = (self.last_frame + self.idle, LimitReason::IdleTimeout);
        if !setup_done && self.setup < next.0 {
            next = (self.setup, LimitReason::SetupTimeout);
        }
        if !had_channel && self.first_channel < next.0 {
            next = (self.first_channel, LimitReason::FirstChannelTimeout);
        }
        next
    }
}

impl Connection {
    async fn run(
        stream: tokio::net::TcpStream,
        ctx: &Arc<MinerHandles>,
        admitted: Admitted,
        shutdown: CancellationToken,
    ) -> Result<(), MinerError> {
        let result = Self::serve(stream, ctx, shutdown).await;
        drop(admitted);
        if let Err(MinerError::Limit { reason, .. }) = &result {
            ctx.admission.count(*reason);
        }
        result
    }

    async fn serve(
        stream: tokio::net::TcpStream,
        ctx: &Arc<MinerHandles>,
        shutdown: CancellationToken,
    ) -> Result<(), MinerError> {
        let limits = &ctx.config.limits;
        let accepted_at = Instant::now();
        let setup_timeout = Duration::from_secs(limits.setup_timeout_secs);
        let identity = ServerIdentity {
            public_key: ctx.config.authority_public_key,
            secret_key: ctx.config.pool.authority_secret_key,
            cert_validity_secs: ctx.config.pool.cert_validity_secs,
        };
        let (mut frames, writer) =
            accept_transport(stream, &identity, setup_timeout, MAX_MINER_FRAME_PAYLOAD)
                .await
                .map_err(|e| match e {
                    ConnectionError::Timeout(_) => MinerError::Limit {
                        reason: LimitReason::SetupTimeout,
                        detail: format!("no Noise handshake within {setup_timeout:?}"),
                    },
                    other => MinerError::Connection(other),
                })?;
        // This task reads the frames itself, in bursts (one ledger commit for all, one read
        // from the socket), and writes each burst of replies at once, under a time-out.
        let mut job_events = ctx.jobs.subscribe();
        let client_id = ctx.next_client_id();
        let channels = Arc::new(Mutex::new(ChannelSet::new(
            client_id,
            ctx.next_channel_id(),
        )));
        ctx.registry.insert(client_id, channels.clone());
        ctx.stats.connection_opened();
        let mut conn = Connection {
            client_id,
            announcements: None,
            writer,
            channels,
            setup_done: false,
            close_after_send: None,
            negotiated: Vec::new(),
            accepted: Vec::new(),
            had_channel: false,
            write_timeout: Duration::from_secs(limits.write_timeout_secs),
        };
        let mut deadlines = Deadlines {
            setup: accepted_at + setup_timeout,
            first_channel: accepted_at + Duration::from_secs(limits.first_channel_timeout_secs),
            idle: Duration::from_secs(limits.idle_timeout_secs),
            last_frame: Instant::now(),
        };
        let mut vardiff = tokio::time::interval(Duration::from_secs(
            ctx.config.pool.vardiff_interval_secs.max(1),
        ));
        vardiff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A batch not yet full is acknowledged at most this long after its first share: the
        // deadline is armed by an accepted share, so an idle connection has no timer to wake.
        let ack_every = Duration::from_millis(ctx.config.pool.share_ack_interval_ms.max(1));
        let ack_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(ack_timer);
        let mut ack_armed = false;

        // Replies wait here, in order, until the shares they acknowledge are durable; frames
        // keep being read meanwhile, so the next shares join the next ledger commit.
        let mut outbox: VecDeque<Outgoing> = VecDeque::new();
        // A reply that must be the last one is queued: nothing more is read.
        let mut closing = false;
        // One timer for the limits, re-armed only when it fires: deadlines only move later
        // (each frame pushes the idle one), so a fired timer either meets a limit or is set to
        // the deadline that now applies. A fresh timer per loop would cost a timer-wheel
        // insertion and removal per burst of frames.
        let limit_timer = tokio::time::sleep_until(deadlines.next(false, false).0);
        tokio::pin!(limit_timer);
        let result = loop {
            let out = tokio::select! {
                frame = frames.next(), if !closing && outbox.len() < MAX_OUTBOX => {
                    deadlines.last_frame = Instant::now();
                    let mut out = match conn.on_frame(ctx, frame) {
                        Ok(out) => out,
                        Err(e) => break Err(e),
                    };
                    // Frames already waiting are handled before anything is sent, so one
                    // ledger commit covers all their shares.
                    let mut failed = None;
                    for _ in 0..MAX_FRAMES_PER_COMMIT {
                        let Some(next) = frames.try_next() else { break };
                        match conn.on_frame(ctx, next) {
                            Ok(more) => out.extend(more),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        break Err(e);
                    }
                    if !conn.had_channel {
                        let opened = !conn.lock().channels().is_empty();
                        conn.had_channel = opened;
                    }
                    if !conn.accepted.is_empty() && !ack_armed {
                        ack_timer.as_mut().reset(Instant::now() + ack_every);
                        ack_armed = true;
                    }
                    out
                }
                settled = settle_front(&mut outbox), if !outbox.is_empty() => {
                    if let Err(e) = settled {
                        break Err(e);
                    }
                    let Some(ready) = outbox.pop_front() else { continue };
                    if let Err(e) = conn.send_all(ready.messages).await {
                        break Err(e);
                    }
                    if let Some(e) = ready.close {
                        break Err(e);
                    }
                    continue;
                }
                _ = &mut limit_timer, if !closing => {
                    let (deadline, limit) = deadlines.next(conn.setup_done, conn.had_channel);
                    if deadline <= Instant::now() {
                        break Err(MinerError::Limit {
                            reason: limit,
                            detail: "the miner did not do its part in time".into(),
                        });
                    }
                    limit_timer.as_mut().reset(deadline);
                    continue;
                }
                event = job_events.recv() => match event {
                    Ok(event) => conn.lock().on_job_event(&event)
                        .into_iter().map(AnyMessageOwned::Mining).collect(),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(client_id, missed = n, "connection fell behind on job updates; restarting its channels' work");
                        conn.rebootstrap(ctx)
                    }
                    Err(broadcast::error::RecvError::Closed) => break Ok(()),
                },
                Some(announcement) = next_announcement(&mut conn.announcements) => {
                    let frame = match hashpool_sv2_io::encode_extension(&announcement) {
                        Ok(f) => f,
                        Err(e) => break Err(MinerError::Connection(e)),
                    };
                    let write_timeout = conn.write_timeout;
                    match tokio::time::timeout(write_timeout, conn.writer.write_frame(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break Err(MinerError::Closed),
                        Err(_) => break Err(write_timed_out(write_timeout)),
                    }
                    continue;
                }
                _ = vardiff.tick() => conn.lock().run_vardiff()
                    .into_iter().map(AnyMessageOwned::Mining).collect(),
                _ = &mut ack_timer, if ack_armed => {
                    ack_armed = false;
                    conn.lock().acknowledge_pending()
                        .into_iter().map(AnyMessageOwned::Mining).collect()
                }
                _ = shutdown.cancelled() => break Ok(()),
            };
            // Nothing that acknowledges a share leaves before the share is durable: replies
            // go out in order, each once every share before it is in the ledger.
            let receipts = conn.queue_accepted(ctx).await;
            let close = conn.close_after_send.take();
            if receipts.is_empty() && outbox.is_empty() {
                if let Err(e) = conn.send_all(out).await {
                    break Err(e);
                }
                if let Some(e) = close {
                    break Err(e);
                }
                continue;
            }
            closing |= close.is_some();
            outbox.push_back(Outgoing {
                receipts,
                messages: out,
                close,
            });
        };
        // Shares accepted before the connection ended (the miner left, or sent something
        // refused) are valid work the pool counted: credited, although no acknowledgement can
        // reach the miner now.
        let mut left: VecDeque<Receipts> = outbox.into_iter().flat_map(|o| o.receipts).collect();
        left.extend(conn.queue_accepted(ctx).await);
        let mut last = Outgoing {
            receipts: left,
            messages: Vec::new(),
            close: None,
        };
        if let Err(e) = settle(&mut last).await {
            warn!(client_id, "shares of a closed connection not credited: {e}");
        }
        ctx.registry.remove(client_id);
        ctx.stats.connection_closed();
        result
    }

    /// Checks, decodes and handles one frame read from the miner.
    fn on_frame(
        &mut self,
        ctx: &MinerHandles,
        frame: Result<codec_sv2::SerializedFrame, stratum_apps::network_helpers::Error>,
    ) -> Result<Vec<AnyMessageOwned>, MinerError> {
        let mut frame = match frame {
            Ok(f) => f,
            Err(stratum_apps::network_helpers::Error::SocketClosed) => {
                return Err(MinerError::Closed)
            }
            Err(e) => return Err(MinerError::Transport(format!("{e:?}"))),
        };
        // The same function the sv2-io fuzz target (`received_frame`) runs.
        match decode_received(&mut frame, MAX_MINER_FRAME_PAYLOAD, &self.negotiated) {
            Ok(Received::Message { message, tlvs, .. }) => {
                self.on_message(ctx, message, &tlvs.unwrap_or_default())
            }
            Ok(Received::Extension(ext)) => Err(refuse_extension_frame(&ext)),
            Err(e @ ReceiveError::TooLarge { .. }) => Err(MinerError::Protocol(e.to_string())),
            Err(ReceiveError::Frame(e)) => Err(e.into()),
        }
    }

    /// Hands the shares accepted since the last call to the ledger, all at once; the answer
    /// comes once every one is durable.
    async fn queue_accepted(&mut self, ctx: &MinerHandles) -> VecDeque<Receipts> {
        let mut receipts = VecDeque::new();
        if !self.accepted.is_empty() {
            let shares = std::mem::take(&mut self.accepted);
            receipts.push_back(ctx.shares.make_all_durable(shares).await);
        }
        receipts
    }

    /// The sender of this connection's announcements, made on first use.
    fn announcer(&mut self) -> Announcer {
        let (tx, rx) = mpsc::unbounded_channel();
        self.announcements = Some(rx);
        tx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChannelSet> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `messages`, in one write; a miner that stops reading is dropped after the write
    /// time-out rather than holding its task and channels.
    async fn send_all(&mut self, messages: Vec<AnyMessageOwned>) -> Result<(), MinerError> {
        if messages.is_empty() {
            return Ok(());
        }
        for m in messages {
            self.writer
                .queue(encode(m)?)
                .map_err(|e| MinerError::Transport(format!("{e:?}")))?;
        }
        match tokio::time::timeout(self.write_timeout, self.writer.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(MinerError::Closed),
            Err(_) => Err(write_timed_out(self.write_timeout)),
        }
    }

    /// After missing job events, every channel restarts from the current snapshot.
    fn rebootstrap(&mut self, ctx: &MinerHandles) -> Vec<AnyMessageOwned> {
        let snapshot = ctx.jobs.snapshot();
        self.lock()
            .rebootstrap(&snapshot)
            .into_iter()
            .map(AnyMessageOwned::Mining)
            .collect()
    }

    fn on_message(
        &mut self,
        ctx: &MinerHandles,
        message: AnyMessageOwned,
        tlvs: &[Tlv],
    ) -> Result<Vec<AnyMessageOwned>, MinerError> {
        match message {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(m)) => {
                if self.setup_done {
                    return Err(MinerError::Protocol("second SetupConnection".into()));
                }
                match answer_setup(&m, Protocol::MiningProtocol) {
                    Ok(success) => {
                        self.setup_done = true;
                        let vendor = hashpool_sv2_io::text(&m.vendor);
                        info!(%vendor, device = %hashpool_sv2_io::text(&m.device_id), "miner connected");
                        self.lock().vendor = vendor;
                        Ok(vec![AnyMessageOwned::Common(
                            CommonMessagesOwned::SetupConnectionSuccess(success),
                        )])
                    }
                    Err(code) => {
                        // The refusal is sent, then the connection closes.
                        self.close_after_send = Some(MinerError::Protocol(format!(
                            "SetupConnection refused: {code}"
                        )));
                        Ok(vec![AnyMessageOwned::Common(setup_refusal(code))])
                    }
                }
            }
            _ if !self.setup_done => Err(MinerError::Protocol(
                "message before SetupConnection".into(),
            )),
            AnyMessageOwned::Mining(m) => {
                let out = self.on_mining_message(ctx, m, tlvs)?;
                Ok(out.into_iter().map(AnyMessageOwned::Mining).collect())
            }
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensions(r),
            )) => Ok(vec![self.on_request_extensions(ctx, r)]),
            other => Err(MinerError::Protocol(format!(
                "a miner does not send {other}"
            ))),
        }
    }

    /// Agrees to the extensions this pool offers among those requested; a connection with
    /// the mint-quote extension is told of its keys' quotes.
    fn on_request_extensions(
        &mut self,
        ctx: &MinerHandles,
        request: extensions_sv2::RequestExtensionsOwned,
    ) -> AnyMessageOwned {
        let offered: &[u16] = if ctx.config.pool.mint_quote_extension {
            &[ext_mint_quote::EXTENSION_TYPE]
        } else {
            &[]
        };
        let requested = request.requested_extensions.clone().into_inner();
        let (reply, agreed) = answer_extensions(request, offered, &[]);
        let negotiated = agreed.unwrap_or_default();
        info!(?requested, ?negotiated, "extensions negotiated");
        let announcer = if negotiated.contains(&ext_mint_quote::EXTENSION_TYPE) {
            Some(self.announcer())
        } else {
            self.announcements = None;
            None
        };
        self.negotiated = negotiated;
        ctx.registry.set_announcer(self.client_id, announcer);
        AnyMessageOwned::Extensions(reply)
    }

    fn on_mining_message(
        &mut self,
        ctx: &MinerHandles,
        message: MiningOwned,
        tlvs: &[Tlv],
    ) -> Result<Vec<MiningOwned>, MinerError> {
        // Borrows only the channels field, leaving `accepted` free.
        let mut set = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        match message {
            MiningOwned::OpenStandardMiningChannel(m) => Ok(open::standard(ctx, &mut set, m, tlvs)),
            MiningOwned::OpenExtendedMiningChannel(m) => Ok(open::extended(ctx, &mut set, m, tlvs)),
            MiningOwned::UpdateChannel(m) => Ok(open::update(ctx, &mut set, m)),
            MiningOwned::CloseChannel(m) => {
                if ctx.registry.close_channel(&mut set, m.channel_id).is_some() {
                    info!(channel_id = m.channel_id, reason = %hashpool_sv2_io::text(&m.reason_code), "channel closed by miner");
                }
                Ok(vec![])
            }
            MiningOwned::SubmitSharesStandard(s) => {
                Ok(shares::standard(ctx, &mut set, s, &mut self.accepted))
            }
            MiningOwned::SubmitSharesExtended(s) => {
                Ok(shares::extended(ctx, &mut set, s, &mut self.accepted))
            }
            MiningOwned::SetCustomMiningJob(m) => Ok(custom::set_custom_job(ctx, &mut set, m)),
            other => Err(MinerError::Protocol(format!(
                "a miner does not send {other}"
            ))),
        }
    }
}

/// Frames of extensions the SRI parsers do not know. Mint-quote requests and responses belong
/// to the mint link only, announcements flow to miners only: a miner sending any of them is
/// misbehaving, as is one sending frames of an unknown extension.
fn refuse_extension_frame(ext: &hashpool_sv2_io::ExtensionFrame) -> MinerError {
    if ext.extension_type == ext_mint_quote::EXTENSION_TYPE {
        MinerError::Protocol(format!(
            "mint-quote message type {:#04x} is not accepted from a miner",
            ext.message_type
        ))
    } else {
        MinerError::Protocol(format!(
            "message {:#04x} of unknown extension {:#06x}",
            ext.message_type, ext.extension_type
        ))
    }
}

fn write_timed_out(after: Duration) -> MinerError {
    MinerError::Limit {
        reason: LimitReason::WriteTimeout,
        detail: format!("a write did not complete within {after:?} (the miner stopped reading)"),
    }
}
