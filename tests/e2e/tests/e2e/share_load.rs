//! The `share-load` generator against a real pool: what it reports accepted is exactly what the
//! pool counted and wrote to its ledger, with batched acknowledgements, and an honest run has no
//! refusals and no share left unanswered.

use std::time::Duration;

use hashpool_e2e::{init_tracing, public_key, test_key, PoolOptions, Stack};
use share_load::LoadOptions;

/// Mainnet's difficulty-1 nBits: no share is a block, so the tip never moves (no stale shares).
const NO_BLOCKS_NBITS: u32 = 0x1d00_ffff;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_load_reports_exactly_what_the_pool_accepted() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let stack = Stack::new()
        .nbits(NO_BLOCKS_NBITS)
        .with_pool(PoolOptions {
            // Vardiff never moves the maximal target, and the duplicate budget fits the run.
            shares_per_minute: 1.0e9,
            vardiff_interval_secs: 3600,
            // Batched acknowledgements: a Success covers up to 4 shares.
            share_batch_size: 4,
            ledger_path: dir.path().join("ledger.sqlite"),
            limits: pool::config::MinerLimits {
                min_share_difficulty: 1e-30,
                ..Default::default()
            },
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    let keys = [test_key("share-load-a"), test_key("share-load-b")];

    let mut options = LoadOptions::new(pool.address(), Some(public_key()));
    options.channels = 3;
    options.in_flight = 16;
    options.duration = Duration::from_secs(2);
    options.drain = Duration::from_secs(15);
    options.users = keys.iter().map(|k| k.to_string()).collect();
    let report = share_load::run(&options).await?;
    println!("{report}");

    assert_eq!(report.channels_running, 3, "{report}");
    assert!(report.channel_errors.is_empty(), "{report}");
    assert!(report.accepted > 0, "{report}");
    assert_eq!(report.refused_total, 0, "{report}");
    assert_eq!(report.unanswered, 0, "{report}");
    assert_eq!(report.submitted, report.accepted, "{report}");
    assert_eq!(report.count_mismatches + report.unexpected_answers, 0);
    // One latency per share a Success covered: every accepted share.
    assert_eq!(report.ack_latency.count as u64, report.accepted);

    // The pool's own count and its ledger agree with the generator.
    let counted = pool.running.stats.snapshot();
    assert_eq!(counted.shares_accepted, report.accepted);
    assert_eq!(counted.shares_rejected, 0);
    let ledger = pool.running.ledger.clone();
    let mut in_ledger = 0;
    for key in &keys {
        in_ledger += ledger.accrual(key).await?.map_or(0, |a| a.shares);
    }
    assert_eq!(in_ledger, report.accepted);
    stack.stop().await
}
