//! Share-path benchmark: `CHANNELS` SV2 connections submit easy shares as fast as the pool takes
//! them, through validation, the durable accrual ledger (a share is acknowledged only after its
//! commit) and quote batching to a scripted mint. Reports accepted shares per second and
//! p50/p99 share -> acknowledgement latency. Run in release:
//!
//! `cargo run --release -p hashpool-e2e --bin share-bench -- [channels] [seconds] [window]`
//!
//! `window` is how many shares each connection keeps unacknowledged: deep for throughput,
//! shallow for latency (with a deep window, latency is mostly queueing: window / rate).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use hashpool_e2e::{
    fake_mint::{mint_secret, FakeMint},
    loopback_any_port, public_key,
    raw_client::setup_connection,
    test_key, PoolOptions, TestPool, TestProvider,
};
use hashpool_sv2_io::{decode_frame, spawn_reader, str0255};
use mining_sv2::{OpenStandardMiningChannelOwned, SubmitSharesStandard};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};
use stratum_apps::network_helpers::connect_with_noise;

/// Mainnet's difficulty-1 nBits: no share is ever a block, so the tip never moves.
const NO_BLOCKS_NBITS: u32 = 0x1d00_ffff;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hashpool_e2e::init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let channels: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let window: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(512);
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(
        &dir.path().join("chain"),
        loopback_any_port(),
        NO_BLOCKS_NBITS,
        0,
    )
    .await?;
    let pool = TestPool::start(
        tp.running.listen_address,
        PoolOptions {
            // A rate this high keeps vardiff from raising the (maximal) target mid-run and
            // sizes the duplicate-share budget for the run.
            shares_per_minute: 1.0e9,
            share_batch_size: 1,
            vardiff_interval_secs: 3600,
            ledger_path: dir.path().join("ledger.sqlite"),
            unit_work: 1e-6,
            batch_interval_ms: 1_000,
            retry_interval_ms: 5_000,
            ..Default::default()
        },
    )
    .await?;
    let mint = FakeMint::connect(pool.running.mint_link_address, mint_secret(), true).await?;

    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..channels {
        let latencies = latencies.clone();
        let addr = pool.address();
        tasks.push(tokio::spawn(async move {
            load(addr, i, window, deadline, latencies).await
        }));
    }
    let started = Instant::now();
    let mut accepted = 0u64;
    for t in tasks {
        accepted += t.await??;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let stats = pool.running.context.stats.snapshot();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let ledger = pool.running.context.shares.ledger();
    let mut ledger_shares = 0;
    let mut quoted = 0u64;
    for i in 0..channels {
        let key = test_key(&format!("bench-{i}"));
        ledger_shares += ledger.accrual(&key).await?.map(|a| a.shares).unwrap_or(0);
        quoted += ledger
            .batches_of(&key)
            .await?
            .iter()
            .filter(|b| b.quote_id.is_some())
            .count() as u64;
    }
    println!("channels                 {channels} (window {window} shares each)");
    println!("duration                 {:.1} s", elapsed.as_secs_f64());
    println!("shares acknowledged      {accepted}");
    println!(
        "accepted shares/s        {:.0}",
        accepted as f64 / elapsed.as_secs_f64()
    );
    println!(
        "pool accepted / rejected {} / {}",
        stats.shares_accepted, stats.shares_rejected
    );
    println!("shares in the ledger     {ledger_shares}");
    println!(
        "quotes answered          {quoted} (requests seen by the mint: {})",
        mint.request_count()
    );
    println!(
        "share -> ack p50         {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3
    );
    println!(
        "share -> ack p99         {:.2} ms",
        pct(0.99).as_secs_f64() * 1e3
    );
    mint.close().await;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}

/// One connection: open a channel, then submit a new nonce for every share until `deadline`,
/// keeping at most `window` shares unacknowledged.
async fn load(
    addr: std::net::SocketAddr,
    i: usize,
    window: u32,
    deadline: Instant,
    latencies: Arc<Mutex<Vec<Duration>>>,
) -> anyhow::Result<u64> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let noise = connect_with_noise(stream, Some(public_key()))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 4096);
    hashpool_sv2_io::send(
        &mut writer,
        CommonMessagesOwned::SetupConnection(setup_connection(Protocol::MiningProtocol)),
    )
    .await?;
    let identity = format!("{}.bench{i}", test_key(&format!("bench-{i}")));
    hashpool_sv2_io::send(
        &mut writer,
        MiningOwned::OpenStandardMiningChannel(OpenStandardMiningChannelOwned {
            request_id: 1,
            user_identity: str0255(&identity),
            nominal_hash_rate: 1.0,
            max_target: U256Owned::from([0xff; 32]),
        }),
    )
    .await?;
    let (mut channel, mut job, mut ntime, mut version) = (None, None, 0u32, 0u32);
    while channel.is_none() || job.is_none() || ntime == 0 {
        let Some(Ok(mut f)) = frames.recv().await else {
            anyhow::bail!("closed")
        };
        match decode_frame(&mut f, &[])?.1 {
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s)) => {
                channel = Some(s.channel_id)
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
    let mut sent_at: HashMap<u32, Instant> = HashMap::new();
    let (mut seq, mut acked_seq, mut accepted) = (0u32, 0u32, 0u64);
    let mut local = Vec::new();
    while Instant::now() < deadline {
        while seq - acked_seq < window {
            seq += 1;
            sent_at.insert(seq, Instant::now());
            hashpool_sv2_io::send(
                &mut writer,
                MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
                    channel_id: channel,
                    sequence_number: seq,
                    job_id: job,
                    nonce: seq,
                    ntime,
                    version,
                }),
            )
            .await?;
        }
        let Some(Ok(mut f)) = frames.recv().await else {
            anyhow::bail!("closed")
        };
        match decode_frame(&mut f, &[])?.1 {
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s)) => {
                accepted += s.new_submits_accepted_count as u64;
                if let Some(t) = sent_at.remove(&s.last_sequence_number) {
                    local.push(t.elapsed());
                }
                acked_seq = acked_seq.max(s.last_sequence_number);
            }
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                anyhow::bail!("share refused: {}", hashpool_sv2_io::text(&e.error_code))
            }
            _ => {}
        }
    }
    latencies.lock().unwrap().extend(local);
    Ok(accepted)
}
