//! Hold mode: many connections, one standard channel each, set up and then held open.
//!
//! Each of `connections` connections is a Noise connection with one standard channel, opened
//! as in the load mode (the same `channel::open`). A connection waits for work on its channel
//! (a `NewMiningJob` under a `SetNewPrevHash`), submits one share (a nonce meeting the
//! channel's target if one turns up within `grind_budget` hashes, else the next nonce as it is,
//! which a pool that checks refuses: an answer all the same) and waits for its answer
//! (`SubmitShares.Success` or `.Error`, counted by code). Then it is held: it keeps reading
//! (following new jobs and tips, so the pool's writes never back up) until the hold is released.
//!
//! Connections start at most `ramp_per_sec` per second and at most `concurrency` of them are
//! between their connect and their answer at once, so the pool's accept backlog is never
//! flooded. Once every connection has been answered or has failed, `on_ready` gets the report
//! so far (an outside observer measures the pool now); the hold lasts until `release` ends.
//! Failures are counted by the step they happened in and their reason, never unwrapped.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::{
    channel::{self, Channel, ChannelRun},
    latency::LatencySummary,
    work::{ChannelWork, Grind, Share},
    LoadError, LoadOptions,
};

/// Hashes tried between two yields while looking for a share.
const GRIND_STEP: u32 = 4096;

/// What to hold.
#[derive(Debug, Clone)]
pub struct HoldOptions {
    /// The pool, its authority key, the user identities and the nominal hashrate (the
    /// share-rate fields are not used).
    pub load: LoadOptions,
    pub connections: usize,
    /// Connections started per second at most; 0 starts them as fast as `concurrency` allows.
    pub ramp_per_sec: f64,
    /// Connections between their connect and their answer at once, at most.
    pub concurrency: usize,
    /// Per connection, from its connect to the answer to its share.
    pub setup_timeout: Duration,
    /// Hashes tried for a share that meets the channel's target before one that does not is
    /// submitted.
    pub grind_budget: u32,
}

impl HoldOptions {
    pub fn new(load: LoadOptions, connections: usize) -> Self {
        Self {
            load,
            connections,
            ramp_per_sec: 1000.0,
            concurrency: 256,
            setup_timeout: Duration::from_secs(60),
            grind_budget: 4096,
        }
    }
}

/// The answer a connection's share got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// `SubmitShares.Error` with this code.
    Refused(String),
}

/// Where a connection was when its setup ended (with an error, or with the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Connect, Noise, SetupConnection, OpenStandardMiningChannel.
    Opening,
    /// The channel is open, no job under a tip yet.
    Job,
    /// The share is found or sent, no answer yet.
    Answer,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Opening => "opening",
            Step::Job => "waiting for a job",
            Step::Answer => "waiting for the answer",
        }
    }
}

/// What one connection did.
#[derive(Debug, Clone, Default)]
struct Outcome {
    started: bool,
    opened: bool,
    with_job: bool,
    answer: Option<Answer>,
    /// Why the setup failed (`<step>: <reason>`).
    failure: Option<String>,
    /// From the connect to the answer.
    setup_time: Option<Duration>,
    /// From the start of the run to the end of this connection's setup.
    settled_at: Option<Duration>,
    /// Why the connection ended while it was held.
    lost: Option<String>,
}

impl Outcome {
    fn held(&self) -> bool {
        self.answer.is_some() && self.lost.is_none()
    }
}

enum Event {
    /// A connection's setup ended (answered or failed).
    Settled(usize, Outcome),
    /// A held connection ended.
    Lost(usize, String),
}

