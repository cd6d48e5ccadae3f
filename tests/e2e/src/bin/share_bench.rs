//! Share-path benchmark: `CHANNELS` SV2 connections submit easy shares as fast as the pool takes
//! them, through validation, the durable accrual ledger (a share is acknowledged only after its
//! commit) and quote batching. Run in release:
//!
//! `cargo run --release -p hashpool-e2e --bin share-bench -- [channels] [seconds] [window] [mode] [batch_ms]`
//!
//! `window` is how many shares each connection keeps unacknowledged: deep for throughput,
//! shallow for latency (with a deep window, latency is mostly queueing: window / rate).
//!
//! `mode` `ack` (default): a scripted mint answers quotes; reports accepted shares/s and
//! share -> acknowledgement latency. `mint`: the real mint issues the quotes and every channel
//! has its own wallet that mints each announced quote at once; reports shares/s that end up
//! minted and share -> spendable token latency. Every share is worth exactly one ehash here
//! (maximal target, unit = its work), so a share is minted when its channel's minted total
//! reaches its sequence number.
//!
//! The ledger: the SQLite file by default; `BENCH_LEDGER_URL=postgres://...` puts it on
//! PostgreSQL (the database should be empty), and `BENCH_POOLS=2` runs a second pool instance
//! on that ledger (its own `server_id`), the channels spread over both, the mint on the first
//! (mode `ack` only).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use ext_mint_quote::{MintQuoteMessage, EXTENSION_TYPE};
use hashpool_e2e::{
    fake_mint::{mint_secret, FakeMint},
    open_wallet, public_key, test_key, PoolOptions, Stack, TestPool,
};
use hashpool_sv2_io::{decode_frame, extension_frame, str0255, text, Dial};
use mining_sv2::{OpenStandardMiningChannelOwned, SubmitSharesStandard};
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Mainnet's difficulty-1 nBits: no share is ever a block, so the tip never moves.
const NO_BLOCKS_NBITS: u32 = 0x1d00_ffff;

/// One ehash per share: a maximal-target share proves exactly one hash of work.
const UNIT_WORK_ONE_HASH: f64 = 1.2 / hashpool_ehash::DIFFICULTY_1_WORK.hashes() as f64;

