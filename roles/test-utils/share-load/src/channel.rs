//! One channel on its own connection: setup, then shares kept in flight during the window.

use std::time::Instant;

use binary_sv2::U256Owned;
use bitcoin::Target;
use common_messages_sv2::Protocol;
use hashpool_sv2_io::{decode_frame, extension_frame, str0255, text, Connection, Dial};
use mining_sv2::OpenStandardMiningChannelOwned;
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tokio::sync::{mpsc, watch};

use crate::{
    acks::AckTracker,
    work::{ChannelWork, Grind, Share},
    LoadOptions,
};

/// SetupConnection flag: standard jobs for every channel (no extended jobs via a group).
const REQUIRES_STANDARD_JOBS: u32 = 1;

/// Nonces tried before the channel reads the pool again (only matters for hard targets).
const GRIND_BUDGET: u32 = 4096;

/// Frames read ahead of the channel.
const READ_AHEAD: usize = 4096;

/// The measurement window, the same for every channel.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    /// Submissions stop here.
    pub deadline: Instant,
    /// Answers are waited for until here.
    pub drain_deadline: Instant,
}

/// What one channel did.
#[derive(Debug, Default)]
pub struct ChannelRun {
    pub index: usize,
    /// Opened, got work and took part in the window.
    pub started: bool,
    pub submitted: u64,
    pub acks: AckTracker,
    pub last_answer: Option<Instant>,
    pub work_hashes: u64,
    pub new_tips: u64,
    pub target_changes: u64,
    pub error: Option<String>,
}

/// The channel's state on the wire.
pub(crate) struct Channel {
    pub(crate) conn: Connection,
    pub(crate) id: u32,
    group_id: u32,
    pub(crate) work: ChannelWork,
    pub(crate) sequence: u32,
}

/// Opens the channel, says whether it is ready on `ready`, waits for the window on `go` and
/// runs it. Never fails: an error ends the channel and is recorded in its run.
pub async fn run(
    options: &LoadOptions,
    index: usize,
    ready: mpsc::Sender<bool>,
    mut go: watch::Receiver<Option<Window>>,
) -> ChannelRun {
    let mut run = ChannelRun {
        index,
        ..Default::default()
    };
    let mut channel = match open(options, index).await {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(e);
            let _ = ready.send(false).await;
            return run;
        }
    };
    // Work (a job under a tip) before the window starts.
    let result = wait_for_work(&mut channel, &mut run, &go).await;
    let _ = ready.send(result.is_ok()).await;
    let window = match result {
        Ok(()) => wait_for_window(&mut channel, &mut run, &mut go).await,
        Err(e) => Err(e),
    };
    match window {
        Ok(window) => {
            run.started = true;
            if let Err(e) = submit(&mut channel, &mut run, options, window).await {
                run.error = Some(e);
            }
        }
        Err(e) => run.error = Some(e),
    }
    run.work_hashes = channel.work.hashes;
    run.new_tips = channel.work.new_tips;
    run.target_changes = channel.work.target_changes;
    run
}

/// Connects (Noise, `SetupConnection` with `REQUIRES_STANDARD_JOBS`) and opens channel
/// `index`'s standard channel, asking for the easiest target.
pub(crate) async fn open(options: &LoadOptions, index: usize) -> Result<Channel, String> {
    let dial = Dial::new(
        options.pool,
        options.authority_key,
        Protocol::MiningProtocol,
        "share-load",
    )
    .device_id(&format!("share-load-{index}"))
    .flags(REQUIRES_STANDARD_JOBS)
    .capacity(READ_AHEAD);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let request_id = index as u32;
    conn.send(MiningOwned::OpenStandardMiningChannel(
        OpenStandardMiningChannelOwned {
            request_id,
            user_identity: str0255(&options.user_identity(index)),
            nominal_hash_rate: options.nominal_hashrate,
            max_target: U256Owned::from([0xff; 32]),
        },
    ))
    .await
    .map_err(|e| format!("opening the channel: {e}"))?;
    loop {
        match next_message(&mut conn).await? {
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s))
                if s.request_id == request_id =>
            {
                return Ok(Channel {
                    conn,
                    id: s.channel_id,
                    group_id: s.group_channel_id,
                    work: ChannelWork::new(Target::from_le_bytes(s.target.to_array())),
                    sequence: 0,
                });
            }
            AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(e)) => {
                return Err(format!("channel refused: {}", text(&e.error_code)))
            }
            _ => {}
        }
    }
}

/// The next message the SRI parsers know (extension frames, e.g. quote announcements, are
/// skipped).
pub(crate) async fn next_message(conn: &mut Connection) -> Result<AnyMessageOwned, String> {
    loop {
        let mut frame = conn
            .recv_frame()
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if extension_frame(&mut frame).is_some() {
            continue;
        }
        return decode_frame(&mut frame, &[])
            .map(|(_, m, _)| m)
            .map_err(|e| format!("undecodable message: {e}"));
    }
}