/// What a hold run saw: after the setup (`phase` "ready") or after the release ("released").
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    pub pool: String,
    pub phase: &'static str,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that were started (all, unless the hold was released during the ramp).
    pub started: usize,
    /// Connections whose channel opened.
    pub opened: usize,
    /// Connections that got a job under a tip for their channel.
    pub with_job: usize,
    /// Connections whose share was answered (accepted + refused).
    pub answered: usize,
    pub accepted: usize,
    /// Shares refused, by `SubmitShares.Error` code.
    pub refused: BTreeMap<String, usize>,
    /// Connections that did not get both a job and an answer.
    pub failed: usize,
    /// Why, by `<step>: <reason>`.
    pub failures: BTreeMap<String, usize>,
    /// Answered connections still open (at the release, for the final report).
    pub held: usize,
    /// Answered connections that ended while held, by reason.
    pub lost_during_hold: BTreeMap<String, usize>,
    /// From the first connect to the end of the last setup.
    pub setup_secs: f64,
    /// Per connection, from its connect to its answer.
    pub setup_latency: LatencySummary,
    /// From the end of the setup to the release (0 in the "ready" report).
    pub held_secs: f64,
    /// Every connection got a job and an answer, and every one is still held.
    pub complete: bool,
}

/// Opens, sets up and holds the connections; `on_ready` gets the report once every
/// connection's setup ended, and the connections are held until `release` ends (a release
/// during the setup stops the connections still setting up: they count as failed). Fails only
/// on invalid options.
pub async fn hold<R, F>(
    options: &HoldOptions,
    on_ready: R,
    release: F,
) -> Result<HoldReport, LoadError>
where
    R: FnOnce(&HoldReport),
    F: Future<Output = ()>,
{
    let n = options.connections;
    if n == 0 {
        return Err(LoadError::Options("connections must be at least 1"));
    }
    if options.concurrency == 0 {
        return Err(LoadError::Options("concurrency must be at least 1"));
    }
    if !options.ramp_per_sec.is_finite() || options.ramp_per_sec < 0.0 {
        return Err(LoadError::Options("the ramp must be 0 or a positive rate"));
    }
    if options.load.users.is_empty() {
        return Err(LoadError::Options("at least one user identity is needed"));
    }
    let options = Arc::new(options.clone());
    let start = Instant::now();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let launcher = tokio::spawn(launch(options.clone(), start, events_tx, stop_rx));

    let mut outcomes = vec![Outcome::default(); n];
    let mut settled = 0;
    let mut released = false;
    tokio::pin!(release);
    while settled < n {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Settled(i, outcome)) => {
                    settled += 1;
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = outcome;
                    }
                }
                Some(Event::Lost(i, why)) => {
                    if let Some(slot) = outcomes.get_mut(i) {
                        slot.lost = Some(why);
                    }
                }
                // Every task ended (after an early release).
                None => break,
            },
            _ = &mut release, if !released => {
                released = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    let ready_at = Instant::now();
    if !released {
        on_ready(&report(&options, "ready", &outcomes, Duration::ZERO));
        release.await;
    }
    let held_for = ready_at.elapsed();
    let _ = stop_tx.send(true);

    // The final word of every connection is what its task returns.
    let mut failures = Vec::new();
    match launcher.await {
        Ok(tasks) => {
            for (index, task) in tasks {
                match task.await {
                    Ok(outcome) => outcomes[index] = outcome,
                    Err(e) => failures.push((index, format!("task failed: {e}"))),
                }
            }
        }
        Err(e) => failures.extend((0..n).map(|i| (i, format!("launcher failed: {e}")))),
    }
    for (index, why) in failures {
        let slot = &mut outcomes[index];
        if slot.answer.is_some() {
            slot.lost.get_or_insert(why);
        } else {
            slot.failure.get_or_insert(why);
        }
    }
    drop(events);
    Ok(report(&options, "released", &outcomes, held_for))
}

