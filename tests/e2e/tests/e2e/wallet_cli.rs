//! `hashpool-wallet` against a real mint: init prints the key quotes are locked to; claim mints
//! exactly the key's quotes (once, whatever was minted before it), never another key's;
//! balance, history, send and receive agree.

use binary_sv2::{B0255Owned, U256Owned};
use clap::Parser;
use ext_mint_quote::MintQuoteRequestOwned;
use hashpool_e2e::{free_address, init_tracing, TestMint};
use hashpool_sv2_io::str0255;
use hashpool_wallet_cli::Cli;
use serde_json::Value;

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
