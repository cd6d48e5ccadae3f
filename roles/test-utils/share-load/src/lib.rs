//! `share-load`: an SV2 share load generator that runs against any SV2 pool from its own
//! process.
//!
//! It opens `channels` standard channels, one Noise connection each (`SetupConnection` with
//! `REQUIRES_STANDARD_JOBS`, then `OpenStandardMiningChannel` asking for the easiest target),
//! waits until every channel has work, then for `duration` keeps `in_flight` shares
//! unacknowledged on every channel: each share is a real nonce ground against the channel's
//! current target (at the maximal target every nonce is one), so a pool that validates shares
//! accepts them. After the window it waits (at most `drain`) for the answers to the shares
//! still in flight.
//!
//! Reported: shares submitted, accepted (the sum of the pool's `new_submits_accepted_count`),
//! accepted/s (accepted over the time from the start to the last answer), refusals by error
//! code (`SubmitShares.Error`; stale shares after a new tip are honest refusals and counted),
//! shares never answered, and the ack latency of every share a `SubmitShares.Success` covered
//! (submission to the first Success whose `last_sequence_number` reaches it: batched acks make
//! the early shares of a batch wait for the batch).
//!
//! [`hold()`] is the other mode: many connections, one standard channel each, every one set up
//! (a job, one share, its answer) at a bounded pace and then held open while an outside
//! observer measures the pool (see the [`hold`](mod@hold) module).

pub mod acks;
mod channel;
pub mod hold;
pub mod latency;
pub mod work;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde::Serialize;
use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio::sync::{mpsc, watch};

pub use hold::{hold, HoldOptions, HoldReport};
pub use latency::LatencySummary;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub pool: SocketAddr,
    /// The pool's authority key, pinned in the Noise handshake; `None` accepts any key.
    pub authority_key: Option<Secp256k1PublicKey>,
    pub channels: usize,
    /// Shares each channel keeps unacknowledged.
    pub in_flight: u32,
    /// How long shares are submitted.
    pub duration: Duration,
    /// After `duration`, how long to wait at most for the answers to shares in flight.
    pub drain: Duration,
    /// User identities: channel `i` opens as `<users[i % len]>.<i>` (a pool that reads a
    /// locking key from the identity, as Hashpool does, takes the part before the dot).
    pub users: Vec<String>,
    /// The nominal hashrate each channel announces (H/s); with the pool's share rate it sets
    /// the first target.
    pub nominal_hashrate: f32,
    /// From the first connection until every channel has work.
    pub setup_timeout: Duration,
}

impl LoadOptions {
    pub fn new(pool: SocketAddr, authority_key: Option<Secp256k1PublicKey>) -> Self {
        Self {
            pool,
            authority_key,
            channels: 4,
            in_flight: 64,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            users: vec!["share-load".into()],
            nominal_hashrate: 1.0,
            setup_timeout: Duration::from_secs(30),
        }
    }

