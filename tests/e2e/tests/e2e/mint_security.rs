//! What the mint refuses: ehash quotes asked for over HTTP (and, behind that, by anything but
//! the mint's own issuer), melting, a mint request signed by another key, a lookup not signed
//! by the key (or signed for another mint, or replayed), a repeated request id making a second
//! quote, malformed quote requests.

use binary_sv2::{B0255Owned, U256Owned};
use cdk::{
    amount::{FeeAndAmounts, SplitTarget},
    mint::MintQuoteRequest,
    nuts::{
        nut04::MintQuoteCustomRequest, CurrencyUnit, KeysetResponse, MintRequest, PaymentMethod,
        PreMintSecrets, SecretKey,
    },
    Amount,
};
use ext_mint_quote::{
    error_code, quote_lookup_message, MintQuoteRequestOwned, QuoteLookupRequest,
    QuoteLookupResponse, QUOTE_LOOKUP_PATH,
};
use hashpool_e2e::{free_address, init_tracing, open_wallet, TestMint};
use hashpool_sv2_io::str0255;
use mint::IssueError;

fn request(id: u8, key: &[u8], amount: u64) -> MintQuoteRequestOwned {
    MintQuoteRequestOwned {
        request_id: U256Owned::from([id; 32]),
        locking_key: B0255Owned::new(key.to_vec()).unwrap(),
        unit: str0255("hash"),
        amount,
        share_count: 3,
        share_commitment: U256Owned::from([9; 32]),
        epoch: 0,
    }
}

