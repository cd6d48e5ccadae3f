//! How many SV1 connections one translator holds, and what each costs in memory, while shares
//! flow. The translator runs as its own process (its RSS is measured from /proc); the pool and
//! template provider run here, with two SV1 CPU miners submitting shares throughout. Every idle
//! connection subscribes, authorizes and must receive a job, and at the end each one asks a
//! question (a stale submit) that must be answered. Run in release:
//!
//! `cargo build --release -p hashpool-e2e --bins && RUST_LOG=error ./target/release/translator-bench [connections]`

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hashpool_e2e::{
    free_address, process::RoleProcess, sv1_miner_options, test_key, PoolOptions, Stack,
    AUTHORITY_PUBLIC_KEY,
};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};

const HARD_NBITS: u32 = 0x1e0f_ffff;

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// How long every connection is held, shares flowing, before memory is measured.
const HOLD_SECS: u64 = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hashpool_e2e::init_tracing();
    let connections: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 600.0,
            share_batch_size: 1,
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;

    // The translator as a process: no wallet; its identity is a key, so the pool accrues to it.
    let sv1 = free_address();
    let global = dir.path().join("proxy.toml");
    let monitoring = free_address();
    std::fs::write(
        &global,
        format!(
            "[translator]\ndownstream_address = \"{sv1}\"\nupstream_address = \"{}\"\n\
             upstream_authority_public_key = \"{AUTHORITY_PUBLIC_KEY}\"\nmonitoring_address = \"{monitoring}\"\n\
             [wallet]\napi_address = \"127.0.0.1:1\"\nmint_url = \"http://127.0.0.1:1\"\n\
             [stats]\ningest_address = \"127.0.0.1:1\"\nhttp_address = \"127.0.0.1:1\"\n\
             authority_public_key = \"{AUTHORITY_PUBLIC_KEY}\"\nreporter_public_keys = [\"{AUTHORITY_PUBLIC_KEY}\"]\n\
             [web]\naddress = \"127.0.0.1:1\"\n",
            pool.address()
        ),
    )?;
    let own = dir.path().join("translator.toml");
    std::fs::write(
        &own,
        format!(
            "[translator]\nuser_identity = \"{}\"\nnominal_hashrate = 40000.0\n\
             [vardiff]\ninitial_hashrate = 20000.0\nshares_per_minute = 600.0\ninterval_secs = 20\n\
             [wallet]\nenabled = false\nunit = \"hash\"\ndatabase_path = \"{0}\"\nmnemonic_path = \"{0}\"\n\
             recovery_interval_secs = 60\nfaucet_amount = 1\nfaucet_interval_secs = 60\n",
            test_key("bench-translator"),
        )
        .replace("{0}", &dir.path().join("unused").display().to_string()),
    )?;
    // Built beside this binary (`cargo build --bins`).
    let exe = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("e2e-role");
    let args = vec![
        "-c".to_string(),
        own.display().to_string(),
        "-g".into(),
        global.display().to_string(),
    ];
    let mut translator = RoleProcess::start(&exe, "translator", "translator", args, dir.path())?;
    let pid = translator.pid().context("translator pid")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(sv1).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "translator did not start:\n{}",
            translator.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = CancellationToken::new();
    let miners: Vec<_> = (0..2)
        .map(|i| {
            mining_device_sv1::start(
                sv1_miner_options(sv1, &format!("load.rig{i}"), 20_000.0),
                stop.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = rss_kib(pid)?;

    let notified = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let connect_failures = Arc::new(AtomicUsize::new(0));
    // Why a connection got no job: refused subscribe/authorize, or closed by the translator.
    let refused = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let ask = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let (notified, answered, ask, stop) = (
            notified.clone(),
            answered.clone(),
            ask.clone(),
            stop.clone(),
        );
        let connect_failures = connect_failures.clone();
        let (refused, closed) = (refused.clone(), closed.clone());
        tasks.push(tokio::spawn(async move {
            // Like a real miner, retry a refused connect (the accept queue can overflow when
            // thousands arrive at once on a busy machine).
            let mut stream = None;
            for attempt in 0..10u64 {
                match TcpStream::connect(sv1).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await,
                }
            }
            let Some(stream) = stream else {
                connect_failures.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut c = Framed::new(stream, LinesCodec::new());
            let worker = format!("idle.{i}");
            let _ = c.send(json!({"id": 1, "method": "mining.subscribe", "params": []}).to_string()).await;
            let _ = c.send(json!({"id": 2, "method": "mining.authorize", "params": [worker, "x"]}).to_string()).await;
            let mut got_job = false;
            loop {
                tokio::select! {
                    line = c.next() => match line {
                        Some(Ok(l)) => {
                            if !got_job && l.contains("mining.notify") {
                                got_job = true;
                                notified.fetch_add(1, Ordering::Relaxed);
                            }
                            if !got_job && l.contains("\"error\":[") {
                                refused.fetch_add(1, Ordering::Relaxed);
                                eprintln!("connection {i}: {l}");
                            }
                            if l.contains("\"id\":3") {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            if !got_job {
                                closed.fetch_add(1, Ordering::Relaxed);
                                eprintln!("connection {i} closed before a job: {other:?}");
                            }
                            return;
                        }
                    },
                    _ = ask.cancelled() => {
                        let submit = json!({"id": 3, "method": "mining.submit", "params": [worker, "ffffffff", "00000000", "00000000", "00000000"]});
                        let _ = c.send(submit.to_string()).await;
                        // Wait for the answer, then stay idle until the end.
                        while let Some(Ok(l)) = c.next().await {
                            if l.contains("\"id\":3") {
                                answered.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        stop.cancelled().await;
                        return;
                    }
                    _ = stop.cancelled() => return,
                }
            }
        }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let wait = Instant::now() + Duration::from_secs(120);
    while notified.load(Ordering::Relaxed) < connections && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_time = started.elapsed();
    // Hold every connection while the CPU miners' shares flow.
    tokio::time::sleep(Duration::from_secs(HOLD_SECS)).await;
    let loaded = rss_kib(pid)?;
    let acked_before: u64 = miners
        .iter()
        .map(|m| m.stats.shares_acknowledged.load(Ordering::Relaxed))
        .sum();
    ask.cancel();
    let wait = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::Relaxed) < connections && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked_after: u64 = miners
        .iter()
        .map(|m| m.stats.shares_acknowledged.load(Ordering::Relaxed))
        .sum();
    let rejected: u64 = miners
        .iter()
        .map(|m| m.stats.shares_rejected.load(Ordering::Relaxed))
        .sum();

    println!("connections opened        {connections}");
    println!(
        "subscribed, authorized and sent a job  {}",
        notified.load(Ordering::Relaxed)
    );
    println!(
        "no job: connect failed {}, refused {}, closed {}",
        connect_failures.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed)
    );
    println!(
        "answered at the end       {}",
        answered.load(Ordering::Relaxed)
    );
    println!(
        "time to serve all         {:.1} s",
        connect_time.as_secs_f64()
    );
    println!("translator RSS            {base} KiB -> {loaded} KiB");
    println!(
        "memory per connection     {:.1} KiB",
        (loaded.saturating_sub(base)) as f64 / connections as f64
    );
    println!(
        "shares accepted meanwhile {} (rejected {rejected}), held {HOLD_SECS} s",
        acked_after.saturating_sub(acked_before)
    );
    let warnings: Vec<String> = translator
        .log_tail(usize::MAX)
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("dropped"))
        .map(str::to_string)
        .collect();
    println!("translator warnings       {}", warnings.len());
    for w in warnings.iter().take(5) {
        println!("  {w}");
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    for m in miners {
        let _ = m.task.await;
    }
    translator.stop().await?;
    stack.stop().await
}