async fn wait_for_work(
    channel: &mut Channel,
    run: &mut ChannelRun,
    go: &watch::Receiver<Option<Window>>,
) -> Result<(), String> {
    while !channel.has_work() {
        if go.borrow().is_some() {
            return Err("no work before the window started".into());
        }
        let m = next_message(&mut channel.conn).await?;
        channel.on_message(m, run)?;
    }
    Ok(())
}

async fn wait_for_window(
    channel: &mut Channel,
    run: &mut ChannelRun,
    go: &mut watch::Receiver<Option<Window>>,
) -> Result<Window, String> {
    loop {
        if let Some(window) = *go.borrow_and_update() {
            return Ok(window);
        }
        tokio::select! {
            changed = go.changed() => {
                if changed.is_err() {
                    return Err("the run ended before the window".into());
                }
            }
            m = next_message(&mut channel.conn) => channel.on_message(m?, run)?,
        }
    }
}

/// Keeps `in_flight` shares unanswered until the deadline, then waits for the answers.
async fn submit(
    channel: &mut Channel,
    run: &mut ChannelRun,
    options: &LoadOptions,
    window: Window,
) -> Result<(), String> {
    let in_flight = options.in_flight as usize;
    loop {
        let now = Instant::now();
        let sending = now < window.deadline;
        let mut grinding = false;
        if sending {
            while run.acks.in_flight() < in_flight {
                match channel.work.grind(GRIND_BUDGET) {
                    Grind::Found(share) => channel.submit(&share, run).await?,
                    Grind::NotYet => {
                        grinding = true;
                        break;
                    }
                    // Wait for a new job or tip.
                    Grind::NoWork | Grind::Exhausted => break,
                }
            }
        } else if run.acks.in_flight() == 0 || now >= window.drain_deadline {
            return Ok(());
        }
        // Read what came in; block only when there is nothing to grind.
        let until = if sending {
            window.deadline
        } else {
            window.drain_deadline
        };
        if grinding {
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                f = channel.conn.recv_frame() => {
                    let frame = f.map_err(|e| format!("reading: {e}"))?;
                    channel.on_frame(frame, run)?;
                }
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        while let Some(frame) = channel.conn.try_recv_frame() {
            let frame = frame.map_err(|e| format!("reading: {e}"))?;
            channel.on_frame(frame, run)?;
        }
    }
}

impl Channel {
    pub(crate) fn has_work(&self) -> bool {
        self.work.has_work()
    }

    /// Submits `share` under the next sequence number; its answer is then waited for.
    pub(crate) async fn submit(
        &mut self,
        share: &Share,
        run: &mut ChannelRun,
    ) -> Result<(), String> {
        self.sequence = self.sequence.wrapping_add(1);
        let seq = self.sequence;
        run.acks.submitted(seq, Instant::now());
        run.submitted += 1;
        self.conn
            .send(MiningOwned::SubmitSharesStandard(
                share.submit(self.id, seq),
            ))
            .await
            .map_err(|e| format!("submitting: {e}"))
    }

    fn on_frame(
        &mut self,
        mut frame: codec_sv2::SerializedFrame,
        run: &mut ChannelRun,
    ) -> Result<(), String> {
        if extension_frame(&mut frame).is_some() {
            return Ok(());
        }
        let (_, m, _) =
            decode_frame(&mut frame, &[]).map_err(|e| format!("undecodable message: {e}"))?;
        self.on_message(m, run)
    }

    fn ours(&self, channel_id: u32) -> bool {
        channel_id == self.id || channel_id == self.group_id
    }

    /// Applies a message from the pool; an error for what ends the channel.
    pub(crate) fn on_message(
        &mut self,
        m: AnyMessageOwned,
        run: &mut ChannelRun,
    ) -> Result<(), String> {
        let AnyMessageOwned::Mining(m) = m else {
            return Ok(());
        };
        match m {
            MiningOwned::SubmitSharesSuccess(s) if s.channel_id == self.id => {
                let now = Instant::now();
                run.acks
                    .on_success(s.last_sequence_number, s.new_submits_accepted_count, now);
                run.last_answer = Some(now);
            }
            MiningOwned::SubmitSharesError(e) if e.channel_id == self.id => {
                run.acks.on_error(e.sequence_number, &text(&e.error_code));
                run.last_answer = Some(Instant::now());
            }
            MiningOwned::NewMiningJob(j) if self.ours(j.channel_id) => self.work.on_job(j),
            MiningOwned::SetNewPrevHash(p) if self.ours(p.channel_id) => self.work.on_prev_hash(&p),
            MiningOwned::SetTarget(t) if self.ours(t.channel_id) => self
                .work
                .set_target(Target::from_le_bytes(t.maximum_target.to_array())),
            MiningOwned::CloseChannel(c) if self.ours(c.channel_id) => {
                return Err(format!(
                    "the pool closed the channel: {}",
                    text(&c.reason_code)
                ))
            }
            _ => {}
        }
        Ok(())
    }
}
