//! A standard Cashu wallet mints, holds and spends ehash from our mint: the CDK wallet calls
//! cdk-cli 0.18.3 makes (the NUT-20 key search, the mint that waits on the quote's NUT-17
//! subscription, the NUT-29 batch mint), tokens both ways with a hashpool wallet, and what the
//! mint's websocket refuses from a hostile client. The mint's `/v1/info` tells a wallet the
//! truth (melt disabled, no melt subscriptions, the operator's fields), refusals carry codes of
//! the Cashu error table, and a browser wallet on another origin may call every route.

use std::time::Duration;

use cdk::{
    amount::SplitTarget,
    nuts::{nut17::WsCommand, ContactInfo, CurrencyUnit, MintInfo, MintQuoteState, PaymentMethod},
    wallet::{ReceiveOptions, SendOptions},
    Amount,
};
use ext_mint_quote::QUOTE_LOOKUP_PATH;
use futures::{SinkExt, StreamExt};
use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, mint_run_config, open_wallet, wallet_config,
    TestMint,
};
use hashpool_wallet::{EhashWallet, WalletConfig};
use mint::info::{ContactSettings, MintInfoSettings};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Issues an ehash quote of epoch 0 locked to `key` as the pool's request would.
async fn issue(mint: &TestMint, id: u8, key: &[u8], amount: u64) -> anyhow::Result<String> {
    mint.issue(id, key, amount, 0).await
}

fn ehash() -> Option<PaymentMethod> {
    Some(PaymentMethod::Custom("ehash".into()))
}

/// A miner's hashpool wallet and a standard CDK wallet on the same seed (what a cdk-cli user
/// gets by giving cdk-cli the miner's mnemonic).
async fn miner_and_standard_wallet(
    mint: &TestMint,
    dir: &std::path::Path,
) -> anyhow::Result<(EhashWallet, EhashWallet)> {
    let miner = open_wallet(&dir.join("miner"), &mint.url()).await?;
    let words = std::fs::read_to_string(dir.join("miner").join("mnemonic"))?;
    let standard = EhashWallet::open(&WalletConfig {
        mnemonic: Some(words.trim().to_string()),
        ..wallet_config(&dir.join("standard"), &mint.url())
    })
    .await?;
    Ok((miner, standard))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_wallet_mints_a_paid_ehash_quote_when_its_subscription_reports_it(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let (miner, standard) = miner_and_standard_wallet(&mint, dir.path()).await?;
    // Paid before any wallet subscribes, as every ehash quote is.
    let quote_id = issue(&mint, 1, &miner.locking_key().to_bytes(), 777).await?;

    // `cdk-cli mint URL --quote-id ID --method ehash`: the key search finds the NUT-20 key...
    let w = standard.cdk();
    let quote = w
        .fetch_mint_quote_with_key_search(&quote_id, ehash(), 1000)
        .await?;
    assert!(quote.secret_key.is_some(), "the key search found the key");
    // ...then the proofs come once the subscription reports the quote paid.
    let proofs = {
        let mut stream = w.proof_stream(quote, SplitTarget::default(), None);
        tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("the mint reports a paid ehash quote to a new subscriber")
            .expect("a stream item")?
    };
    assert_eq!(proofs.iter().map(|p| u64::from(p.amount)).sum::<u64>(), 777);
    assert_eq!(standard.balance().await?, 777);
    // The quote is spent: the miner's own wallet gets nothing more from it.
    assert_eq!(miner.recover().await?, 0);

    // Tokens both ways between the standard wallet and a hashpool wallet of another seed (two
    // wallets on one seed derive the same outputs: docs/cashu-wallets.md).
    let friend = open_wallet(&dir.path().join("friend"), &mint.url()).await?;
    let token = w
        .prepare_send(Amount::from(100), SendOptions::default())
        .await?
        .confirm(None)
        .await?
        .to_string();
    assert_eq!(friend.receive(&token).await?, 100);
    let back = friend.send(40).await?;
    assert_eq!(
        u64::from(w.receive(&back, ReceiveOptions::default()).await?),
        40
    );
    assert_eq!(standard.balance().await?, 777 - 100 + 40);
    assert_eq!(friend.balance().await?, 60);
    // A token is spent once.
    assert!(friend.receive(&token).await.is_err());
    mint.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_wallet_batch_mints_the_ehash_quotes_it_knows() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let (miner, standard) = miner_and_standard_wallet(&mint, dir.path()).await?;
    let key = miner.locking_key().to_bytes();
    let a = issue(&mint, 2, &key, 100).await?;
    let b = issue(&mint, 3, &key, 28).await?;
    let w = standard.cdk();

    // `cdk-cli mint-batch` looks the quotes up in the wallet first: quotes it never fetched are
    // unknown to it (docs/cashu-wallets.md: fetch each with `mint --quote-id` first).
    assert!(matches!(
        w.batch_check_mint_quote_status(&[&a, &b]).await,
        Err(cdk::Error::UnknownQuote)
    ));
    for id in [&a, &b] {
        w.fetch_mint_quote_with_key_search(id, ehash(), 1000)
            .await?;
    }
    let states = w.batch_check_mint_quote_status(&[&a, &b]).await?;
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|q| q.state == MintQuoteState::Paid));
    let proofs = w
        .batch_mint(&[&a, &b], SplitTarget::default(), None, None)
        .await?;
    assert_eq!(proofs.iter().map(|p| u64::from(p.amount)).sum::<u64>(), 128);
    assert_eq!(standard.balance().await?, 128);
    // Minted once: a second batch is refused and pays nothing.
    assert!(w
        .batch_mint(&[&a, &b], SplitTarget::default(), None, None)
        .await
        .is_err());
    assert_eq!(standard.balance().await?, 128);
    mint.stop().await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(mint: &TestMint) -> anyhow::Result<Ws> {
    let url = format!("{}/v1/ws", mint.url().replacen("http", "ws", 1));
    Ok(tokio_tungstenite::connect_async(url).await?.0)
}

