//! A public translator (`channel_mode = per_key`): stock SV1 miners give their own key as the
//! username and earn ehash to it; the translator holds no wallet and no ehash. Three miners
//! under two keys (one key with two workers): each key's claimed balance is exactly the ehash of
//! its accepted work, computed from the pool's share rows; one key claims only after a long
//! stretch of batches, part of it while the mint was down, and gets everything; a username that
//! is not a key is refused with what to put there.

use std::time::Duration;

use clap::Parser;
use ext_mint_quote::LockingKey;
use hashpool_e2e::{init_tracing, sv1_miner_options, wait_until, PoolOptions, Stack, TestMint};
use hashpool_sv1::error_code;
use hashpool_wallet_cli::Cli;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};
use translator::ChannelMode;

use crate::translator_bad_input::ask;

const HARD_NBITS: u32 = 0x1e0f_ffff;

/// `hashpool-wallet --json ARGS` on the wallet in `dir`.
async fn wallet(dir: &std::path::Path, mint: &str, args: &[&str]) -> anyhow::Result<Value> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let argv = ["hashpool-wallet", "--dir", dir, "--mint", mint, "--json"]
        .into_iter()
        .chain(args.iter().copied());
    let mut out = Vec::new();
    hashpool_wallet_cli::run(Cli::try_parse_from(argv)?, &mut out).await?;
    Ok(serde_json::from_slice(&out)?)
}

