//! Crash safety with real processes: the pool, the mint and the miner (with its wallet) are
//! each SIGKILLed mid-run and started again on the same files. Afterwards every unit of
//! accrued work was issued exactly once, every quote was paid once and minted once, and the
//! wallet holds exactly the ehash of the work the pool accepted.
//!
//! Between the crashes an attacker opens channels whose target is far harder than the
//! network's (`max_target` 1, an absurd hashrate) and submits blocks on them: each block is
//! credited with the network target's work, never its channel's.
//!
//! Epochs are a twentieth of a block's work here, so they turn every second or two, under the
//! crashes: afterwards they follow each other without a gap, and every found block is recorded
//! once with what settlement needs.

use std::{collections::HashSet, net::SocketAddr, path::Path, time::Duration};

use hashpool_e2e::{
    grind::{network_target, BlockAttacker},
    init_tracing, loopback_any_port,
    process::{mint_config, pool_config, RoleProcess, Topology},
    public_key, test_key, wait_until, TestProvider, AUTHORITY_PUBLIC_KEY,
};
use hashpool_ehash::Work;
use hashpool_wallet::{EhashWallet, WalletConfig};

const HARD_NBITS: u32 = 0x1e0f_ffff;
const UNIT_WORK: f64 = 1e-6;
const EXE: &str = env!("CARGO_BIN_EXE_e2e-role");

pub(crate) fn wallet_config(dir: &Path, mint_url: &str, db: &str) -> WalletConfig {
    WalletConfig {
        mint_url: mint_url.to_string(),
        unit: "hash".into(),
        database_path: dir.join(db),
        mnemonic: None,
        mnemonic_path: dir.join("mnemonic"),
    }
}

/// (quotes fully minted, quotes) for the key, through the mint's lookup.
async fn minted(probe: &EhashWallet) -> anyhow::Result<(usize, usize)> {
    let (mut done, mut all, mut after) = (0, 0, None);
    loop {
        let page = probe.quotes(after.as_deref()).await?;
        all += page.quotes.len();
        done += page
            .quotes
            .iter()
            .filter(|q| q.amount_issued == q.amount)
            .count();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((done, all)),
        }
    }
}