/// What one channel saw.
#[derive(Default)]
struct ChannelRun {
    accepted: u64,
    ack_latencies: Vec<Duration>,
    /// Send time of share `seq` at index `seq - 1`.
    sent: Vec<Instant>,
    /// (when, amount) of every quote its wallet minted, in order.
    minted: Arc<Mutex<Vec<(Instant, u64)>>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hashpool_e2e::init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let channels: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let window: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(512);
    let minting = args.get(4).map(String::as_str) == Some("mint");
    let batch_ms: u64 = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(100);
    let ledger_url = std::env::var("BENCH_LEDGER_URL").ok();
    let pools: usize = std::env::var("BENCH_POOLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    anyhow::ensure!(
        pools == 1 || (ledger_url.is_some() && !minting),
        "BENCH_POOLS above 1 needs BENCH_LEDGER_URL and mode ack"
    );
    let dir = tempfile::tempdir()?;
    let options = |server_id: u16| PoolOptions {
        // A rate this high keeps vardiff from raising the (maximal) target mid-run and
        // sizes the duplicate-share budget for the run.
        shares_per_minute: 1.0e9,
        share_batch_size: 1,
        vardiff_interval_secs: 3600,
        ledger_path: dir.path().join("ledger.sqlite"),
        unit_work: UNIT_WORK_ONE_HASH,
        batch_interval_ms: if minting { batch_ms } else { 1_000 },
        retry_interval_ms: 5_000,
        // Every nonce a share (the maximal target), as before the floor existed; every
        // other limit at its default, so their cost is measured.
        limits: pool::config::MinerLimits {
            min_share_difficulty: 1e-30,
            ..Default::default()
        },
        ledger_database_url: ledger_url.clone(),
        server_id,
        ..Default::default()
    };
    let stack = Stack::new().nbits(NO_BLOCKS_NBITS).with_pool(options(7));
    // The real mint, or a scripted one that answers the quotes (mode `ack`).
    let stack = if minting { stack.with_mint() } else { stack }
        .start()
        .await?;
    let (pool, mint) = (&stack.pool, stack.mint.as_ref());
    let mut others = Vec::new();
    for n in 1..pools {
        let id = 7 + u16::try_from(n)?;
        others.push(TestPool::start(stack.tp.running.listen_address, options(id)).await?);
    }
    let addresses: Vec<_> = std::iter::once(pool.address())
        .chain(others.iter().map(TestPool::address))
        .collect();
    let fake = match mint {
        Some(_) => None,
        None => Some(FakeMint::connect(pool.running.mint_link_address, mint_secret(), true).await?),
    };

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut wallets = Vec::new();
    for i in 0..channels {
        let addr = addresses[i % addresses.len()];
        let minted = Arc::new(Mutex::new(Vec::new()));
        let quotes = match &mint {
            Some(mint) => {
                let wdir = dir.path().join(format!("wallet-{i}"));
                let wallet = Arc::new(open_wallet(&wdir, &mint.url()).await?);
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(mint_announced(wallet.clone(), rx, minted.clone()));
                wallets.push(wallet);
                Some(tx)
            }
            None => None,
        };
        let key = match wallets.last() {
            Some(w) => w.sv2_locking_key(),
            None => test_key(&format!("bench-{i}")),
        };
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            load(addr, key, window, deadline, quotes, minted, stop).await
        }));
    }
    let started = Instant::now();
    tokio::time::sleep_until(deadline.into()).await;
    let elapsed = started.elapsed();

    // Let the last shares be batched, quoted and minted.
    let ledger = pool.running.ledger.clone();
    let drain_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    loop {
        let open = ledger.open_batches().await.map(|b| b.len()).unwrap_or(1);
        let mut done = open == 0;
        if minting {
            for w in &wallets {
                let key = w.sv2_locking_key();
                let shares = ledger.accrual(&key).await?.map(|a| a.shares).unwrap_or(0);
                done &= w.balance().await? == shares;
            }
        }
        if done || drain_started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_started.elapsed();
    stop.cancel();
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await??);
    }

    let accepted: u64 = runs.iter().map(|r| r.accepted).sum();
    let stats = pool.running.stats.snapshot();
    let (mut all_accepted, mut all_rejected) = (stats.shares_accepted, stats.shares_rejected);
    for other in &others {
        let s = other.running.stats.snapshot();
        all_accepted += s.shares_accepted;
        all_rejected += s.shares_rejected;
    }
    let pct = |l: &mut Vec<Duration>, p: f64| {
        l.sort();
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut ack: Vec<Duration> = runs.iter().flat_map(|r| r.ack_latencies.clone()).collect();
    println!(
        "mode                     {}",
        if minting {
            format!("mint (batch {batch_ms} ms)")
        } else {
            "ack".into()
        }
    );
    println!(
        "ledger                   {} ({pools} pool instance{})",
        if ledger_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if pools == 1 { "" } else { "s" }
    );
    println!("channels                 {channels} (window {window} shares each)");
    println!("duration                 {:.1} s", elapsed.as_secs_f64());
    println!("shares acknowledged      {accepted}");
    println!(
        "accepted shares/s        {:.0}",
        accepted as f64 / elapsed.as_secs_f64()
    );
    println!("pool accepted / rejected {all_accepted} / {all_rejected}");
    println!(
        "share -> ack p50 / p99   {:.2} / {:.2} ms",
        ms(pct(&mut ack, 0.5)),
        ms(pct(&mut ack, 0.99))
    );
    if let Some(fake) = fake {
        println!("quote requests           {}", fake.request_count());
        fake.close().await;
    }
    if mint.is_some() {
        let mut token = Vec::new();
        let (mut minted_total, mut quotes) = (0u64, 0usize);
        for r in &runs {
            let minted = r.minted.lock().unwrap().clone();
            quotes += minted.len();
            let mut covered = 0u64;
            for (at, amount) in minted {
                for seq in covered + 1..=covered + amount {
                    if let Some(sent) = r.sent.get(seq as usize - 1) {
                        token.push(at.saturating_duration_since(*sent));
                    }
                }
                covered += amount;
            }
            minted_total += covered;
        }
        let mut balance = 0;
        for w in &wallets {
            balance += w.balance().await?;
        }
        println!("quotes minted            {quotes}");
        println!("ehash minted / balance   {minted_total} / {balance} (1 ehash per share)");
        println!("drain after the run      {:.2} s", drain.as_secs_f64());
        println!(
            "minted shares/s          {:.0} (minted / (run + drain))",
            minted_total as f64 / (elapsed + drain).as_secs_f64()
        );
        println!(
            "share -> token p50 / p99 {:.1} / {:.1} ms",
            ms(pct(&mut token, 0.5)),
            ms(pct(&mut token, 0.99))
        );
    }
    stack.stop().await
}

