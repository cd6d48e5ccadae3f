//! Where a channel's locking key comes from, and what the pool refuses: the mint-quote
//! extension negotiated or not, TLV keys, key-shaped identities, a default key, bad keys, and
//! mint-quote messages sent by a miner.

use std::time::Duration;

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use ext_mint_quote::{LockingKey, MintQuoteMessage, MintQuoteRequestOwned, EXTENSION_TYPE};
use extensions_sv2::RequestExtensionsOwned;
use hashpool_e2e::{
    init_tracing, miner_options, public_key,
    raw_client::{setup_connection, RawClient},
    test_key, wait_until, PoolOptions, Running, Stack, TestPool,
};
use hashpool_sv2_io::{encode_raw, encode_with_tlvs, str0255};
use mining_sv2::OpenStandardMiningChannelOwned;
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned, MiningOwned,
    Tlv,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

fn open(user: &str) -> MiningOwned {
    MiningOwned::OpenStandardMiningChannel(OpenStandardMiningChannelOwned {
        request_id: 9,
        user_identity: str0255(user),
        nominal_hash_rate: 1_000.0,
        max_target: U256Owned::from([0xff; 32]),
    })
}

/// A connected client after SetupConnection, optionally after asking for the extension;
/// returns whether the pool agreed.
async fn client(pool: &TestPool, negotiate: bool) -> anyhow::Result<(RawClient, bool)> {
    let mut c = RawClient::connect(pool.address(), Some(public_key())).await?;
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::MiningProtocol,
    )))
    .await?;
    c.recv(WAIT).await?;
    if !negotiate {
        return Ok((c, false));
    }
    c.send(ExtensionsOwned::ExtensionsNegotiation(
        ExtensionsNegotiationOwned::RequestExtensions(RequestExtensionsOwned {
            request_id: 3,
            requested_extensions: vec![EXTENSION_TYPE, 0x7777].try_into().unwrap(),
        }),
    ))
    .await?;
    let agreed = match c.recv(WAIT).await? {
        AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
            ExtensionsNegotiationOwned::RequestExtensionsSuccess(s),
        )) => {
            assert_eq!(s.request_id, 3);
            assert_eq!(s.supported_extensions.into_inner(), vec![EXTENSION_TYPE]);
            true
        }
        AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
            ExtensionsNegotiationOwned::RequestExtensionsError(e),
        )) => {
            assert_eq!(
                e.unsupported_extensions.into_inner(),
                vec![EXTENSION_TYPE, 0x7777]
            );
            false
        }
        other => panic!("expected an extension negotiation answer, got {other}"),
    };
    Ok((c, agreed))
}

/// Sends `frame`-producing open and returns Ok(channel id) or Err(error code).
async fn open_result(c: &mut RawClient) -> anyhow::Result<Result<u32, String>> {
    c.recv_until(WAIT, |m| match m {
        AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s)) => {
            Some(Ok(s.channel_id))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(e)) => {
            Some(Err(hashpool_sv2_io::text(&e.error_code)))
        }
        _ => None,
    })
    .await
}