/// One block share on a fresh attack channel, accepted by the pool. The pool may be starting
/// (after its restart): connecting is retried until it answers. Fails if the channel's target
/// is not harder than the network's (the attack needs it so).
async fn attack(pool: SocketAddr, user: &str, network: bitcoin::Target) -> anyhow::Result<()> {
    let wait = Duration::from_secs(90);
    let deadline = tokio::time::Instant::now() + wait;
    let mut attacker = loop {
        match BlockAttacker::connect(pool, public_key(), user, Duration::from_secs(10)).await {
            Ok(a) => break a,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("attacker cannot connect yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.context("the attacker's connection")),
        }
    };
    anyhow::ensure!(
        attacker.target() < network,
        "the attack channel's target is not harder than the network's"
    );
    let share = attacker.block_share(network, wait).await?;
    anyhow::ensure!(share.hash <= network && share.hash > share.channel_target);
    tracing::info!(stale = attacker.stale, "attacker's block share accepted");
    Ok(())
}

/// Waits until at least `target` quotes are minted; returns how many are.
async fn wait_for_minted(probe: &EhashWallet, target: usize, what: &str) -> anyhow::Result<usize> {
    wait_until(Duration::from_secs(90), what, || async {
        minted(probe).await.is_ok_and(|m| m.0 >= target)
    })
    .await?;
    Ok(minted(probe).await?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_mint_pool_and_wallet_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    let net = Topology::free();
    let mint_url = format!("http://{}", net.mint_http);
    let ledger_path = dir.path().join("ledger.sqlite");
    let global = dir.path().join("global.toml");
    std::fs::write(&global, net.global_config(UNIT_WORK))?;
    let pool_toml = dir.path().join("pool.toml");
    std::fs::write(
        &pool_toml,
        format!(
            "{}\n[settlement]\nnode_rpc = {{ url = \"http://{}\" }}\nfollow_interval_ms = 200\n\
             epoch_work_ppm = 50000\n",
            pool_config(tp.running.listen_address, &ledger_path),
            tp.running.http_address
        ),
    )?;
    let mint_dir = dir.path().join("mint");
    std::fs::create_dir_all(&mint_dir)?;
    let mint_toml = dir.path().join("mint.toml");
    std::fs::write(&mint_toml, mint_config(&mint_dir))?;
    let wallet_dir = dir.path().join("wallet");

    // The miner's wallet: created here so the test knows its key; the miner process opens it.
    let key = {
        let w = EhashWallet::open(&wallet_config(&wallet_dir, &mint_url, "wallet.sqlite")).await?;
        w.sv2_locking_key()
    };
    // Same mnemonic, its own database: reads the key's quotes from the mint.
    let probe = EhashWallet::open(&wallet_config(&wallet_dir, &mint_url, "probe.sqlite")).await?;
    // The attacker's identity is its key.
    let attacker_key = test_key("crash-attacker");
    let attacker_user = format!("{attacker_key}.attacker");
    let network = network_target(HARD_NBITS);
    // Block shares the pool acknowledged: each is in the ledger (acknowledged after commit).
    let mut blocks = 0u64;

    let logs = dir.path();
    let role_args = |c: &Path| {
        vec![
            "-c".to_string(),
            c.display().to_string(),
            "-g".into(),
            global.display().to_string(),
        ]
    };
    let mut pool = RoleProcess::start(Path::new(EXE), "pool", "pool", role_args(&pool_toml), logs)?;
    let mut mint = RoleProcess::start(Path::new(EXE), "mint", "mint", role_args(&mint_toml), logs)?;
    let miner_args = vec![
        "--pool".to_string(),
        net.pool.to_string(),
        "--pool-pubkey".into(),
        AUTHORITY_PUBLIC_KEY.into(),
        "--user-identity".into(),
        "crash-miner".into(),
        "--nominal-hashrate".into(),
        "40000".into(),
        "--limit-hashrate".into(),
        "--wallet-mint-url".into(),
        mint_url.clone(),
        "--wallet-db".into(),
        wallet_dir.join("wallet.sqlite").display().to_string(),
        "--wallet-mnemonic-file".into(),
        wallet_dir.join("mnemonic").display().to_string(),
    ];
    let mut miner = RoleProcess::start(Path::new(EXE), "miner", "mining-device", miner_args, logs)?;

    let result = async {
        let seen = wait_for_minted(&probe, 3, "quotes minted before any crash").await?;
        // Attacks run while no role is being killed: an acknowledged share is then exactly one
        // that the ledger holds.
        attack(net.pool, &attacker_user, network).await?;
        blocks += 1;

        mint.kill().await?;
        // Mining and accrual go on; the pool holds the requests the mint cannot answer.
        attack(net.pool, &attacker_user, network).await?;
        blocks += 1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        mint.restart()?;
        let seen =
            wait_for_minted(&probe, seen + 3, "quotes minted after the mint's restart").await?;

        pool.kill().await?;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pool.restart()?;
        attack(net.pool, &attacker_user, network).await?;
        blocks += 1;
        let seen =
            wait_for_minted(&probe, seen + 3, "quotes minted after the pool's restart").await?;

        miner.kill().await?;
        // Quotes for work accepted before the kill are announced to nobody.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        miner.restart()?;
        wait_for_minted(&probe, seen + 3, "quotes minted after the wallet's restart").await?;

        miner.stop().await?;
        // Let the last accrued units become a quote.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        for p in [&pool, &mint, &miner] {
            eprintln!("--- {} ---\n{}", p.name, p.log_tail(40));
        }
        return Err(e);
    }

    // The pool's ledger: every batch answered, one quote each.
    let ledger = pool::ledger::AccrualLedger::open(
        &ledger_path,
        "hash",
        hashpool_ehash::UnitWork::from_difficulty(UNIT_WORK).map_err(anyhow::Error::msg)?,
    )
    .await?;
    wait_until(Duration::from_secs(20), "every batch answered", || async {
        ledger.open_batches().await.is_ok_and(|b| b.is_empty())
    })
    .await?;
    pool.stop().await?;
    // The attacker: each block share earned the network target's work, nothing of its
    // channel's (harder) target; its accrual agrees with its share rows and its batches.
    let per_block = Work::from_target(&network).hashes();
    let attacked = ledger
        .accrual(&attacker_key)
        .await?
        .expect("the attacker accrued");
    let (attack_rows, attack_shares) = ledger.share_work(&attacker_key).await?;
    assert_eq!(
        (attacked.shares, attack_shares),
        (blocks, blocks),
        "one ledger share per acknowledged block share"
    );
    assert_eq!(
        attacked.total.hashes(),
        per_block * blocks as u128,
        "{blocks} block shares credited at the network target's work"
    );
    assert_eq!(attacked.total, attack_rows);
    let attack_batches = ledger.batches_of(&attacker_key).await?;
    assert!(attack_batches.iter().all(|b| b.quote_id.is_some()));
    let attack_unit = hashpool_ehash::UnitWork::from_difficulty(UNIT_WORK)
        .map_err(anyhow::Error::msg)?
        .work()
        .hashes();
    assert_eq!(
        attack_batches
            .iter()
            .map(|b| b.amount as u128)
            .sum::<u128>()
            * attack_unit
            + attacked.pending.hashes(),
        attacked.total.hashes(),
        "the attacker is issued exactly its credited work"
    );

    // Epochs turned under the crashes and still follow each other without a gap, each closed
    // at or past its planned end; every batch belongs to one.
    let epochs = ledger.epochs().await?;
    assert!(
        epochs.len() >= 2,
        "epochs turned during the run: {epochs:?}"
    );
    for pair in epochs.windows(2) {
        let end = pair[0].end.expect("closed").hashes();
        assert_eq!(Some(pair[1].start), pair[0].end, "{pair:?}");
        assert!(
            end >= pair[0].start.hashes() + pair[0].length.hashes(),
            "{pair:?}"
        );
    }
    // Every acknowledged block share (the attacker's, and any the miner found) is one found
    // block, with its reward and the pool's work up to it, each at its own point of that work.
    let found = ledger.found_blocks(1_000).await?;
    assert!(found.len() as u64 >= blocks, "{found:?}");
    let points: HashSet<u128> = found
        .iter()
        .filter_map(|b| b.pool_work.map(|w| w.hashes()))
        .collect();
    assert_eq!(points.len(), found.len(), "{found:?}");
    assert!(found.iter().all(|b| b.height.is_some()
        && b.value_sats.is_some_and(|v| v > 0)
        && b.pool_work.is_some()
        && b.network_work == Some(Work::from_target(&network))));

    let batches = ledger.batches_of(&key).await?;
    assert!(
        batches.iter().all(|b| b.refused_code.is_none()),
        "the mint refused no batch"
    );
    // Every batch is in an epoch that exists, in epoch order (the ledger hears the network's
    // work per block before any miner has a job to mine).
    let last_epoch = epochs.last().map(|e| e.index);
    let tagged: Vec<Option<u32>> = batches.iter().map(|b| b.epoch).collect();
    assert!(
        tagged.iter().all(|e| e.is_some() && *e <= last_epoch),
        "{tagged:?}"
    );
    assert!(tagged.windows(2).all(|w| w[0] <= w[1]), "{tagged:?}");
    let quote_ids: HashSet<String> = batches.iter().filter_map(|b| b.quote_id.clone()).collect();
    assert_eq!(
        quote_ids.len(),
        batches.len(),
        "one distinct quote per batch"
    );
    let issued: u64 = batches.iter().map(|b| b.amount).sum();
    let unit = hashpool_ehash::UnitWork::from_difficulty(UNIT_WORK)
        .map_err(anyhow::Error::msg)?
        .work()
        .hashes();
    let accrual = ledger.accrual(&key).await?.expect("accrued");
    let (work, shares) = ledger.share_work(&key).await?;
    assert!(shares > 0);
    assert_eq!(
        accrual.total.hashes(),
        work.hashes(),
        "accrual = accepted shares"
    );
    assert_eq!(
        issued as u128 * unit + accrual.pending.hashes(),
        work.hashes(),
        "every unit of accepted work issued once, the rest carried"
    );

    // The mint: exactly these quotes for the key, each paid its batch's amount.
    let mut mint_quotes = Vec::new();
    let mut after = None;
    loop {
        let page = probe.quotes(after.as_deref()).await?;
        mint_quotes.extend(page.quotes);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let at_mint: HashSet<String> = mint_quotes.iter().map(|q| q.quote.clone()).collect();
    assert_eq!(
        at_mint, quote_ids,
        "the mint holds exactly the pool's quotes"
    );
    assert_eq!(mint_quotes.iter().map(|q| q.amount).sum::<u64>(), issued);

    // The wallet: whatever it missed while down is recovered; then it holds every unit.
    let wallet = EhashWallet::open(&wallet_config(&wallet_dir, &mint_url, "wallet.sqlite")).await?;
    let recovered = wallet.recover().await?;
    tracing::info!(
        shares,
        batches = batches.len(),
        issued,
        recovered,
        "after the crashes"
    );
    assert_eq!(
        wallet.balance().await?,
        issued,
        "wallet = ehash of accepted work"
    );
    let (done, all) = minted(&probe).await?;
    assert_eq!(
        (done, all),
        (batches.len(), batches.len()),
        "every quote minted once"
    );

    mint.stop().await?;
    tp.stop().await?;
    Ok(())
}

/// The wallet's epoch-0 ehash after minting what the mint holds for it.
async fn epoch0_of(w: &EhashWallet) -> anyhow::Result<u64> {
    w.recover().await?;
    Ok(w.balance_by_epoch()
        .await?
        .into_iter()
        .find(|(e, _)| *e == Some(0))
        .map_or(0, |(_, a)| a))
}

/// The mint answers HTTP again after a restart.
pub(crate) async fn mint_answers(mint_url: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), "the mint answers", || async {
        reqwest::get(format!("{mint_url}/v1/info"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

/// Redemption under SIGKILLs of the mint (docs/settlement.md, "Redemption"): three miners'
/// wallets each redeem their epoch-0 ehash while the mint process is killed a different moment
/// into the melt, then started again on the same files. Afterwards each wallet holds exactly
/// `floor(x * R / H)` sats for its ehash, its epoch-0 ehash is spent, and the mint's signed
/// report counts each redemption once: no melt paid twice, no ehash lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_mint_during_redemptions_pays_each_once() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(
        dir.path(),
        loopback_any_port(),
        hashpool_e2e::REGTEST_NBITS,
        0,
    )
    .await?;
    let net = Topology::free();
    let mint_url = format!("http://{}", net.mint_http);
    let api = format!("http://{}/api/v1/settlement", net.api);
    let global = dir.path().join("global.toml");
    std::fs::write(&global, net.global_config(UNIT_WORK))?;
    let pool_toml = dir.path().join("pool.toml");
    std::fs::write(
        &pool_toml,
        format!(
            "{}\n[settlement]\nnode_rpc = {{ url = \"http://{}\" }}\nfollow_interval_ms = 200\n\
             min_epoch_difficulty = 0.0001\n",
            pool_config(tp.running.listen_address, &dir.path().join("ledger.sqlite")),
            tp.running.http_address
        ),
    )?;
    let mint_dir = dir.path().join("mint");
    std::fs::create_dir_all(&mint_dir)?;
    let mint_toml = dir.path().join("mint.toml");
    std::fs::write(
        &mint_toml,
        format!("{}\n[settlement]\nredeem = true\n", mint_config(&mint_dir)),
    )?;
    let role_args = |c: &Path| {
        vec![
            "-c".to_string(),
            c.display().to_string(),
            "-g".into(),
            global.display().to_string(),
        ]
    };
    let logs = dir.path();
    let mut pool = RoleProcess::start(Path::new(EXE), "pool", "pool", role_args(&pool_toml), logs)?;
    let mut mint = RoleProcess::start(Path::new(EXE), "mint", "mint", role_args(&mint_toml), logs)?;

    let result = async {
        mint_answers(&mint_url).await?;
        let mut wallets = Vec::new();
        for i in 0..3 {
            let d = dir.path().join(format!("wallet{i}"));
            wallets.push(EhashWallet::open(&wallet_config(&d, &mint_url, "wallet.sqlite")).await?);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let miners: Vec<_> = wallets
            .iter()
            .enumerate()
            .map(|(i, w)| {
                mining_device::start(
                    mining_device::MinerOptions {
                        locking_key: Some(w.sv2_locking_key()),
                        ..hashpool_e2e::miner_options(net.pool, &format!("m{i}"), 20_000.0, true)
                    },
                    stop.clone(),
                )
            })
            .collect();
        // Epochs 0 and 1 closed, then the miners stop and the pool's blocks are buried.
        wait_until(Duration::from_secs(180), "epoch 2 open", || async {
            let report: Option<serde_json::Value> = match reqwest::get(&api).await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            report.is_some_and(|r| r["epochs"].as_array().is_some_and(|e| e.len() >= 3))
        })
        .await?;
        stop.cancel();
        for m in miners {
            m.task.await?;
        }
        tp.bury(100).await?;
        let (reward, issued) =
            hashpool_e2e::payouts::epoch0_final(&api, Duration::from_secs(120)).await?;

        // Every wallet's epoch-0 ehash, and what it is worth: a recovery cut short by a slow
        // answer is finished by the next.
        wait_until(
            Duration::from_secs(60),
            "the wallets hold epoch 0",
            || async {
                let mut sum = 0;
                for w in &wallets {
                    sum += epoch0_of(w).await.unwrap_or(0);
                }
                sum == issued
            },
        )
        .await?;
        let mut held = Vec::new();
        for w in &wallets {
            held.push(epoch0_of(w).await?);
        }
        assert_eq!(held.iter().sum::<u64>(), issued, "the wallets hold epoch 0");

        // Each redemption with the mint killed a different moment into it.
        for (i, w) in wallets.iter().enumerate() {
            if held[i] == 0 {
                continue;
            }
            let delay = Duration::from_millis([0, 15, 60][i]);
            // The wallet waits for a melt whose answer it lost until the mint is back: the
            // mint is started again while the redemption is in flight.
            let (outcome, chaos) = tokio::join!(w.redeem(0), async {
                tokio::time::sleep(delay).await;
                mint.kill().await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                mint.restart()
            });
            chaos?;
            tracing::info!(wallet = i, ?delay, ?outcome, "redemption under a kill");
            mint_answers(&mint_url).await?;
            // Whatever the kill interrupted is finished or undone (a melt the restarted mint
            // still reports pending is asked about again); what is left unspent is redeemed
            // again. Done when the wallet holds its sats.
            let expected = (u128::from(held[i]) * u128::from(reward) / u128::from(issued)) as u64;
            let started = std::time::Instant::now();
            loop {
                if let Err(e) = w.finish_redemptions().await {
                    tracing::info!(wallet = i, "finishing again: {e}");
                }
                if w.sat_balance().await? >= expected {
                    break;
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "wallet {i} holds {} of its {expected} sats",
                    w.sat_balance().await?
                );
                let unspent = w
                    .balance_by_epoch()
                    .await?
                    .into_iter()
                    .any(|(e, _)| e == Some(0));
                if unspent {
                    if let Err(e) = w.redeem(0).await {
                        tracing::info!(wallet = i, "redeeming again: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }

        for (i, w) in wallets.iter().enumerate() {
            let expected = (u128::from(held[i]) * u128::from(reward) / u128::from(issued)) as u64;
            assert_eq!(w.sat_balance().await?, expected, "wallet {i}'s sats");
            assert!(
                !w.balance_by_epoch()
                    .await?
                    .iter()
                    .any(|(e, _)| *e == Some(0)),
                "wallet {i}'s epoch-0 ehash is spent"
            );
        }
        // The mint counts each redemption once.
        let report: hashpool_settlement::liabilities::MintReport =
            reqwest::get(format!("{mint_url}/v1/hashpool/epochs/0/report"))
                .await?
                .json()
                .await?;
        let problems = hashpool_settlement::liabilities::check_mint_report(
            0,
            &report,
            &public_key().into_bytes(),
            None,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let expected_sats: u64 = held
            .iter()
            .map(|x| (u128::from(*x) * u128::from(reward) / u128::from(issued)) as u64)
            .sum();
        assert_eq!(
            (
                report.body.issued,
                report.body.redeemed,
                report.body.outstanding
            ),
            (issued, issued, 0)
        );
        assert_eq!(report.body.sats_issued, expected_sats);
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        for p in [&pool, &mint] {
            eprintln!("--- {} ---\n{}", p.name, p.log_tail(60));
        }
        return Err(e);
    }
    pool.stop().await?;
    mint.stop().await?;
    tp.stop().await?;
    Ok(())
}