/// Mints each announced quote at once, recording when and how much.
async fn mint_announced(
    wallet: Arc<hashpool_wallet::EhashWallet>,
    mut quotes: mpsc::UnboundedReceiver<String>,
    minted: Arc<Mutex<Vec<(Instant, u64)>>>,
) {
    while let Some(id) = quotes.recv().await {
        match wallet.mint_quote(&id).await {
            Ok(amount) => minted.lock().unwrap().push((Instant::now(), amount)),
            Err(e) => eprintln!("cannot mint {id}: {e}"),
        }
    }
}

/// One connection: open a channel, then submit a new nonce for every share until `deadline`,
/// keeping at most `window` shares unacknowledged; then keep listening for quote announcements
/// until `stop`.
async fn load(
    addr: std::net::SocketAddr,
    key: ext_mint_quote::LockingKey,
    window: u32,
    deadline: Instant,
    quotes: Option<mpsc::UnboundedSender<String>>,
    minted: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: CancellationToken,
) -> anyhow::Result<ChannelRun> {
    // Flag 1: standard jobs (REQUIRES_STANDARD_JOBS), as the raw clients ask.
    let dial = Dial::new(
        addr,
        Some(public_key()),
        Protocol::MiningProtocol,
        "share-bench",
    )
    .flags(1)
    .capacity(4096);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    // Announcements come only to connections that negotiated the extension.
    if quotes.is_some() && !conn.try_extension(EXTENSION_TYPE).await? {
        anyhow::bail!("the pool does not offer the mint-quote extension");
    }
    conn.send(MiningOwned::OpenStandardMiningChannel(
        OpenStandardMiningChannelOwned {
            request_id: 1,
            // The key as user identity (the pool's fallback when a channel has no TLV).
            user_identity: str0255(&format!("{key}.bench")),
            nominal_hash_rate: 1.0,
            max_target: U256Owned::from([0xff; 32]),
        },
    ))
    .await?;
    let mut run = ChannelRun {
        minted,
        ..Default::default()
    };
    let on_announcement = |f: &mut codec_sv2::SerializedFrame| -> bool {
        let Some(ext) = extension_frame(f) else {
            return false;
        };
        if let (Some(tx), Ok(MintQuoteMessage::Announcement(a))) = (
            &quotes,
            MintQuoteMessage::decode(ext.message_type, &ext.payload),
        ) {
            let _ = tx.send(text(&a.quote_id));
        }
        true
    };
    let (mut channel, mut job, mut ntime, mut version) = (None, None, 0u32, 0u32);
    while channel.is_none() || job.is_none() || ntime == 0 {
        let mut f = conn.recv_frame().await?;
        if on_announcement(&mut f) {
            continue;
        }
        match decode_frame(&mut f, &[])?.1 {
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s)) => {
                channel = Some(s.channel_id)
            }
            AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(e)) => {
                anyhow::bail!("channel refused: {}", text(&e.error_code))
            }
            AnyMessageOwned::Mining(MiningOwned::NewMiningJob(j)) => {
                version = j.version;
                job = Some(j.job_id);
            }
            AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(p)) => ntime = p.min_ntime,
            _ => {}
        }
    }
    let (channel, job) = (channel.unwrap_or_default(), job.unwrap_or_default());
    let (mut seq, mut acked_seq) = (0u32, 0u32);
    loop {
        let sending = Instant::now() < deadline;
        while sending && seq - acked_seq < window {
            seq += 1;
            run.sent.push(Instant::now());
            conn.send(MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
                channel_id: channel,
                sequence_number: seq,
                job_id: job,
                nonce: seq,
                ntime,
                version,
            }))
            .await?;
        }
        let frame = tokio::select! {
            f = conn.recv_frame() => f,
            _ = stop.cancelled() => return Ok(run),
        };
        let mut f = frame?;
        if on_announcement(&mut f) {
            continue;
        }
        match decode_frame(&mut f, &[])?.1 {
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s)) => {
                run.accepted += s.new_submits_accepted_count as u64;
                if let Some(t) = run.sent.get(s.last_sequence_number as usize - 1) {
                    run.ack_latencies.push(t.elapsed());
                }
                acked_seq = acked_seq.max(s.last_sequence_number);
            }
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                anyhow::bail!("share refused: {}", text(&e.error_code))
            }
            _ => {}
        }
    }
}