/// Starts the connections at the ramp's pace, each once a setup slot is free; stops starting
/// them when the hold is released.
async fn launch(
    options: Arc<HoldOptions>,
    start: Instant,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(usize, tokio::task::JoinHandle<Outcome>)> {
    let slots = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = Vec::with_capacity(options.connections);
    for index in 0..options.connections {
        if options.ramp_per_sec > 0.0 {
            let due = start + Duration::from_secs_f64(index as f64 / options.ramp_per_sec);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let task = connection(
            options.clone(),
            index,
            start,
            permit,
            events.clone(),
            stop.clone(),
        );
        tasks.push((index, tokio::spawn(task)));
    }
    tasks
}

/// Resolves once the hold is released (or the run is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// One connection: set up (within the timeout, holding a setup slot), then held until the
/// release.
async fn connection(
    options: Arc<HoldOptions>,
    index: usize,
    start: Instant,
    permit: OwnedSemaphorePermit,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let began = Instant::now();
    let mut run = ChannelRun {
        index,
        ..Default::default()
    };
    let mut step = Step::Opening;
    let result = tokio::select! {
        r = tokio::time::timeout(options.setup_timeout, set_up(&options, index, &mut run, &mut step)) => {
            r.unwrap_or_else(|_| Err(format!("timed out after {:?}", options.setup_timeout)))
        }
        _ = stopped(&mut stop) => Err("the hold was released first".into()),
    };
    drop(permit);
    let mut outcome = Outcome {
        started: true,
        opened: step > Step::Opening,
        with_job: step > Step::Job,
        settled_at: Some(start.elapsed()),
        ..Default::default()
    };
    let mut channel = match result {
        Ok(channel) => {
            outcome.answer = Some(answer_of(&run));
            outcome.setup_time = Some(began.elapsed());
            channel
        }
        Err(e) => {
            outcome.failure = Some(format!("{}: {e}", step.name()));
            let _ = events.send(Event::Settled(index, outcome.clone()));
            return outcome;
        }
    };
    let _ = events.send(Event::Settled(index, outcome.clone()));

    // Held: keep reading (jobs and tips followed) until the release or the end.
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            m = channel::next_message(&mut channel.conn) => {
                if let Err(e) = m.and_then(|m| channel.on_message(m, &mut run)) {
                    let _ = events.send(Event::Lost(index, e.clone()));
                    outcome.lost = Some(e);
                    break;
                }
            }
        }
    }
    outcome
}

/// Opens the channel, waits for work, submits one share and waits for its answer; `step`
/// says how far it got.
async fn set_up(
    options: &HoldOptions,
    index: usize,
    run: &mut ChannelRun,
    step: &mut Step,
) -> Result<Channel, String> {
    let mut channel = channel::open(&options.load, index).await?;
    *step = Step::Job;
    while !channel.has_work() {
        let m = channel::next_message(&mut channel.conn).await?;
        channel.on_message(m, run)?;
    }
    *step = Step::Answer;
    let share = find_share(&mut channel.work, options.grind_budget)
        .await
        .ok_or("every nonce of the job was tried")?;
    channel.submit(&share, run).await?;
    while run.acks.in_flight() > 0 {
        let m = channel::next_message(&mut channel.conn).await?;
        channel.on_message(m, run)?;
    }
    Ok(channel)
}

/// A share meeting the target if one turns up within `budget` hashes, else the next nonce.
async fn find_share(work: &mut ChannelWork, budget: u32) -> Option<Share> {
    let mut left = budget;
    while left > 0 {
        let step = left.min(GRIND_STEP);
        match work.grind(step) {
            Grind::Found(share) => return Some(share),
            Grind::NotYet => {
                left -= step;
                tokio::task::yield_now().await;
            }
            Grind::NoWork | Grind::Exhausted => break,
        }
    }
    work.unchecked_share()
}

/// The answer to the connection's one share, from its acknowledgement accounting.
fn answer_of(run: &ChannelRun) -> Answer {
    if run.acks.accepted > 0 {
        Answer::Accepted
    } else if let Some(code) = run.acks.refused.keys().next() {
        Answer::Refused(code.clone())
    } else {
        // A Success that covered the share but counted no share accepted.
        Answer::Refused("success-counting-no-share".into())
    }
}

