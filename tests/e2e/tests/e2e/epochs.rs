//! Ehash keeps its settlement epoch at the mint (docs/settlement.md, "Epochs in the mint"):
//! each epoch's quotes are signed in that epoch's `hash` keyset, the hashpool wallet mints each
//! quote there, and nothing (a standard wallet, a hostile request) moves ehash into another
//! epoch's keyset. The keysets are derived from the mint's seed, so they survive a restart.

use std::{str::FromStr, sync::Arc};

use cdk::{
    amount::SplitTarget,
    mint_url::MintUrl,
    nuts::{CurrencyUnit, KeysetResponse, PaymentMethod},
    wallet::{ReceiveOptions, WalletBuilder},
};
use ext_mint_quote::{EpochsResponse, EPOCHS_PATH, NO_EPOCH};
use hashpool_e2e::{free_address, init_tracing, open_wallet, TestMint};

async fn get<T: serde::de::DeserializeOwned>(mint: &TestMint, path: &str) -> anyhow::Result<T> {
    Ok(reqwest::get(format!("{}{path}", mint.url()))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_epochs_ehash_stays_in_its_keyset_and_no_wallet_moves_it_to_another(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint_dir = dir.path().join("mint");
    let mint = TestMint::start(&mint_dir, free_address()).await?;
    let miner = open_wallet(&dir.path().join("miner"), &mint.url()).await?;
    let key = miner.locking_key().to_bytes();

    // Work from before epochs, from epoch 0 and from epoch 1, in that order (the turn's batch
    // of epoch 0 is issued once epoch 1 has begun).
    let pre = mint.issue(1, &key, 5, NO_EPOCH).await?;
    let e1 = mint.issue(2, &key, 300, 1).await?;
    let e0 = mint.issue(3, &key, 200, 0).await?;

    let epochs: EpochsResponse = get(&mint, EPOCHS_PATH).await?;
    assert_eq!(
        epochs.epochs.iter().map(|k| k.epoch).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let k0 = epochs.keyset_of(Some(0)).expect("epoch 0").to_string();
    let k1 = epochs.keyset_of(Some(1)).expect("epoch 1").to_string();
    let pre_k = epochs
        .keyset_of(None)
        .expect("pre-epoch keyset")
        .to_string();
    assert!(k0 != k1 && k0 != pre_k && k1 != pre_k);

    // Wallets are told one `hash` keyset is active: the newest epoch's.
    let keysets: KeysetResponse = get(&mint, "/v1/keysets").await?;
    let active: Vec<String> = keysets
        .keysets
        .iter()
        .filter(|k| k.unit == CurrencyUnit::custom("hash") && k.active)
        .map(|k| k.id.to_string())
        .collect();
    assert_eq!(active, vec![k1.clone()]);

    // A standard CDK wallet on the miner's seed mints with the active keyset: right for an
    // epoch-1 quote, refused for the epoch-0 one (whose ehash is then still the miner's).
    let words = std::fs::read_to_string(dir.path().join("miner").join("mnemonic"))?;
    let seed = bip39::Mnemonic::parse(words.trim())?.to_seed_normalized("");
    let standard = WalletBuilder::new()
        .mint_url(MintUrl::from_str(&mint.url())?)
        .unit(CurrencyUnit::custom("hash"))
        .localstore(Arc::new(
            cdk_sqlite::WalletSqliteDatabase::new(dir.path().join("standard.sqlite")).await?,
        ))
        .seed(seed)
        .without_rate_limiting()
        .build()?;
    let ehash = Some(PaymentMethod::Custom("ehash".into()));
    standard
        .fetch_mint_quote_with_key_search(&e0, ehash.clone(), 10)
        .await?;
    let refused = standard.mint(&e0, SplitTarget::default(), None).await;
    assert!(
        refused.is_err(),
        "an epoch-0 quote is not signed in epoch 1's keyset"
    );
    assert_eq!(u64::from(standard.total_balance().await?), 0);

    // Spellings the router takes for the same route (a method in capitals, percent-encoded)
    // are checked as well: refused for the keyset before any signature is looked at.
    for path in ["/v1/mint/EHASH", "/v1/mint/%65hash"] {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", mint.url()))
            .json(&serde_json::json!({
                "quote": e0,
                "outputs": [{
                    "amount": 1,
                    "id": k1,
                    "B_": "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"
                }],
                "signature": "00"
            }))
            .send()
            .await?;
        assert_eq!(answer.status(), reqwest::StatusCode::BAD_REQUEST, "{path}");
        let body: serde_json::Value = answer.json().await?;
        assert_eq!(body["code"], 12002, "{path}: {body}");
    }

    // The hashpool wallet mints each quote in its own epoch's keyset.
    for q in [&pre, &e1, &e0] {
        miner.mint_quote(q).await?;
    }
    assert_eq!(
        miner.balance_by_epoch().await?,
        vec![(None, 5), (Some(0), 200), (Some(1), 300)]
    );
    let by_keyset: Vec<(String, u64)> = miner
        .balance_by_keyset()
        .await?
        .into_iter()
        .map(|(k, a)| (k.to_string(), a))
        .collect();
    for (keyset, amount) in [(&pre_k, 5), (&k0, 200), (&k1, 300)] {
        assert!(
            by_keyset.contains(&(keyset.clone(), amount)),
            "{by_keyset:?}"
        );
    }

    // A token is of one epoch: 301 is more than any one epoch holds.
    assert!(miner.send(301).await.is_err(), "no single epoch holds 301");
    assert_eq!(miner.balance().await?, 505, "a refused send spends nothing");

    // The newest epoch that holds enough pays: epoch 1 for 300, then epoch 0 for 150.
    let friend = open_wallet(&dir.path().join("friend"), &mint.url()).await?;
    let t1 = miner.send(300).await?;
    assert_eq!(friend.receive(&t1).await?, 300);
    let t0 = miner.send(150).await?;

    // A standard wallet receiving it would swap it into epoch 1's keyset: refused, and the
    // token is still good.
    assert!(standard
        .receive(&t0, ReceiveOptions::default())
        .await
        .is_err());
    assert_eq!(u64::from(standard.total_balance().await?), 0);
    assert_eq!(friend.receive(&t0).await?, 150);
    assert_eq!(
        friend.balance_by_epoch().await?,
        vec![(Some(0), 150), (Some(1), 300)]
    );
    assert_eq!(
        miner.balance_by_epoch().await?,
        vec![(None, 5), (Some(0), 50)]
    );

    // The keysets are the seed's: after a restart the same epochs have the same keysets, and
    // ehash of each still moves within its epoch.
    let http = mint.running.http_address;
    mint.stop().await?;
    let mint = TestMint::start_at(&mint_dir, free_address(), http).await?;
    let after: EpochsResponse = get(&mint, EPOCHS_PATH).await?;
    assert_eq!(after, epochs);
    let friend = open_wallet(&dir.path().join("friend2"), &mint.url()).await?;
    let miner = open_wallet(&dir.path().join("miner"), &mint.url()).await?;
    let t = miner.send(50).await?;
    assert_eq!(friend.receive(&t).await?, 50);
    assert_eq!(friend.balance_by_epoch().await?, vec![(Some(0), 50)]);
    mint.stop().await
}
