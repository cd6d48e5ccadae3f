//! Hostile and broken peers: each is answered or dropped with a logged reason, and the pool
//! keeps serving the honest miner beside them.

use std::time::Duration;

use common_messages_sv2::Protocol;
use hashpool_e2e::{
    init_tracing, miner_options, public_key,
    raw_client::{setup_connection, RawClient},
    wait_until, PoolOptions, Stack,
};
use mining_sv2::{OpenStandardMiningChannelOwned, SubmitSharesStandard};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CLOSE: Duration = Duration::from_secs(15);

fn share(channel_id: u32, job_id: u32) -> MiningOwned {
    MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
        channel_id,
        sequence_number: 1,
        job_id,
        nonce: 7,
        ntime: 1,
        version: 0x2000_0000,
    })
}

fn share_error_code(m: &AnyMessageOwned) -> Option<String> {
    match m {
        AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
            Some(hashpool_sv2_io::text(&e.error_code))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_and_honest_miners_keep_mining() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    let addr = pool.address();
    let stop = CancellationToken::new();
    let honest = mining_device::start(miner_options(addr, "honest", 20_000.0, true), stop.clone());
    wait_until(
        Duration::from_secs(60),
        "the honest miner's first share",
        || async { pool.shares_accepted().await >= 1 },
    )
    .await?;

    // Garbage bytes instead of a Noise handshake: the pool closes the socket.
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = tcp.write_all(&garbage).await;
    let mut buf = vec![0u8; 1024];
    let closed = tokio::time::timeout(CLOSE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "garbage bytes: connection not closed");

    // The wrong pool key: the client refuses the pool's certificate.
    let other_key = "9bQHWXsQ2J9TRFTaxRh3KjoxdyLRfWVEy25YHtKF8y8gotLoCZZ"
        .parse()
        .expect("a valid key");
    assert!(RawClient::connect(addr, Some(other_key)).await.is_err());

    // A message before SetupConnection: dropped.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    c.send(MiningOwned::OpenStandardMiningChannel(
        OpenStandardMiningChannelOwned {
            request_id: 1,
            user_identity: binary_sv2::Str0255Owned::new(b"x".to_vec()).unwrap(),
            nominal_hash_rate: 1.0,
            max_target: binary_sv2::U256Owned::from([0xff; 32]),
        },
    ))
    .await?;
    assert!(
        c.closed_within(CLOSE).await,
        "message before setup: not dropped"
    );

    // SetupConnection for another protocol: answered with an error, then closed.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::TemplateDistributionProtocol,
    )))
    .await?;
    match c.recv(CLOSE).await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
            assert_eq!(hashpool_sv2_io::text(&e.error_code), "unsupported-protocol")
        }
        other => panic!("expected SetupConnection.Error, got {other}"),
    }
    assert!(c.closed_within(CLOSE).await);

    // An unknown message type: dropped.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    c.open_standard_channel("unknown-msg").await?;
    c.send_raw(0, 0x7e, &[1, 2, 3]).await?;
    assert!(c.closed_within(CLOSE).await, "unknown message: not dropped");

    // A truncated message (SubmitSharesStandard needs 24 bytes): dropped.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    c.open_standard_channel("truncated").await?;
    c.send_raw(
        0,
        mining_sv2::MESSAGE_TYPE_SUBMIT_SHARES_STANDARD,
        &[1, 0, 0, 0, 9],
    )
    .await?;
    assert!(
        c.closed_within(CLOSE).await,
        "truncated message: not dropped"
    );

    // An oversized frame: dropped before decoding.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    c.open_standard_channel("oversized").await?;
    c.send_raw(
        0,
        mining_sv2::MESSAGE_TYPE_SUBMIT_SHARES_STANDARD,
        &vec![0u8; 200_000],
    )
    .await?;
    assert!(c.closed_within(CLOSE).await, "oversized frame: not dropped");

    // Shares for an unknown job and an unknown channel: precise errors, connection kept.
    let mut c = RawClient::connect(addr, Some(public_key())).await?;
    let channel = c.open_standard_channel("confused").await?;
    c.send(share(channel, 987_654)).await?;
    assert_eq!(
        c.recv_until(CLOSE, share_error_code).await?,
        "invalid-job-id"
    );
    c.send(share(channel + 10_000, 1)).await?;
    assert_eq!(
        c.recv_until(CLOSE, share_error_code).await?,
        "invalid-channel-id"
    );
    c.send(share(channel, 987_655)).await?;
    assert_eq!(
        c.recv_until(CLOSE, share_error_code).await?,
        "invalid-job-id"
    );

    // The honest miner kept mining through all of it, and newcomers are still served.
    let before = pool.shares_accepted().await;
    wait_until(Duration::from_secs(60), "more honest shares", || async {
        pool.shares_accepted().await > before
    })
    .await?;
    let mut newcomer = RawClient::connect(addr, Some(public_key())).await?;
    newcomer.open_standard_channel("newcomer").await?;

    stop.cancel();
    honest.task.await?;
    stack.stop().await?;
    Ok(())
}
