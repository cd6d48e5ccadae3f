//! Redemption and withdrawals under SIGKILLs (docs/settlement.md, "Withdrawals in the
//! coinbase"): the pool, the mint and the template provider run as processes. A miner's wallet
//! redeems its epoch-0 ehash with the pool and the template provider killed under it (exactly
//! its sats, once), then withdraws its sats in three withdrawals, the mint killed a different
//! moment into each; then, while the pool's blocks pay them, the pool and the template
//! provider are killed and started again. In the end every withdrawal the mint recorded is paid
//! exactly once in the best chain and matured, the wallet's sats plus what it withdrew are
//! what it redeemed, and the mint's signed report counts each withdrawal once.

use std::{net::SocketAddr, path::Path, time::Duration};

use bitcoin::Network;
use hashpool_e2e::{
    init_tracing,
    payouts::{address, epoch0_final, node, paid_in_best_chain, payout},
    ports_outside_ephemeral_range,
    process::{mint_config, pool_config, RoleProcess, Topology},
    public_key, wait_until, AUTHORITY_PUBLIC_KEY, AUTHORITY_SECRET_KEY,
};
use hashpool_settlement::withdrawals::{PayoutState, WithdrawalList, WITHDRAWALS_TAG};
use hashpool_wallet::EhashWallet;

use crate::crash::{mint_answers, wallet_config};

const EXE: &str = env!("CARGO_BIN_EXE_e2e-role");
const WAIT: Duration = Duration::from_secs(180);

fn provider_config(listen: SocketAddr, http: SocketAddr, data: &Path) -> String {
    format!(
        r#"[template_provider]
listen_address = "{listen}"
http_address = "{http}"
authority_public_key = "{AUTHORITY_PUBLIC_KEY}"
authority_secret_key = "{AUTHORITY_SECRET_KEY}"
cert_validity_secs = 3600

[chain]
data_dir = "{data}"
nbits = "207fffff"

[mempool]
synthetic_tx_interval_ms = 0
synthetic_tx_fee_sats = 1000
max_transactions = 20
"#,
        data = data.display()
    )
}