/// A mint whose pool is not there: its HTTP API and issuer work all the same.
async fn lone_mint(dir: &std::path::Path) -> anyhow::Result<TestMint> {
    TestMint::start(dir, free_address()).await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn lookup(
    mint: &TestMint,
    body: &QuoteLookupRequest,
) -> anyhow::Result<(u16, Option<QuoteLookupResponse>)> {
    let r = reqwest::Client::new()
        .post(format!("{}{}", mint.url(), QUOTE_LOOKUP_PATH))
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((
        status,
        if status == 200 {
            Some(r.json().await?)
        } else {
            None
        },
    ))
}

/// A lookup for `secret`'s key, signed for the mint at `mint_url` with a fresh nonce.
fn signed_lookup_for(mint_url: &str, secret: &SecretKey, time: u64) -> QuoteLookupRequest {
    let pubkey = secret.public_key().to_hex();
    let nonce = SecretKey::generate().to_secret_hex()[..32].to_string();
    let signature = secret
        .sign(&quote_lookup_message(&pubkey, time, &nonce, mint_url))
        .unwrap()
        .to_string();
    QuoteLookupRequest {
        pubkey,
        time,
        nonce,
        mint: mint_url.to_string(),
        signature,
        after: None,
    }
}

fn signed_lookup(mint: &TestMint, secret: &SecretKey, time: u64) -> QuoteLookupRequest {
    signed_lookup_for(&mint.url(), secret, time)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_cannot_be_created_over_http_nor_melted() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = lone_mint(dir.path()).await?;
    let http = reqwest::Client::new();
    let key = SecretKey::generate();

    // The mint advertises the ehash method for unit `hash`.
    let info: serde_json::Value = http
        .get(format!("{}/v1/info", mint.url()))
        .send()
        .await?
        .json()
        .await?;
    let methods = info["nuts"]["4"]["methods"].as_array().unwrap();
    assert!(methods
        .iter()
        .any(|m| m["method"] == "ehash" && m["unit"] == "hash"));

    // Unit `hash` has the 64 power-of-two keys, 1 to 2^63.
    let keys: serde_json::Value = http
        .get(format!("{}/v1/keys", mint.url()))
        .send()
        .await?
        .json()
        .await?;
    let keyset = keys["keysets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["unit"] == "hash")
        .expect("a hash keyset");
    let amounts = keyset["keys"].as_object().unwrap();
    assert_eq!(amounts.len(), 64);
    assert!(amounts.contains_key("1") && amounts.contains_key(&(1u64 << 63).to_string()));

    let body =
        serde_json::json!({"amount": 1000, "unit": "hash", "pubkey": key.public_key().to_hex()});
    let r = http
        .post(format!("{}/v1/mint/quote/ehash", mint.url()))
        .json(&body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    let text = r.text().await?;
    assert!(text.contains("cannot be requested"), "{text}");
    for path in ["/v1/melt/quote/ehash", "/v1/melt/ehash"] {
        let r = http
            .post(format!("{}{path}", mint.url()))
            .json(&serde_json::json!({}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
    // Behind the route, the payment processor refuses quotes without the mint's authorization.
    for extra in [
        serde_json::Value::Null,
        serde_json::json!({"authorization": "guess", "request_id": "00", "share_count": 1, "share_commitment": "00"}),
    ] {
        let refused = mint
            .running
            .mint
            .get_mint_quote(MintQuoteRequest::Custom {
                method: PaymentMethod::Custom("ehash".into()),
                request: MintQuoteCustomRequest {
                    amount: Some(Amount::from(1000)),
                    unit: CurrencyUnit::custom("hash"),
                    description: None,
                    pubkey: Some(key.public_key()),
                    extra,
                },
            })
            .await;
        assert!(refused.is_err(), "an unauthorized ehash quote was created");
    }
    // Nothing was created for that key.
    let (status, found) = lookup(&mint, &signed_lookup(&mint, &key, now())).await?;
    assert_eq!(status, 200);
    assert!(found.unwrap().quotes.is_empty());
    mint.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_applied_once_and_bad_requests_are_refused() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = lone_mint(dir.path()).await?;
    let issuer = mint.running.issuer.clone();
    let key = SecretKey::generate();
    let pubkey = key.public_key().to_bytes();

    let first = issuer.issue(&request(1, &pubkey, 1000)).await?;
    assert_eq!(first.amount, 1000);
    // Repeats, also concurrent ones, answer with the same quote.
    let repeats = futures::future::join_all((0..6).map(|_| {
        let issuer = issuer.clone();
        let r = request(1, &pubkey, 1000);
        async move { issuer.issue(&r).await }
    }))
    .await;
    for r in repeats {
        assert_eq!(r?, first);
    }
    // The same id with other content is a conflict, not a second quote.
    let conflict = issuer.issue(&request(1, &pubkey, 999)).await.unwrap_err();
    assert!(matches!(conflict, IssueError::Conflict(_)), "{conflict}");
    let second = issuer.issue(&request(2, &pubkey, 24)).await?;
    assert_ne!(second.quote_id, first.quote_id);

    // Malformed requests: each refused with its code.
    let bad_key = issuer.issue(&request(3, &[5; 33], 5)).await.unwrap_err();
    assert_eq!(bad_key.code(), error_code::INVALID_LOCKING_KEY);
    let short_key = issuer
        .issue(&request(3, &pubkey[..32], 5))
        .await
        .unwrap_err();
    assert_eq!(short_key.code(), error_code::INVALID_LOCKING_KEY);
    let zero = issuer.issue(&request(3, &pubkey, 0)).await.unwrap_err();
    assert_eq!(zero.code(), error_code::AMOUNT_OUT_OF_RANGE);
    let mut sats = request(3, &pubkey, 5);
    sats.unit = str0255("sat");
    assert_eq!(
        issuer.issue(&sats).await.unwrap_err().code(),
        error_code::UNIT_MISMATCH
    );

    // The key's lookup lists exactly the two quotes, paid and not yet minted.
    let (_, found) = lookup(&mint, &signed_lookup(&mint, &key, now())).await?;
    let quotes = found.unwrap().quotes;
    assert_eq!(quotes.len(), 2);
    assert_eq!(quotes[0].quote, first.quote_id);
    assert_eq!(quotes[1].quote, second.quote_id);
    assert_eq!((quotes[0].amount, quotes[0].amount_issued), (1000, 0));
    assert_eq!(quotes[1].amount, 24);
    mint.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_locking_key_mints_or_looks_up_its_quotes() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = lone_mint(dir.path()).await?;
    let owner_dir = tempfile::tempdir()?;
    let owner = open_wallet(owner_dir.path(), &mint.url()).await?;
    let issued = mint
        .running
        .issuer
        .issue(&request(7, &owner.locking_key().to_bytes(), 777))
        .await?;

    // A mint request for the quote, signed by another key, straight to the mint's API.
    let http = reqwest::Client::new();
    let keysets: KeysetResponse = http
        .get(format!("{}/v1/keysets", mint.url()))
        .send()
        .await?
        .json()
        .await?;
    let keyset = keysets
        .keysets
        .iter()
        .find(|k| k.active && k.unit == CurrencyUnit::custom("hash"))
        .expect("an active hash keyset");
    let fees: FeeAndAmounts = (0, mint::ehash_amounts()).into();
    let outputs = PreMintSecrets::random(keyset.id, Amount::from(777), &SplitTarget::None, &fees)?;
    let mut thief = MintRequest {
        quote: issued.quote_id.clone(),
        outputs: outputs.blinded_messages(),
        signature: None,
    };
    thief.sign(&SecretKey::generate())?;
    let r = http
        .post(format!("{}/v1/mint/ehash", mint.url()))
        .json(&thief)
        .send()
        .await?;
    assert!(!r.status().is_success(), "a foreign signature minted");
    let unsigned = MintRequest {
        quote: issued.quote_id.clone(),
        outputs: outputs.blinded_messages(),
        signature: None,
    };
    let r = http
        .post(format!("{}/v1/mint/ehash", mint.url()))
        .json(&unsigned)
        .send()
        .await?;
    assert!(!r.status().is_success(), "an unsigned request minted");

    // Another wallet cannot sign for it either.
    let other_dir = tempfile::tempdir()?;
    let other = open_wallet(other_dir.path(), &mint.url()).await?;
    assert!(other.mint_quote(&issued.quote_id).await.is_err());
    assert_eq!(other.balance().await?, 0);

    // The lookup answers only requests signed by the key, recently.
    let owner_secret_lookup = |time| {
        let mut body = signed_lookup(&mint, &SecretKey::generate(), time);
        body.pubkey = owner.locking_key().to_hex();
        body
    };
    assert_eq!(lookup(&mint, &owner_secret_lookup(now())).await?.0, 401);
    let stale = signed_lookup(&mint, &SecretKey::generate(), now() - 1_000);
    assert_eq!(lookup(&mint, &stale).await?.0, 401);
    let bad_json = http
        .post(format!("{}{}", mint.url(), QUOTE_LOOKUP_PATH))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(bad_json.status().as_u16(), 400);

    // The owner finds and mints it, exactly once.
    assert_eq!(owner.recover().await?, 777);
    assert_eq!(owner.balance().await?, 777);
    assert_eq!(owner.recover().await?, 0);
    assert_eq!(owner.mint_quote(&issued.quote_id).await?, 0);
    assert_eq!(owner.balance().await?, 777);
    mint.stop().await
}

/// The body and status of a refused lookup.
async fn refusal(mint: &TestMint, body: &QuoteLookupRequest) -> anyhow::Result<(u16, String)> {
    let r = reqwest::Client::new()
        .post(format!("{}{}", mint.url(), QUOTE_LOOKUP_PATH))
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await?;
    Ok((status, v["detail"].as_str().unwrap_or_default().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_is_good_once_and_only_at_the_mint_it_is_signed_for() -> anyhow::Result<()> {
    init_tracing();
    let (dir, other_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mint = lone_mint(dir.path()).await?;
    let other_mint = lone_mint(other_dir.path()).await?;
    let key = SecretKey::generate();
    let pubkey = key.public_key().to_bytes();
    for id in 1..=3 {
        mint.running.issuer.issue(&request(id, &pubkey, 10)).await?;
        other_mint
            .running
            .issuer
            .issue(&request(id, &pubkey, 10))
            .await?;
    }

    // Honest: answered, and pages on with fresh signed requests.
    let first = signed_lookup(&mint, &key, now());
    let (status, found) = lookup(&mint, &first).await?;
    assert_eq!(status, 200);
    let quotes = found.unwrap().quotes;
    assert_eq!(quotes.len(), 3);
    let mut page = signed_lookup(&mint, &key, now());
    page.after = Some(quotes[0].cursor.clone());
    let rest = lookup(&mint, &page).await?.1.unwrap().quotes;
    assert_eq!(
        rest.iter().map(|q| &q.quote).collect::<Vec<_>>(),
        quotes[1..].iter().map(|q| &q.quote).collect::<Vec<_>>()
    );

    // The same request again (captured on the way): refused, and said why.
    let (status, why) = refusal(&mint, &first).await?;
    assert_eq!(status, 401);
    assert!(why.contains("replayed"), "{why}");
    // Also with another cursor: `after` is not what makes a request new.
    let mut replay = page.clone();
    replay.after = None;
    assert_eq!(refusal(&mint, &replay).await?.0, 401);

    // Replayed at another mint (by the mint that received it): signed for the first one only.
    let (status, why) = refusal(&other_mint, &signed_lookup(&mint, &key, now())).await?;
    assert_eq!(status, 401);
    assert!(why.contains("signed for mint"), "{why}");
    // Claiming the other mint's URL does not help: the signature covers the URL.
    let mut relabelled = signed_lookup(&mint, &key, now());
    relabelled.mint = other_mint.url();
    let (status, why) = refusal(&other_mint, &relabelled).await?;
    assert_eq!(status, 401);
    assert!(why.contains("signature"), "{why}");
    // The URL's spelling does not matter (`MintUrl` normalisation: case, trailing slash).
    let spelled = signed_lookup_for(&format!("{}/", mint.url().to_uppercase()), &key, now());
    assert_eq!(lookup(&mint, &spelled).await?.0, 200);

    // A lookup without a nonce (an older wallet) is refused as malformed, with the reason.
    let mut no_nonce = signed_lookup(&mint, &key, now());
    no_nonce.nonce.clear();
    let (status, why) = refusal(&mint, &no_nonce).await?;
    assert_eq!(status, 400);
    assert!(why.contains("nonce"), "{why}");
    // A cursor the mint never gave: refused as malformed, not read as "from the start".
    let mut forged = signed_lookup(&mint, &key, now());
    forged.after = Some("../../etc".into());
    let (status, why) = refusal(&mint, &forged).await?;
    assert_eq!(status, 400);
    assert!(why.contains("cursor"), "{why}");

    // Counted.
    let stats = mint.running.issuer.stats();
    assert_eq!(mint::issuer::MintStats::get(&stats.lookups_replayed), 2);

    // A wallet still recovers its quotes through lookups signed for its mint.
    let wallet_dir = tempfile::tempdir()?;
    let wallet = open_wallet(wallet_dir.path(), &mint.url()).await?;
    mint.running
        .issuer
        .issue(&request(9, &wallet.locking_key().to_bytes(), 21))
        .await?;
    assert_eq!(wallet.recover().await?, 21);
    assert_eq!(wallet.recover().await?, 0);
    assert_eq!(wallet.balance().await?, 21);
    other_mint.stop().await?;
    mint.stop().await
}