async fn init(dir: &std::path::Path, mint: &str) -> anyhow::Result<LockingKey> {
    let key = wallet(dir, mint, &["init"]).await?["public_key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("init printed no key"))?
        .to_string();
    Ok(LockingKey::from_hex(&key)?)
}

/// What authorizing as `user` on a fresh connection is answered.
async fn authorize(
    address: std::net::SocketAddr,
    user: &str,
) -> anyhow::Result<(Value, Option<(i64, String)>)> {
    let mut c = Framed::new(TcpStream::connect(address).await?, LinesCodec::new());
    let subscribe = json!({"id": 1, "method": "mining.subscribe", "params": ["bitaxe/2.0"]});
    let (result, error) = ask(&mut c, &subscribe.to_string(), json!(1)).await?;
    anyhow::ensure!(error.is_none(), "subscribe refused: {error:?}");
    // The extranonce is the miner's own, told before its key is known: 4 bytes and 4 to roll.
    anyhow::ensure!(result[1].as_str().map(str::len) == Some(8), "{result}");
    anyhow::ensure!(result[2] == json!(4), "{result}");
    let authorize = json!({"id": 2, "method": "mining.authorize", "params": [user, "x"]});
    ask(&mut c, &authorize.to_string(), json!(2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_translator_pays_each_key_exactly_its_work_and_holds_none() -> anyhow::Result<()> {
    init_tracing();
    let mut stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            batch_interval_ms: 100,
            retry_interval_ms: 200,
            ..Default::default()
        })
        .with_mint()
        .with_translator("public", 20_000.0, |c| {
            c.channel_mode = ChannelMode::PerKey;
        })
        .start()
        .await?;
    let translator = stack.translator().running.downstream_address;
    let url = stack.mint().url();
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    let (key_a, key_b) = (init(&a, &url).await?, init(&b, &url).await?);

    // A username that is not a key is refused with what to put there, and a key with a typo is
    // not taken for a worker name.
    for bad in ["bitaxe".to_string(), format!("{}0.rig", key_a.to_hex())] {
        let (_, error) = authorize(translator, &bad).await?;
        let (code, message) = error.ok_or_else(|| anyhow::anyhow!("{bad} was authorized"))?;
        assert_eq!(code, error_code::UNAUTHORIZED);
        assert!(message.contains("hashpool-wallet init"), "{message}");
    }

    // Three stock SV1 miners under two keys: alice runs two workers.
    let miners_stop = CancellationToken::new();
    let miner = |user: String| {
        mining_device_sv1::start(
            sv1_miner_options(translator, &user, 20_000.0),
            miners_stop.clone(),
        )
    };
    let miners = [
        miner(format!("{key_a}.rig1")),
        miner(format!("{key_a}.rig2")),
        miner(key_b.to_hex()),
    ];
    let ledger = stack.pool.running.ledger.clone();
    let batches = |key: LockingKey| {
        let ledger = ledger.clone();
        async move { ledger.batches_of(&key).await.map(|b| b.len()).unwrap_or(0) }
    };
    wait_until(Duration::from_secs(120), "quotes for both keys", || async {
        batches(key_a).await >= 3 && batches(key_b).await >= 3
    })
    .await?;
    // Each key mines on a channel of its own, its two workers on one (the monitoring API lists
    // channels from a cache refreshed every second).
    wait_until(
        Duration::from_secs(30),
        "the pool to list one extended channel per key",
        || async {
            stack
                .pool
                .extended_channels()
                .await
                .is_ok_and(|c| c.len() == 2)
        },
    )
    .await?;

    // Alice claims as she goes; bob does not.
    let early = wallet(&a, &url, &["claim"]).await?;
    assert!(early["claimed"].as_u64() > Some(0), "{early}");

    // The mint goes away; the pool keeps every key's work and batches it, and sends the batches
    // when the mint is back.
    let mint = stack.mint.take().expect("a mint");
    let http = mint.running.http_address;
    mint.stop().await?;
    let before = batches(key_b).await;
    wait_until(
        Duration::from_secs(120),
        "bob's work batched while the mint is away",
        || async { batches(key_b).await >= before + 5 },
    )
    .await?;
    stack.mint = Some(
        TestMint::start_at(
            &stack.dir.path().join("mint"),
            stack.pool.running.mint_link_address,
            http,
        )
        .await?,
    );
    wait_until(
        Duration::from_secs(120),
        "bob's work batched with the mint back",
        || async { batches(key_b).await >= before + 10 },
    )
    .await?;

    // The miners stop; every batch is answered.
    miners_stop.cancel();
    for m in miners {
        m.task.await?;
    }
    let pool = &stack.pool;
    for key in [key_a, key_b] {
        pool.wait_until_settled(&key, Duration::from_secs(60))
            .await?;
    }

    // Each key holds exactly the ehash of its accepted work: bob's single late claim finds
    // every quote, alice's second claim the ones since her first.
    let unit = pool.running.config.unit_work.work().hashes();
    let mut shares_credited = 0;
    for (key, dir) in [(key_a, &a), (key_b, &b)] {
        let (work, shares) = ledger.share_work(&key).await?;
        assert!(shares > 0);
        shares_credited += shares;
        let earned = (work.hashes() / unit) as u64;
        let quoted: u64 = ledger
            .batches_of(&key)
            .await?
            .iter()
            .map(|b| b.amount)
            .sum();
        assert_eq!(
            quoted, earned,
            "every whole unit of {key}'s work was quoted"
        );
        wallet(dir, &url, &["claim"]).await?;
        let balance = wallet(dir, &url, &["balance"]).await?;
        assert_eq!(balance["balance"], json!(earned), "{key}: {balance}");
        assert_eq!(wallet(dir, &url, &["claim"]).await?["claimed"], json!(0));
    }
    // Every share the pool accepted was credited to one of the two keys: none to the
    // translator (which has no wallet to hold any) nor to anyone else.
    let accepted = pool.running.stats.snapshot().shares_accepted;
    assert_eq!(accepted, shares_credited);
    stack.stop().await
}

/// A miner who claims a day late: at prod's one batch per 10 s a key that mined all day has
/// 8,640 quotes, many pages of the mint's lookup. Here more than two pages' worth, issued as
/// the pool's batches are, are claimed by one `claim`, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_a_day_late_pages_through_every_quote() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), hashpool_e2e::free_address()).await?;
    let url = mint.url();
    let miner = dir.path().join("miner");
    let key = init(&miner, &url).await?;
    let quotes = 2 * mint::http::LOOKUP_PAGE + 1;
    let mut issued = 0;
    for n in 0..quotes {
        let amount = 1 + (n as u64 % 7);
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let request = ext_mint_quote::MintQuoteRequestOwned {
            request_id: binary_sv2::U256Owned::from(id),
            locking_key: binary_sv2::B0255Owned::new(key.as_bytes().to_vec())
                .expect("33 bytes fit"),
            unit: hashpool_sv2_io::str0255("hash"),
            amount,
            share_count: 1,
            share_commitment: binary_sv2::U256Owned::from(id),
            epoch: 0,
        };
        mint.running.issuer.issue(&request).await?;
        issued += amount;
    }
    let claim = wallet(&miner, &url, &["claim"]).await?;
    assert_eq!(claim["claimed"], json!(issued), "{claim}");
    assert_eq!(
        wallet(&miner, &url, &["balance"]).await?["balance"],
        json!(issued)
    );
    assert_eq!(wallet(&miner, &url, &["claim"]).await?["claimed"], json!(0));
    mint.stop().await
}