fn subscribe(id: u64, sub_id: &str, kind: &str, filters: Vec<String>) -> Message {
    let request = json!({
        "jsonrpc": "2.0",
        "method": "subscribe",
        "params": { "kind": kind, "filters": filters, "subId": sub_id },
        "id": id,
    });
    Message::Text(request.to_string().into())
}

/// The next JSON message (pings skipped).
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("websocket closed"))??;
        if let Message::Text(text) = message {
            return Ok(serde_json::from_str(text.as_str())?);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_sends_an_ehash_quotes_state_and_refuses_what_is_out_of_bounds(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let owner = open_wallet(&dir.path().join("owner"), &mint.url()).await?;
    let quote_id = issue(&mint, 4, &owner.locking_key().to_bytes(), 555).await?;
    let mut ws = ws_connect(&mint).await?;

    // Garbage and requests without an id get no answer; the connection stays usable.
    ws.send(Message::Text("{not json".into())).await?;
    ws.send(Message::Text(r#"{"jsonrpc":"2.0","method":"nope"}"#.into()))
        .await?;
    // A request the mint cannot parse is refused by its id.
    ws.send(Message::Text(
        r#"{"jsonrpc":"2.0","method":"subscribe","params":{"kind":1},"id":7}"#.into(),
    ))
    .await?;
    let refused = next_json(&mut ws).await?;
    assert_eq!(refused["id"], 7);
    assert_eq!(refused["error"]["code"], -32602);

    // A subscription to the (already paid) quote: OK, then its current state.
    ws.send(subscribe(
        1,
        "sub-1",
        "ehash_mint_quote",
        vec![quote_id.clone()],
    ))
    .await?;
    let ok = next_json(&mut ws).await?;
    assert_eq!(ok["result"]["status"], "OK", "{ok}");
    let state = next_json(&mut ws).await?;
    assert_eq!(state["params"]["subId"], "sub-1", "{state}");
    let payload = &state["params"]["payload"];
    let quote = if payload.is_array() {
        &payload[1]
    } else {
        payload
    };
    assert_eq!(quote["quote"], quote_id.as_str(), "{state}");
    assert_eq!(quote["amount_paid"], 555, "{state}");
    assert_eq!(quote["amount_issued"], 0, "{state}");

    // The same id again, a non-quote filter, too many filters: refused by id.
    ws.send(subscribe(
        2,
        "sub-1",
        "ehash_mint_quote",
        vec![quote_id.clone()],
    ))
    .await?;
    assert_eq!(next_json(&mut ws).await?["error"]["code"], -32602);
    ws.send(subscribe(
        3,
        "sub-2",
        "ehash_mint_quote",
        vec!["not a quote id!".into()],
    ))
    .await?;
    assert_eq!(next_json(&mut ws).await?["error"]["code"], -32602);
    let many = (0..1001).map(|i| format!("{i}")).collect();
    ws.send(subscribe(4, "sub-3", "ehash_mint_quote", many))
        .await?;
    assert_eq!(next_json(&mut ws).await?["error"]["code"], -32602);

    // Up to 100 subscriptions on one connection, then refused.
    for n in 0..99 {
        ws.send(subscribe(
            100 + n,
            &format!("many-{n}"),
            "proof_state",
            vec![],
        ))
        .await?;
        assert_eq!(next_json(&mut ws).await?["result"]["status"], "OK");
    }
    ws.send(subscribe(300, "one-too-many", "proof_state", vec![]))
        .await?;
    assert_eq!(next_json(&mut ws).await?["error"]["code"], -32602);

    // Unsubscribing frees a place; an unknown subscription cannot be unsubscribed.
    let unsubscribe = |id: u64, sub_id: &str| {
        Message::Text(
            json!({"jsonrpc":"2.0","method":"unsubscribe","params":{"subId":sub_id},"id":id})
                .to_string()
                .into(),
        )
    };
    ws.send(unsubscribe(400, "sub-1")).await?;
    assert_eq!(next_json(&mut ws).await?["result"]["status"], "OK");
    ws.send(unsubscribe(401, "sub-1")).await?;
    assert_eq!(next_json(&mut ws).await?["error"]["code"], -32602);
    ws.send(subscribe(402, "again", "proof_state", vec![]))
        .await?;
    assert_eq!(next_json(&mut ws).await?["result"]["status"], "OK");
    mint.stop().await
}

/// What a wallet decides from `/v1/info` before offering a melt: NUT-05 enabled, with a method
/// for this unit.
fn offers_melt(info: &MintInfo, unit: &CurrencyUnit, method: &PaymentMethod) -> bool {
    !info.nuts.nut05.disabled && info.nuts.nut05.get_settings(unit, method).is_some()
}

/// The subscription kinds NUT-17 lists for `method` and `unit`.
fn websocket_kinds(info: &MintInfo, unit: &CurrencyUnit, method: &PaymentMethod) -> Vec<String> {
    info.nuts
        .nut17
        .supported
        .iter()
        .filter(|s| &s.unit == unit && &s.method == method)
        .flat_map(|s| &s.commands)
        .map(|c| serde_json::to_value(c).expect("a command serializes"))
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_reads_the_mint_info_and_is_not_offered_what_the_mint_refuses(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let settings = MintInfoSettings {
        name: Some("Hashpool e2e mint".into()),
        description: Some("ehash for accepted work".into()),
        description_long: Some("Every quote is paid work; nothing is sold or melted.".into()),
        pubkey: Some("02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2".into()),
        urls: Vec::new(),
        contact: vec![ContactSettings {
            method: "email".into(),
            info: "ops@example.org".into(),
        }],
        motd: Some("testnet4 only".into()),
        icon_url: Some("https://example.org/icon.png".into()),
        tos_url: Some("https://example.org/terms".into()),
    };
    let mut config = mint_run_config(
        &dir.path().join("mint"),
        free_address(),
        loopback_any_port(),
    );
    config.info = settings.clone().checked()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mint = TestMint {
        running: mint::start(config, shutdown.clone()).await?,
        shutdown,
    };
    let wallet = open_wallet(&dir.path().join("wallet"), &mint.url()).await?;
    let w = wallet.cdk();
    let (unit, method) = (
        CurrencyUnit::custom("hash"),
        PaymentMethod::Custom("ehash".into()),
    );

    // The wallet reads /v1/info: minting ehash is offered, melting is not, and the websocket
    // lists ehash mint quotes and proof states but no melt quotes.
    let info = w
        .fetch_mint_info()
        .await?
        .expect("the mint answers /v1/info");
    assert!(info.nuts.nut04.get_settings(&unit, &method).is_some());
    assert!(info.nuts.nut05.disabled, "{:?}", info.nuts.nut05);
    assert!(info.nuts.nut05.methods.is_empty(), "{:?}", info.nuts.nut05);
    assert!(!offers_melt(&info, &unit, &method));
    let kinds = websocket_kinds(&info, &unit, &method);
    assert_eq!(kinds, vec!["ehash_mint_quote", "proof_state"]);
    assert!(info
        .nuts
        .nut17
        .supported
        .iter()
        .flat_map(|s| &s.commands)
        .all(|c| !serde_json::to_string(c)
            .unwrap_or_default()
            .contains("melt")));
    assert!(!info.nuts.nut17.supported.is_empty());
    assert!(info
        .nuts
        .nut17
        .supported
        .iter()
        .flat_map(|s| &s.commands)
        .any(|c| c == &WsCommand::custom_mint_quote("ehash")));

    // The operator's fields, as configured; the public URL is the one listed.
    assert_eq!(info.name, settings.name);
    assert_eq!(info.description, settings.description);
    assert_eq!(info.description_long, settings.description_long);
    assert_eq!(info.pubkey.map(|p| p.to_hex()), settings.pubkey);
    assert_eq!(info.urls, Some(vec![mint.url()]));
    assert_eq!(
        info.contact,
        Some(vec![ContactInfo::new(
            "email".into(),
            "ops@example.org".into()
        )])
    );
    assert_eq!(info.motd, settings.motd);
    assert_eq!(info.icon_url, settings.icon_url);
    assert_eq!(info.tos_url, settings.tos_url);

    // A wallet that melts anyway is refused with the code CDK gives a disabled NUT-05 (20003),
    // which the CDK wallet understands.
    let refused = w.melt_quote(method.clone(), "anything", None, None).await;
    assert!(
        matches!(refused, Err(cdk::Error::MintingDisabled)),
        "{refused:?}"
    );
    let http = reqwest::Client::new();
    for path in [
        "/v1/melt/quote/ehash",
        "/v1/melt/ehash",
        "/v1/mint/quote/ehash",
    ] {
        let r = http
            .post(format!("{}{path}", mint.url()))
            .json(&json!({"unit": "hash", "request": "x", "amount": 1}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 403, "{path}");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "*",
            "{path}: a browser wallet reads the refusal"
        );
        let body: Value = r.json().await?;
        assert_eq!(body["code"], 20003, "{path}: {body}");
    }

    // A melt-quote subscription is refused on the websocket; a mint-quote one is served.
    let mut ws = ws_connect(&mint).await?;
    ws.send(subscribe(1, "melt", "ehash_melt_quote", vec![]))
        .await?;
    let refused = next_json(&mut ws).await?;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    ws.send(subscribe(2, "mint", "ehash_mint_quote", vec![]))
        .await?;
    assert_eq!(next_json(&mut ws).await?["result"]["status"], "OK");
    mint.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_wallet_on_another_origin_may_call_the_quote_lookup() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mint = TestMint::start(&dir.path().join("mint"), free_address()).await?;
    let http = reqwest::Client::new();
    let lookup = format!("{}{}", mint.url(), QUOTE_LOOKUP_PATH);

    // The browser's preflight for a JSON POST from another origin.
    let preflight = http
        .request(reqwest::Method::OPTIONS, &lookup)
        .header("Origin", "https://wallet.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await?;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str()?;
    assert!(methods.contains("POST"), "{methods}");
    assert_eq!(headers["access-control-allow-headers"], "*");

    // The request itself: its answer (here a refusal, 20008: not signed) is readable too.
    let r = http
        .post(&lookup)
        .header("Origin", "https://wallet.example.org")
        .json(&json!({"pubkey": "nope"}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let body: Value = r.json().await?;
    assert_eq!(body["code"], 20008, "{body}");

    // As on cdk-axum's own routes.
    let info = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/info", mint.url()))
        .header("Origin", "https://wallet.example.org")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await?;
    assert!(info.status().is_success());
    assert_eq!(info.headers()["access-control-allow-origin"], "*");
    mint.stop().await
}