async fn answers(url: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), url, || async {
        reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

/// `count` blocks paying nobody's script on the provider's tip.
async fn bury(http: SocketAddr, count: u32) -> anyhow::Result<()> {
    let nobody = bitcoin::Address::p2wsh(
        &bitcoin::ScriptBuf::new_op_return([9u8; 4]),
        bitcoin::KnownHrp::Regtest,
    );
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{http}/"))
        .json(&serde_json::json!({
            "jsonrpc": "1.0", "id": "t", "method": "generatetoaddress",
            "params": [count, nobody.to_string()],
        }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(reply["error"].is_null(), "generatetoaddress: {reply}");
    Ok(())
}

/// Withdrawals of `wallet` the mint recorded, after settling any the kills left pending.
async fn settled_withdrawals(wallet: &EhashWallet) -> Vec<hashpool_wallet::Withdrawn> {
    if let Err(e) = wallet.settle_withdrawals().await {
        tracing::info!("settling withdrawals: {e}");
    }
    wallet.withdrawals().await.unwrap_or_default()
}

/// Whether the pool holds every one of `recorded`'s payouts in `state`.
async fn all_in(api: &str, recorded: &[hashpool_wallet::Withdrawn], state: PayoutState) -> bool {
    for w in recorded {
        let there = payout(api, &w.quote_id)
            .await
            .is_some_and(|p| p.state == state);
        if !there {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_pool_mint_and_template_provider_during_redemption_and_withdrawals_pays_each_once(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let logs = dir.path();
    // Fixed ports outside the ephemeral range: the provider comes back where it was.
    let ports = ports_outside_ephemeral_range(2);
    let tp_listen = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let tp_http = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let tp_toml = dir.path().join("tp.toml");
    std::fs::write(
        &tp_toml,
        provider_config(tp_listen, tp_http, &dir.path().join("chain")),
    )?;
    let mut tp = RoleProcess::start(
        Path::new(EXE),
        "template-provider",
        "template-provider",
        vec!["-c".into(), tp_toml.display().to_string()],
        logs,
    )?;
    let status = format!("http://{tp_http}/status");
    answers(&status).await?;

    let net = Topology::free();
    let mint_url = format!("http://{}", net.mint_http);
    let api = format!("http://{}/api/v1/settlement", net.api);
    let global = dir.path().join("global.toml");
    std::fs::write(&global, net.global_config(1e-6))?;
    let pool_toml = dir.path().join("pool.toml");
    std::fs::write(
        &pool_toml,
        format!(
            "{}\n[settlement]\nnode_rpc = {{ url = \"http://{tp_http}\" }}\nfollow_interval_ms = 200\n\
             min_epoch_difficulty = 0.0001\npay_withdrawals = true\n",
            pool_config(tp_listen, &dir.path().join("ledger.sqlite")),
        ),
    )?;
    let mint_dir = dir.path().join("mint");
    std::fs::create_dir_all(&mint_dir)?;
    let mint_toml = dir.path().join("mint.toml");
    std::fs::write(
        &mint_toml,
        format!(
            "{}\n[settlement]\nredeem = true\nwithdraw = true\nnetwork = \"regtest\"\n",
            mint_config(&mint_dir)
        ),
    )?;
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
    let chain = node(tp_http)?;

    let result = async {
        mint_answers(&mint_url).await?;
        let wallet =
            EhashWallet::open(&wallet_config(&dir.path().join("w"), &mint_url, "w.sqlite")).await?;
        let options = || mining_device::MinerOptions {
            locking_key: Some(wallet.sv2_locking_key()),
            ..hashpool_e2e::miner_options(net.pool, "m", 20_000.0, true)
        };
        // Epoch 0 closed and out of every window; its blocks buried; the wallet redeems it.
        let stop = tokio_util::sync::CancellationToken::new();
        let miner = mining_device::start(options(), stop.clone());
        wait_until(WAIT, "epoch 2 open", || async {
            let report: Option<serde_json::Value> = match reqwest::get(&api).await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            report.is_some_and(|r| r["epochs"].as_array().is_some_and(|e| e.len() >= 3))
        })
        .await?;
        stop.cancel();
        miner.task.await?;
        bury(tp_http, 100).await?;
        // Epoch 0 final, its rate signed, every batch quoted; the wallet holds its ehash.
        let (reward, issued) = epoch0_final(&api, WAIT).await?;
        wait_until(WAIT, "the wallet holds epoch 0", || async {
            let _ = wallet.recover().await;
            wallet
                .balance_by_epoch()
                .await
                .is_ok_and(|b| b.iter().any(|(e, _)| *e == Some(0)))
        })
        .await?;
        let held = wallet
            .balance_by_epoch()
            .await?
            .into_iter()
            .find(|(e, _)| *e == Some(0))
            .map_or(0, |(_, a)| a);
        let expected = (u128::from(held) * u128::from(reward) / u128::from(issued)) as u64;

        // The redemption with the pool and the template provider SIGKILLed under it (the mint's
        // crashes mid-redemption are `crash::sigkill_of_the_mint_during_redemptions_pays_each_once`):
        // a mint that has not read the rate yet refuses to price the melt while the pool is
        // away (nothing spent) and the redemption is done again; either way it pays once.
        let (outcome, chaos) = tokio::join!(wallet.redeem(0), async {
            pool.kill().await?;
            tp.kill().await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            tp.restart()?;
            pool.restart()
        });
        chaos?;
        tracing::info!(?outcome, "redemption with the pool and the provider killed");
        answers(&status).await?;
        answers(&format!("{api}/payouts")).await?;
        let started = std::time::Instant::now();
        while wallet.sat_balance().await? < expected {
            anyhow::ensure!(
                started.elapsed() < WAIT,
                "the wallet holds {} of its {expected} sats",
                wallet.sat_balance().await?
            );
            if let Err(e) = wallet.redeem(0).await {
                tracing::info!("redeeming again: {e}");
                let _ = wallet.finish_redemptions().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let redeemed = wallet.sat_balance().await?;
        assert_eq!(redeemed, expected, "exactly floor(x * R / H), once");
        anyhow::ensure!(redeemed > 100_000, "redeemed {redeemed} sats");
        let (_, before) = chain.chain().await?;

        // Three withdrawals, the mint killed 0, 15 and 60 ms into each and started again.
        // Each ends recorded once, or not at all with the sats back in the wallet (then it is
        // asked for again).
        let targets: Vec<_> = (0..3u64)
            .map(|i| (address(Network::Regtest), 20_000 + i * 1_000))
            .collect();
        for (i, (to, sats)) in targets.iter().enumerate() {
            let delay = Duration::from_millis([0, 15, 60][i]);
            let to = to.to_string();
            let (outcome, chaos) = tokio::join!(wallet.withdraw(*sats, &to), async {
                tokio::time::sleep(delay).await;
                mint.kill().await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                mint.restart()
            });
            chaos?;
            tracing::info!(withdrawal = i, ?delay, ?outcome, "withdrawal under a kill");
            mint_answers(&mint_url).await?;
            let started = std::time::Instant::now();
            loop {
                let recorded = settled_withdrawals(&wallet).await;
                if recorded.iter().any(|w| w.address == to) {
                    break;
                }
                let withdrawn: u64 = recorded.iter().map(|w| w.sats).sum();
                if wallet.sat_balance().await? == redeemed - withdrawn {
                    // Not recorded, nothing spent: withdraw again.
                    if let Err(e) = wallet.withdraw(*sats, &to).await {
                        tracing::info!(withdrawal = i, "withdrawing again: {e}");
                    }
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "withdrawal {i} neither recorded nor returned"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let recorded = settled_withdrawals(&wallet).await;
        assert_eq!(recorded.len(), 3, "{recorded:?}");
        let withdrawn: u64 = targets.iter().map(|(_, s)| s).sum();
        assert_eq!(wallet.sat_balance().await? + withdrawn, redeemed);
        // The mint's signed list holds exactly these.
        let list: WithdrawalList = reqwest::get(format!("{mint_url}/v1/hashpool/withdrawals"))
            .await?
            .json()
            .await?;
        list.verify(WITHDRAWALS_TAG, &public_key().into_bytes())?;
        let mut listed: Vec<_> = list.body.iter().map(|w| w.quote_id.clone()).collect();
        let mut ours: Vec<_> = recorded.iter().map(|w| w.quote_id.clone()).collect();
        listed.sort();
        ours.sort();
        assert_eq!(listed, ours);

        // The pool's blocks pay them, the pool killed as soon as one is offered and the
        // template provider killed as soon as one is in a block; both come back.
        let stop = tokio_util::sync::CancellationToken::new();
        let miner = mining_device::start(options(), stop.clone());
        let any_in = |state: PayoutState| {
            let (api, recorded) = (&api, &recorded);
            async move {
                for w in recorded {
                    if payout(api, &w.quote_id)
                        .await
                        .is_some_and(|p| p.state >= state)
                    {
                        return true;
                    }
                }
                false
            }
        };
        wait_until(WAIT, "a withdrawal offered", || {
            any_in(PayoutState::Offered)
        })
        .await?;
        pool.kill().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        pool.restart()?;
        answers(&format!("{api}/payouts")).await?;
        wait_until(WAIT, "a withdrawal in a block", || {
            any_in(PayoutState::InBlock)
        })
        .await?;
        tp.kill().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        tp.restart()?;
        answers(&status).await?;
        wait_until(WAIT, "every withdrawal in a block", || async {
            all_in(&api, &recorded, PayoutState::InBlock).await
        })
        .await?;
        stop.cancel();
        miner.task.await?;

        // Buried, every payout matures; the best chain pays each exactly once, in the block
        // the pool names.
        bury(tp_http, 100).await?;
        wait_until(WAIT, "every payout matured", || async {
            all_in(&api, &recorded, PayoutState::Matured).await
        })
        .await?;
        for w in &recorded {
            let to: bitcoin::Address<bitcoin::address::NetworkUnchecked> = w.address.parse()?;
            let script = to.assume_checked().script_pubkey();
            let paid = paid_in_best_chain(&chain, before + 1, &script, w.sats).await?;
            let p = payout(&api, &w.quote_id).await.expect("payout");
            assert_eq!(
                paid.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                vec![p.block_hash.clone().expect("block")],
                "withdrawal {} paid once, where the pool says",
                w.quote_id
            );
        }
        // The mint's report counts each withdrawal once.
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
        assert_eq!(
            (report.body.mint_sats_issued, report.body.sats_withdrawn),
            (redeemed, withdrawn)
        );
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        for p in [&pool, &mint, &tp] {
            eprintln!("--- {} ---\n{}", p.name, p.log_tail(80));
        }
        return Err(e);
    }
    pool.stop().await?;
    mint.stop().await?;
    tp.stop().await?;
    Ok(())
}
