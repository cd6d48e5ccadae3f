//! `hashpool-wallet` against a real mint: init prints the key quotes are locked to; claim mints
//! exactly the key's quotes (once, whatever was minted before it), never another key's;
//! balance, history, send and receive agree. `serve` puts the wallet API on the directory and
//! claims new quotes by itself; web-proxy in front of it, with no translator and no
//! stats-proxy (a miner's page at home), shows the exact balance and creates tokens.

use std::time::Duration;

use binary_sv2::{B0255Owned, U256Owned};
use clap::Parser;
use ext_mint_quote::MintQuoteRequestOwned;
use hashpool_e2e::{free_address, init_tracing, loopback_any_port, wait_until, TestMint};
use hashpool_sv2_io::str0255;
use hashpool_wallet_cli::{Cli, ServeArgs};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

async fn wallet(dir: &std::path::Path, mint: &str, args: &[&str]) -> anyhow::Result<Value> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let argv = ["hashpool-wallet", "--dir", dir, "--mint", mint, "--json"]
        .into_iter()
        .chain(args.iter().copied());
    let mut out = Vec::new();
    hashpool_wallet_cli::run(Cli::try_parse_from(argv)?, &mut out).await?;
    Ok(serde_json::from_slice(&out)?)
}

async fn issue(mint: &TestMint, id: u8, key_hex: &str, amount: u64) -> anyhow::Result<String> {
    let key = hex::decode(key_hex)?;
    let request = MintQuoteRequestOwned {
        request_id: U256Owned::from([id; 32]),
        locking_key: B0255Owned::new(key).expect("33 bytes fit"),
        unit: str0255("hash"),
        amount,
        share_count: 1,
        share_commitment: U256Owned::from([id; 32]),
        epoch: 0,
    };
    Ok(mint.running.issuer.issue(&request).await?.quote_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_claims_exactly_its_quotes_once_and_spends_them() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let url = mint.url();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let key_a = wallet(&a, &url, &["init"]).await?["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let key_b = wallet(&b, &url, &["init"]).await?["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(key_a, key_b);
    let first = issue(&mint, 1, &key_a, 100).await?;
    issue(&mint, 2, &key_a, 200).await?;
    issue(&mint, 3, &key_a, 300).await?;
    issue(&mint, 4, &key_b, 7).await?;

    // A claim that stopped after its first quote (the quote minted, the rest not), run again:
    // each quote is minted once.
    {
        let words = std::fs::read_to_string(a.join("mnemonic"))?;
        let same = hashpool_wallet::EhashWallet::open(&hashpool_wallet::WalletConfig {
            mint_url: url.clone(),
            unit: "hash".into(),
            database_path: a.join("wallet.sqlite"),
            mnemonic: Some(words.trim().to_string()),
            mnemonic_path: a.join("mnemonic"),
        })
        .await?;
        assert_eq!(same.mint_quote(&first).await?, 100);
    }
    let claim = wallet(&a, &url, &["claim"]).await?;
    assert_eq!(claim["claimed"], 500, "{claim}");
    assert_eq!(claim["balance"], 600, "{claim}");
    let again = wallet(&a, &url, &["claim"]).await?;
    assert_eq!(again["claimed"], 0, "{again}");
    assert_eq!(wallet(&a, &url, &["balance"]).await?["balance"], 600);
    let history = wallet(&a, &url, &["history"]).await?;
    let amounts: u64 = history
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["amount"].as_u64().unwrap())
        .sum();
    assert_eq!(amounts, 600, "{history}");

    // The other key claims only its own quote.
    let claim_b = wallet(&b, &url, &["claim"]).await?;
    assert_eq!(claim_b["claimed"], 7, "{claim_b}");

    // Send and receive; a token spends once; nonsense is refused.
    let sent = wallet(&a, &url, &["send", "250"]).await?;
    let token = sent["token"].as_str().unwrap().to_string();
    assert_eq!(
        wallet(&b, &url, &["receive", &token]).await?["received"],
        250
    );
    assert!(wallet(&b, &url, &["receive", &token]).await.is_err());
    assert!(wallet(&b, &url, &["receive", "cashuBnonsense"])
        .await
        .is_err());
    assert!(wallet(&a, &url, &["send", "0"]).await.is_err());
    assert!(wallet(&a, &url, &["send", "100000"]).await.is_err());
    assert_eq!(wallet(&a, &url, &["balance"]).await?["balance"], 350);
    assert_eq!(wallet(&b, &url, &["balance"]).await?["balance"], 257);
    mint.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_proxy_in_front_of_a_served_wallet_shows_it_and_creates_tokens() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let url = mint.url();
    let (home, friend) = (dir.path().join("home"), dir.path().join("friend"));
    let key = wallet(&home, &url, &["init"]).await?["public_key"]
        .as_str()
        .expect("a key")
        .to_string();
    wallet(&friend, &url, &["init"]).await?;
    // Earned before the wallet is served: its first claim mints it.
    let before = issue(&mint, 21, &key, 300).await?;

    let stop = CancellationToken::new();
    let served = hashpool_wallet_cli::serve(
        &home,
        None,
        &ServeArgs {
            listen: loopback_any_port(),
            claim_every: 1,
            log_file: None,
        },
        stop.clone(),
    )
    .await?;
    assert_eq!(served.public_key, key);
    assert_eq!(served.token_path, home.join("wallet-api-token"));
    // The miner's page at home: the wallet alone (no translator, no stats-proxy).
    let proxy = web_proxy::start(
        web_proxy::WebProxyConfig {
            address: loopback_any_port(),
            stats_url: None,
            wallet_url: format!("http://{}", served.address),
            translator_url: None,
            pool_api_url: None,
            refresh_secs: 1,
            allowed_hosts: Vec::new(),
            wallet_token_path: served.token_path.clone(),
        },
        stop.clone(),
    )
    .await?;
    let http = reqwest::Client::new();
    let page = format!("http://{}", proxy.address);
    let summary = || async {
        http.get(format!("{page}/api/summary"))
            .send()
            .await?
            .json::<Value>()
            .await
    };
    let balance_is = |amount: u64| {
        let summary = &summary;
        async move {
            summary()
                .await
                .is_ok_and(|s| s["balance"].as_u64() == Some(amount))
        }
    };
    wait_until(
        Duration::from_secs(30),
        "the first claim's 300 hash",
        || balance_is(300),
    )
    .await?;
    // Earned while served: the periodic claim mints it.
    let during = issue(&mint, 22, &key, 200).await?;
    wait_until(Duration::from_secs(30), "the next claim's 200 hash", || {
        balance_is(500)
    })
    .await?;

    let s = summary().await?;
    assert_eq!(s["locking_key"], key.as_str(), "{s}");
    assert_eq!(s["faucet"], false, "{s}");
    let mut quotes: Vec<(String, u64)> = s["history"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|h| {
            (
                h["quote"].as_str().unwrap_or_default().to_string(),
                h["amount"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    quotes.sort();
    let mut expected = vec![(before, 300), (during, 200)];
    expected.sort();
    assert_eq!(quotes, expected, "{s}");
    assert_eq!(s["upstream"]["connected"], Value::Null, "{s}");
    let unavailable = s["unavailable"].as_array().expect("a list");
    assert_eq!(unavailable.len(), 2, "{s}");
    assert!(unavailable
        .iter()
        .all(|u| u.as_str().is_some_and(|u| u.contains("not run here"))));
    let html = http.get(&page).send().await?.text().await?;
    assert!(html.contains("token-form") && html.contains(r#"id="unavailable""#));
    assert!(!html.contains(r#"id="upstream""#));

    // A token through the page (web-proxy adds the wallet's bearer token).
    let create = |body: Value| http.post(format!("{page}/api/token")).json(&body).send();
    let made = create(json!({ "amount": 120 })).await?;
    assert_eq!(made.status().as_u16(), 200);
    let made: Value = made.json().await?;
    assert_eq!(made["amount"], 120, "{made}");
    let token = made["token"].as_str().expect("a token").to_string();
    assert!(token.starts_with("cashuB"), "{token}");
    let too_much = create(json!({ "amount": 100_000 })).await?;
    assert_eq!(too_much.status().as_u16(), 400);
    let faucet = http.post(format!("{page}/api/faucet")).send().await?;
    assert_eq!(
        faucet.status().as_u16(),
        404,
        "no faucet on a miner's own wallet"
    );
    wait_until(
        Duration::from_secs(10),
        "the balance less the token",
        || balance_is(380),
    )
    .await?;

    // While served, another process may read the wallet but not change it.
    let refused = wallet(&home, &url, &["send", "1"]).await.unwrap_err();
    assert!(
        refused.to_string().contains("hashpool-wallet serve"),
        "{refused:#}"
    );
    assert_eq!(wallet(&home, &url, &["balance"]).await?["balance"], 380);
    // The token is real: another wallet receives it.
    assert_eq!(
        wallet(&friend, &url, &["receive", &token]).await?["received"],
        120
    );

    // Stopped: the directory is the CLI's again, nothing left to claim.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), served.task).await??;
    assert_eq!(wallet(&home, &url, &["claim"]).await?["claimed"], 0);
    assert_eq!(wallet(&home, &url, &["balance"]).await?["balance"], 380);
    mint.stop().await
}