fn report(
    options: &HoldOptions,
    phase: &'static str,
    outcomes: &[Outcome],
    held_for: Duration,
) -> HoldReport {
    let mut refused = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let mut lost = BTreeMap::new();
    let mut latencies = Vec::new();
    let (mut started, mut opened, mut with_job, mut accepted, mut held) = (0, 0, 0, 0, 0);
    let mut last_settled = Duration::ZERO;
    for o in outcomes {
        started += usize::from(o.started);
        opened += usize::from(o.opened);
        with_job += usize::from(o.with_job);
        held += usize::from(o.held());
        match &o.answer {
            Some(Answer::Accepted) => accepted += 1,
            Some(Answer::Refused(code)) => *refused.entry(code.clone()).or_default() += 1,
            None => {
                let why = o.failure.clone().unwrap_or_else(|| {
                    if o.started {
                        "setting up when the run ended".into()
                    } else {
                        "not started: the hold was released first".into()
                    }
                });
                *failures.entry(why).or_default() += 1;
            }
        }
        if let Some(why) = &o.lost {
            *lost.entry(why.clone()).or_default() += 1;
        }
        latencies.extend(o.setup_time);
        if let Some(at) = o.settled_at {
            last_settled = last_settled.max(at);
        }
    }
    let refused_total: usize = refused.values().sum();
    let answered = accepted + refused_total;
    let n = options.connections;
    HoldReport {
        pool: options.load.pool.to_string(),
        phase,
        connections: n,
        started,
        opened,
        with_job,
        answered,
        accepted,
        refused,
        failed: n - answered,
        failures,
        held,
        lost_during_hold: lost,
        setup_secs: last_settled.as_secs_f64(),
        setup_latency: LatencySummary::of(&mut latencies),
        held_secs: held_for.as_secs_f64(),
        complete: with_job == n && answered == n && held == n,
    }
}