    /// The user identity of channel `index`.
    pub fn user_identity(&self, index: usize) -> String {
        let user = self
            .users
            .get(index % self.users.len().max(1))
            .map_or("share-load", String::as_str);
        format!("{user}.{index}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid options: {0}")]
    Options(&'static str),
    #[error("no channel could start: {0}")]
    NoChannel(String),
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pool: String,
    pub channels: usize,
    /// Channels that opened and got work in time.
    pub channels_running: usize,
    pub in_flight: u32,
    /// The submission window.
    pub duration_secs: f64,
    /// From the start to the last answer (at least the window).
    pub elapsed_secs: f64,
    pub submitted: u64,
    pub accepted: u64,
    pub accepted_per_sec: f64,
    pub refused: BTreeMap<String, u64>,
    pub refused_total: u64,
    /// Shares with no answer when the run ended.
    pub unanswered: u64,
    pub ack_latency: LatencySummary,
    /// Hashes computed to find the shares.
    pub hashes: u64,
    /// SetNewPrevHash messages received, all channels (one per channel at the start).
    pub new_tips: u64,
    pub target_changes: u64,
    /// Successes whose accepted count differs from the shares they newly covered.
    pub count_mismatches: u64,
    /// Answers naming shares never submitted or already answered.
    pub unexpected_answers: u64,
    /// Why channels stopped early (connection lost, channel closed or refused...).
    pub channel_errors: Vec<String>,
}

/// Runs the load and reports. Fails only when no channel could start.
pub async fn run(options: &LoadOptions) -> Result<Report, LoadError> {
    if options.channels == 0 {
        return Err(LoadError::Options("channels must be at least 1"));
    }
    if options.in_flight == 0 {
        return Err(LoadError::Options("in_flight must be at least 1"));
    }
    if options.users.is_empty() {
        return Err(LoadError::Options("at least one user identity is needed"));
    }
    let (ready_tx, mut ready_rx) = mpsc::channel(options.channels);
    let (go_tx, go_rx) = watch::channel(None::<channel::Window>);
    let mut tasks = Vec::with_capacity(options.channels);
    for index in 0..options.channels {
        let (options, ready, go) = (options.clone(), ready_tx.clone(), go_rx.clone());
        tasks.push(tokio::spawn(async move {
            channel::run(&options, index, ready, go).await
        }));
    }
    drop(ready_tx);

    // Every channel opened with work, or failed, or the setup timed out.
    let setup_deadline = tokio::time::Instant::now() + options.setup_timeout;
    let mut answered = 0;
    let mut ready = 0;
    while answered < options.channels {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(ok)) => {
                answered += 1;
                ready += usize::from(ok);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let start = Instant::now();
    let window = channel::Window {
        start,
        deadline: start + options.duration,
        drain_deadline: start + options.duration + options.drain,
    };
    // Channels still setting up give up when they see the window (they missed the start).
    let _ = go_tx.send(Some(window));

    let mut runs = Vec::with_capacity(tasks.len());
    let mut errors = Vec::new();
    for (index, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(run) => runs.push(run),
            Err(e) => errors.push(format!("channel {index}: task failed: {e}")),
        }
    }
    if ready == 0 {
        let why = runs
            .iter()
            .filter_map(|r| r.error.clone())
            .chain(errors)
            .next()
            .unwrap_or_else(|| "no channel got work in time".into());
        return Err(LoadError::NoChannel(why));
    }
    Ok(summarise(options, window, runs, errors))
}

fn summarise(
    options: &LoadOptions,
    window: channel::Window,
    runs: Vec<channel::ChannelRun>,
    mut errors: Vec<String>,
) -> Report {
    let mut refused = BTreeMap::new();
    let mut latencies = Vec::new();
    let (mut submitted, mut accepted, mut unanswered, mut hashes) = (0, 0, 0, 0);
    let (mut new_tips, mut target_changes, mut mismatches, mut unexpected) = (0, 0, 0, 0);
    // From the window's start to the last answer: the deadline when channels ended before it
    // would count time no channel was running.
    let mut last_answer = window.start;
    let mut running = 0;
    for mut run in runs {
        running += usize::from(run.started);
        submitted += run.submitted;
        accepted += run.acks.accepted;
        unanswered += run.acks.in_flight() as u64;
        hashes += run.work_hashes;
        new_tips += run.new_tips;
        target_changes += run.target_changes;
        mismatches += run.acks.count_mismatches;
        unexpected += run.acks.unexpected;
        for (code, n) in std::mem::take(&mut run.acks.refused) {
            *refused.entry(code).or_default() += n;
        }
        latencies.append(&mut run.acks.latencies);
        if let Some(at) = run.last_answer {
            last_answer = last_answer.max(at);
        }
        if let Some(e) = run.error {
            errors.push(format!("channel {}: {e}", run.index));
        }
    }
    let elapsed = last_answer.saturating_duration_since(window.start);
    let refused_total = refused.values().sum();
    Report {
        pool: options.pool.to_string(),
        channels: options.channels,
        channels_running: running,
        in_flight: options.in_flight,
        duration_secs: options.duration.as_secs_f64(),
        elapsed_secs: elapsed.as_secs_f64(),
        submitted,
        accepted,
        accepted_per_sec: if elapsed.is_zero() {
            0.0
        } else {
            accepted as f64 / elapsed.as_secs_f64()
        },
        refused,
        refused_total,
        unanswered,
        ack_latency: LatencySummary::of(&mut latencies),
        hashes,
        new_tips,
        target_changes,
        count_mismatches: mismatches,
        unexpected_answers: unexpected,
        channel_errors: errors,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pool                  {}", self.pool)?;
        writeln!(
            f,
            "channels              {} running of {} ({} shares in flight each)",
            self.channels_running, self.channels, self.in_flight
        )?;
        writeln!(
            f,
            "window / elapsed      {:.1} s / {:.2} s (to the last answer)",
            self.duration_secs, self.elapsed_secs
        )?;
        writeln!(f, "submitted             {}", self.submitted)?;
        writeln!(f, "accepted              {}", self.accepted)?;
        writeln!(f, "accepted/s            {:.0}", self.accepted_per_sec)?;
        let refused = if self.refused.is_empty() {
            "none".to_string()
        } else {
            self.refused
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "refused               {} ({refused})",
            self.refused_total
        )?;
        writeln!(f, "unanswered            {}", self.unanswered)?;
        writeln!(
            f,
            "ack latency p50 / p99 {:.2} / {:.2} ms (max {:.1} ms, {} shares)",
            self.ack_latency.p50_ms,
            self.ack_latency.p99_ms,
            self.ack_latency.max_ms,
            self.ack_latency.count
        )?;
        writeln!(
            f,
            "hashes / tips / retargets {} / {} / {}",
            self.hashes, self.new_tips, self.target_changes
        )?;
        if self.count_mismatches + self.unexpected_answers > 0 {
            writeln!(
                f,
                "odd answers           {} count mismatches, {} unexpected",
                self.count_mismatches, self.unexpected_answers
            )?;
        }
        for e in &self.channel_errors {
            writeln!(f, "error                 {e}")?;
        }
        Ok(())
    }
}