fn channel_key(pool: &TestPool, channel_id: u32) -> Option<LockingKey> {
    pool.running.registry.connections().iter().find_map(|set| {
        let set = set.lock().unwrap();
        set.channels().get(&channel_id).map(|e| e.locking_key)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_get_the_right_locking_key_or_a_clear_refusal() -> anyhow::Result<()> {
    init_tracing();
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        ..
    } = Stack::new().start().await?;
    let tlv = |key: &LockingKey| ext_mint_quote::locking_key_tlv(key);

    // Negotiated + TLV: the TLV's key, whatever the identity says.
    let (mut c, agreed) = client(&pool, true).await?;
    assert!(agreed);
    c.send_frame(encode_with_tlvs(open("alice"), &[tlv(&test_key("alice"))])?)
        .await?;
    let id = open_result(&mut c).await?.expect("opened");
    assert_eq!(channel_key(&pool, id), Some(test_key("alice")));

    // Negotiated + a TLV that is not a key: refused with the extension's code.
    let (mut c, _) = client(&pool, true).await?;
    let junk = Tlv::new(
        EXTENSION_TYPE,
        ext_mint_quote::TLV_FIELD_LOCKING_KEY,
        vec![7; 33],
    );
    c.send_frame(encode_with_tlvs(open("mallory"), &[junk])?)
        .await?;
    assert_eq!(
        open_result(&mut c).await?.unwrap_err(),
        "invalid-locking-key"
    );

    // Not negotiated: the TLV is ignored, and "bob" is not a key and there is no default key.
    let (mut c, _) = client(&pool, false).await?;
    c.send_frame(encode_with_tlvs(open("bob"), &[tlv(&test_key("bob"))])?)
        .await?;
    assert_eq!(
        open_result(&mut c).await?.unwrap_err(),
        "invalid-user-identity"
    );

    // A key-shaped identity (`<key>.<worker>`) works without the extension.
    let (mut c, _) = client(&pool, false).await?;
    c.send(open(&format!("{}.rig1", test_key("carol")))).await?;
    let id = open_result(&mut c).await?.expect("opened");
    assert_eq!(channel_key(&pool, id), Some(test_key("carol")));

    // Mint-quote requests belong to the mint link: a miner sending one is dropped.
    let (mut c, _) = client(&pool, true).await?;
    let request = MintQuoteMessage::Request(MintQuoteRequestOwned {
        request_id: U256Owned::from([1; 32]),
        locking_key: binary_sv2::B0255Owned::new(test_key("x").as_bytes().to_vec()).unwrap(),
        unit: str0255("hash"),
        amount: 1_000_000,
        share_count: 1,
        share_commitment: U256Owned::from([0; 32]),
        epoch: 0,
    });
    c.send_frame(encode_raw(
        EXTENSION_TYPE,
        false,
        request.message_type(),
        &request.encode(),
    )?)
    .await?;
    assert!(
        c.closed_within(WAIT).await,
        "a miner's quote request was not refused"
    );

    // A miner with a key negotiates and mines on a channel locked to its key.
    let stop = CancellationToken::new();
    let miner = mining_device::start(
        miner_options(pool.address(), "dave", 20_000.0, true),
        stop.clone(),
    );
    wait_until(WAIT, "dave's channel", || async {
        miner
            .stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    })
    .await?;
    assert!(miner
        .stats
        .mint_quote_negotiated
        .load(std::sync::atomic::Ordering::Relaxed));
    let keys: Vec<_> = pool
        .running
        .registry
        .connections()
        .iter()
        .flat_map(|s| {
            let s = s.lock().unwrap();
            s.channels()
                .values()
                .map(|e| e.locking_key)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(keys.contains(&test_key("dave")));

    stop.cancel();
    miner.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extension_channels_fall_back_to_the_default_key() -> anyhow::Result<()> {
    init_tracing();
    let default = test_key("operator");
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        ..
    } = Stack::new()
        .with_pool(PoolOptions {
            mint_quote_extension: false,
            default_locking_key: Some(default),
            ..Default::default()
        })
        .start()
        .await?;
    // The extension is refused, so the TLV is not read: the default key applies.
    let (mut c, agreed) = client(&pool, true).await?;
    assert!(!agreed);
    c.send_frame(encode_with_tlvs(
        open("erin"),
        &[ext_mint_quote::locking_key_tlv(&test_key("erin"))],
    )?)
    .await?;
    let id = open_result(&mut c).await?.expect("opened");
    assert_eq!(channel_key(&pool, id), Some(default));

    // A standard miner with a key still mines when the pool does not offer the extension.
    let stop = CancellationToken::new();
    let miner = mining_device::start(
        miner_options(pool.address(), "frank", 20_000.0, true),
        stop.clone(),
    );
    wait_until(Duration::from_secs(60), "frank's shares", || async {
        pool.shares_accepted().await >= 1
    })
    .await?;
    assert!(!miner
        .stats
        .mint_quote_negotiated
        .load(std::sync::atomic::Ordering::Relaxed));

    stop.cancel();
    miner.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