fn by_count(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for HoldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pool                  {} ({})", self.pool, self.phase)?;
        writeln!(
            f,
            "connections           {} asked, {} started, {} opened a channel, {} got a job",
            self.connections, self.started, self.opened, self.with_job
        )?;
        writeln!(
            f,
            "answered              {} ({} accepted; refused: {})",
            self.answered,
            self.accepted,
            by_count(&self.refused)
        )?;
        writeln!(
            f,
            "failed                {} ({})",
            self.failed,
            by_count(&self.failures)
        )?;
        writeln!(
            f,
            "held                  {} (lost while held: {})",
            self.held,
            by_count(&self.lost_during_hold)
        )?;
        writeln!(
            f,
            "setup                 {:.1} s for all; connect -> answer p50 / p99 {:.1} / {:.1} ms (max {:.1} ms)",
            self.setup_secs,
            self.setup_latency.p50_ms,
            self.setup_latency.p99_ms,
            self.setup_latency.max_ms
        )?;
        writeln!(f, "held for              {:.1} s", self.held_secs)?;
        writeln!(
            f,
            "complete              {}",
            if self.complete {
                "yes: every connection got a job and an answer and was held"
            } else {
                "NO"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use binary_sv2::{B032Owned, Sv2Option, U256Owned};
    use common_messages_sv2::Protocol;
    use hashpool_sv2_io::{str0255, ServerIdentity};
    use mining_sv2::{
        NewMiningJobOwned, OpenStandardMiningChannelSuccessOwned, SetNewPrevHashOwned,
        SubmitSharesErrorOwned, SubmitSharesSuccessOwned,
    };
    use parsers_sv2::{AnyMessageOwned, MiningOwned};
    use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
    use tokio::net::TcpListener;

    use super::*;

    /// The well-known SRI test authority keypair.
    const PUBLIC_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
    const SECRET_KEY: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";

    /// A scripted pool: channel `request_id` 0 mod 3 gets its share accepted, 1 mod 3 refused
    /// as stale, 2 mod 3 accepted and then its connection closed. Returns its address.
    async fn scripted_pool() -> (SocketAddr, Secp256k1PublicKey) {
        let public_key: Secp256k1PublicKey = PUBLIC_KEY.parse().expect("test key");
        let identity = ServerIdentity {
            public_key,
            secret_key: SECRET_KEY.parse::<Secp256k1SecretKey>().expect("test key"),
            cert_validity_secs: 3600,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve_miner(stream, peer, identity).await;
                });
            }
        });
        (address, public_key)
    }

    async fn serve_miner(
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        identity: ServerIdentity,
    ) -> Result<(), hashpool_sv2_io::ConnectionError> {
        let mut conn =
            hashpool_sv2_io::accept(stream, peer, &identity, 64, Duration::from_secs(10)).await?;
        conn.expect_setup(Protocol::MiningProtocol).await?;
        let AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(open)) =
            conn.recv_message().await?
        else {
            return Ok(());
        };
        let (channel_id, script) = (open.request_id + 100, open.request_id % 3);
        conn.send(MiningOwned::OpenStandardMiningChannelSuccess(
            OpenStandardMiningChannelSuccessOwned {
                request_id: open.request_id,
                channel_id,
                target: U256Owned::from([0xff; 32]),
                extranonce_prefix: B032Owned::new(vec![1, 2, 3, 4]).expect("4 bytes"),
                group_channel_id: 0,
            },
        ))
        .await?;
        conn.send(MiningOwned::NewMiningJob(NewMiningJobOwned {
            channel_id,
            job_id: 1,
            min_ntime: Sv2Option::new(None::<u32>).into_owned(),
            version: 0x2000_0000,
            merkle_root: U256Owned::from([9; 32]),
        }))
        .await?;
        conn.send(MiningOwned::SetNewPrevHash(SetNewPrevHashOwned {
            channel_id,
            job_id: 1,
            prev_hash: U256Owned::from([7; 32]),
            min_ntime: 1_700_000_000,
            nbits: 0x1d00_ffff,
        }))
        .await?;
        let AnyMessageOwned::Mining(MiningOwned::SubmitSharesStandard(share)) =
            conn.recv_message().await?
        else {
            return Ok(());
        };
        let answer = if script == 1 {
            MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
                channel_id,
                sequence_number: share.sequence_number,
                error_code: str0255("stale-share"),
            })
        } else {
            MiningOwned::SubmitSharesSuccess(SubmitSharesSuccessOwned {
                channel_id,
                last_sequence_number: share.sequence_number,
                new_submits_accepted_count: 1,
                new_shares_sum: 1,
            })
        };
        conn.send(answer).await?;
        if script == 2 {
            return Ok(());
        }
        // Held until the miner goes.
        while conn.recv_frame().await.is_ok() {}
        Ok(())
    }

    #[tokio::test]
    async fn every_connection_gets_a_job_and_an_answer_and_losses_are_counted() {
        let (address, key) = scripted_pool().await;
        let mut o = options(6);
        o.load = LoadOptions::new(address, Some(key));
        o.ramp_per_sec = 0.0;
        o.concurrency = 4;
        o.setup_timeout = Duration::from_secs(30);
        let signal = Arc::new(tokio::sync::Notify::new());
        let mut ready = None;
        let on_ready = |r: &HoldReport| {
            ready = Some(r.clone());
            signal.notify_one();
        };
        let release = {
            let signal = signal.clone();
            async move {
                signal.notified().await;
                // Long enough for the closed connections to be seen.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let r = hold(&o, on_ready, release).await.expect("valid options");
        let ready = ready.expect("ready");
        assert_eq!((ready.with_job, ready.answered, ready.failed), (6, 6, 0));
        assert_eq!(
            (r.started, r.opened, r.with_job, r.answered, r.accepted),
            (6, 6, 6, 6, 4),
            "{r}"
        );
        assert_eq!(r.refused.get("stale-share").copied(), Some(2));
        assert_eq!(r.failed, 0, "{:?}", r.failures);
        assert_eq!(r.held, 4, "{r}");
        assert_eq!(r.lost_during_hold.values().sum::<usize>(), 2, "{r}");
        assert_eq!(r.setup_latency.count, 6);
        assert!(!r.complete, "two connections were lost while held");
    }

    fn options(n: usize) -> HoldOptions {
        let pool = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        HoldOptions::new(LoadOptions::new(pool, None), n)
    }

    fn answered(answer: Answer, lost: Option<&str>) -> Outcome {
        Outcome {
            started: true,
            opened: true,
            with_job: true,
            answer: Some(answer),
            setup_time: Some(Duration::from_millis(5)),
            settled_at: Some(Duration::from_secs(2)),
            lost: lost.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_report_counts_answers_by_code_failures_by_reason_and_losses() {
        let outcomes = vec![
            answered(Answer::Accepted, None),
            answered(Answer::Refused("stale-share".into()), None),
            answered(Answer::Accepted, Some("reading: connection reset")),
            Outcome {
                started: true,
                opened: true,
                failure: Some("waiting for a job: timed out after 60s".into()),
                settled_at: Some(Duration::from_secs(3)),
                ..Default::default()
            },
            Outcome::default(),
        ];
        let r = report(&options(5), "released", &outcomes, Duration::from_secs(1));
        assert_eq!(
            (r.started, r.opened, r.with_job, r.answered, r.accepted),
            (4, 4, 3, 3, 2)
        );
        assert_eq!(r.refused.get("stale-share"), Some(&1));
        assert_eq!(r.failed, 2);
        assert_eq!(
            r.failures
                .get("waiting for a job: timed out after 60s")
                .copied(),
            Some(1)
        );
        assert_eq!(
            r.failures
                .get("not started: the hold was released first")
                .copied(),
            Some(1)
        );
        assert_eq!(r.held, 2);
        assert_eq!(
            r.lost_during_hold.get("reading: connection reset").copied(),
            Some(1)
        );
        assert_eq!(r.setup_secs, 3.0);
        assert_eq!(r.setup_latency.count, 3);
        assert!(!r.complete);
    }

    #[test]
    fn complete_only_when_every_connection_was_answered_and_held() {
        let all = vec![
            answered(Answer::Accepted, None),
            answered(Answer::Refused("stale-share".into()), None),
        ];
        assert!(report(&options(2), "ready", &all, Duration::ZERO).complete);
        let one_lost = vec![
            answered(Answer::Accepted, None),
            answered(Answer::Accepted, Some("the pool closed the channel: x")),
        ];
        assert!(!report(&options(2), "released", &one_lost, Duration::ZERO).complete);
    }

    #[tokio::test]
    async fn connections_that_cannot_connect_are_failures_not_panics() {
        // Nothing listens on a port just freed: every connect is refused.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut o = options(3);
        o.load.pool = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        o.ramp_per_sec = 0.0;
        o.concurrency = 2;
        // Released once ready (a release that ends at once would stop the setups).
        let signal = Arc::new(tokio::sync::Notify::new());
        let mut ready = None;
        let on_ready = |r: &HoldReport| {
            ready = Some(r.clone());
            signal.notify_one();
        };
        let release = {
            let signal = signal.clone();
            async move { signal.notified().await }
        };
        let r = hold(&o, on_ready, release).await.expect("valid options");
        let ready = ready.expect("ready once every setup ended");
        assert_eq!((ready.started, ready.failed, ready.held), (3, 3, 0));
        assert_eq!((r.answered, r.failed, r.held), (0, 3, 0));
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(r.failures.keys().all(|k| k.starts_with("opening: ")));
        assert!(!r.complete);
    }
}
