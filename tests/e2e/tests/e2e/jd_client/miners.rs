//! The miners behind the jd-client: their bad requests and shares refused with their codes,
//! and vardiff moving each one's target toward its share rate.

use super::*;

/// A miner's bad requests and shares get their error codes; the connection, and the
/// jd-client, keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miners_bad_requests_and_shares_are_refused_with_their_codes() -> anyhow::Result<()> {
    use binary_sv2::{B032Owned, U256Owned};
    use bitcoin::{
        block::{Header, Version},
        hashes::{sha256d, Hash},
        BlockHash, CompactTarget, Target, TxMerkleNode,
    };
    use common_messages_sv2::Protocol;
    use hashpool_e2e::raw_client::{setup_connection, RawClient};
    use mining_sv2::{OpenExtendedMiningChannelOwned, SubmitSharesExtendedOwned};
    use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

    init_tracing();
    // No blocks; a new mempool transaction every second.
    let stack = Stack::new()
        .nbits(0x1d00_ffff)
        .mempool_tx_every_ms(1_000)
        .with_jd_server()
        .start()
        .await?;
    let (tp, pool) = (&stack.tp, &stack.pool);
    let stop = CancellationToken::new();
    let mut config = jd_client_config(tp, pool, stack.jd_server().address(), 1.0e6);
    config.locking_key = Some(test_key("jdc-bad-input"));
    let jdc = jd_client::start(config, None, stop.clone()).await?;
    let s = jdc.stats.clone();
    wait_until(Duration::from_secs(20), "a declared job", || async {
        s.mining_declared.load(Ordering::Relaxed)
    })
    .await?;
    const WAIT: Duration = Duration::from_secs(10);

    let mut m = RawClient::connect(jdc.listen_address, Some(public_key())).await?;
    m.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::MiningProtocol,
    )))
    .await?;
    m.recv(WAIT).await?;
    let open = |request_id, min_extranonce_size, hashrate| {
        MiningOwned::OpenExtendedMiningChannel(OpenExtendedMiningChannelOwned {
            request_id,
            user_identity: hashpool_sv2_io::str0255("rig"),
            nominal_hash_rate: hashrate,
            max_target: U256Owned::from([0xff; 32]),
            min_extranonce_size,
        })
    };
    let open_reply = |msg: &AnyMessageOwned| match msg {
        AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(s)) => {
            Some(Ok(s.clone()))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(e)) => {
            Some(Err(hashpool_sv2_io::text(&e.error_code)))
        }
        _ => None,
    };
    // More extranonce than the jd-client has; a hashrate that is not a number.
    m.send(open(1, 32, 1.0)).await?;
    assert_eq!(
        m.recv_until(WAIT, open_reply).await?.err().as_deref(),
        Some("min-extranonce-size-too-large")
    );
    m.send(open(2, 4, f32::NAN)).await?;
    assert_eq!(
        m.recv_until(WAIT, open_reply).await?.err().as_deref(),
        Some("invalid-nominal-hashrate")
    );
    // A channel whose target every hash meets (1 H/s).
    m.send(open(3, 4, 1.0)).await?;
    let channel = m
        .recv_until(WAIT, open_reply)
        .await?
        .map_err(|e| anyhow::anyhow!("channel refused: {e}"))?;
    let job = m
        .recv_until(WAIT, |msg| match msg {
            AnyMessageOwned::Mining(MiningOwned::NewExtendedMiningJob(j)) => Some(j.clone()),
            _ => None,
        })
        .await?;
    let tip = m
        .recv_until(WAIT, |msg| match msg {
            AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(p)) => Some(p.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(tip.job_id, job.job_id);
    let rolled = vec![7u8; channel.extranonce_size as usize];
    let header = |nonce: u32| {
        let coinbase = [
            job.coinbase_tx_prefix.as_ref(),
            channel.extranonce_prefix.as_ref(),
            &rolled[..],
            job.coinbase_tx_suffix.as_ref(),
        ]
        .concat();
        let mut root = sha256d::Hash::hash(&coinbase).to_byte_array();
        for node in job.merkle_path.clone().into_inner() {
            root = sha256d::Hash::hash(&[&root[..], &node.to_array()[..]].concat()).to_byte_array();
        }
        Header {
            version: Version::from_consensus(job.version as i32),
            prev_blockhash: BlockHash::from_byte_array(tip.prev_hash.to_array()),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time: tip.min_ntime,
            bits: CompactTarget::from_consensus(tip.nbits),
            nonce,
        }
    };
    let target = Target::from_le_bytes(channel.target.to_array());
    let nonce = (0..u32::MAX)
        .find(|n| target.is_met_by(header(*n).block_hash()))
        .expect("a nonce");
    let share = |seq: u32, channel_id: u32, job_id: u32, nonce: u32, extranonce: Vec<u8>| {
        MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
            channel_id,
            sequence_number: seq,
            job_id,
            nonce,
            ntime: tip.min_ntime,
            version: job.version,
            extranonce: B032Owned::new(extranonce).expect("extranonce"),
        })
    };
    let verdict = |msg: &AnyMessageOwned| match msg {
        AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s)) => {
            Some(Ok(s.last_sequence_number))
        }
        AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => Some(Err((
            e.sequence_number,
            hashpool_sv2_io::text(&e.error_code),
        ))),
        _ => None,
    };
    let id = channel.channel_id;
    let cases = [
        (
            share(1, id + 100, job.job_id, nonce, rolled.clone()),
            "invalid-channel-id",
        ),
        (
            share(2, id, job.job_id + 1_000, nonce, rolled.clone()),
            "invalid-job-id",
        ),
        (
            share(3, id, job.job_id, nonce, vec![7u8; 3]),
            "invalid-extranonce-size",
        ),
    ];
    for (bad, code) in cases {
        m.send(bad).await?;
        let got = m.recv_until(WAIT, verdict).await?;
        assert_eq!(got.map_err(|(_, c)| c), Err(code.to_string()));
    }
    m.send(share(4, id, job.job_id, nonce, rolled.clone()))
        .await?;
    assert_eq!(m.recv_until(WAIT, verdict).await?, Ok(4));
    m.send(share(5, id, job.job_id, nonce, rolled.clone()))
        .await?;
    assert_eq!(
        m.recv_until(WAIT, verdict).await?,
        Err((5, "duplicate-share".to_string()))
    );
    // Garbage on another connection drops that connection only.
    let mut bad = RawClient::connect(jdc.listen_address, Some(public_key())).await?;
    bad.send_raw(0, 0x00, &[0xff; 40]).await?;
    assert!(bad.closed_within(WAIT).await);
    m.send(share(6, id, job.job_id, nonce + 1, rolled.clone()))
        .await?;
    let after = m.recv_until(WAIT, verdict).await?;
    assert!(
        matches!(after, Ok(6) | Err((6, _))),
        "the miner's connection still answers: {after:?}"
    );

    stop.cancel();
    jdc.task.await?;
    stack.stop().await
}

/// Vardiff: a channel that sends no shares gets an easier target, a miner flooding shares a
/// harder one, and its shares keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vardiff_moves_each_miners_target_toward_its_share_rate() -> anyhow::Result<()> {
    use binary_sv2::U256Owned;
    use bitcoin::Target;
    use common_messages_sv2::Protocol;
    use hashpool_e2e::raw_client::{setup_connection, RawClient};
    use mining_sv2::OpenStandardMiningChannelOwned;
    use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

    init_tracing();
    // No blocks; a new mempool transaction every second.
    let stack = Stack::new()
        .nbits(0x1d00_ffff)
        .mempool_tx_every_ms(1_000)
        .with_jd_server()
        .start()
        .await?;
    let (tp, pool) = (&stack.tp, &stack.pool);
    let stop = CancellationToken::new();
    let mut config = jd_client_config(tp, pool, stack.jd_server().address(), 1.0e6);
    config.locking_key = Some(test_key("jdc-vardiff"));
    config.vardiff_interval = Duration::from_secs(1);
    let jdc = jd_client::start(config, None, stop.clone()).await?;
    pool_channel_open(&jdc).await?;

    // Announces 1 TH/s and sends nothing.
    let mut quiet = RawClient::connect(jdc.listen_address, Some(public_key())).await?;
    quiet
        .send(CommonMessagesOwned::SetupConnection(setup_connection(
            Protocol::MiningProtocol,
        )))
        .await?;
    quiet.recv(Duration::from_secs(10)).await?;
    quiet
        .send(MiningOwned::OpenStandardMiningChannel(
            OpenStandardMiningChannelOwned {
                request_id: 1,
                user_identity: hashpool_sv2_io::str0255("quiet"),
                nominal_hash_rate: 1.0e12,
                max_target: U256Owned::from([0xff; 32]),
            },
        ))
        .await?;
    let first = quiet
        .recv_until(Duration::from_secs(10), |m| match m {
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s)) => {
                Some(Target::from_le_bytes(s.target.to_array()))
            }
            _ => None,
        })
        .await?;
    // Announces 1 kH/s and hashes at 50 kH/s: a flood of shares.
    let mut options = miner_options(jdc.listen_address, "flood", 1_000.0, false);
    options.locking_key = None;
    options.hash_pace = Some(50_000.0);
    let flood = mining_device::start(options, stop.clone());

    // Vardiff waits more than 15 s after a channel opens.
    let eased = quiet
        .recv_until(Duration::from_secs(60), |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SetTarget(t)) => {
                Some(Target::from_le_bytes(t.maximum_target.to_array()))
            }
            _ => None,
        })
        .await?;
    assert!(eased > first, "no shares: an easier target");
    wait_until(
        Duration::from_secs(60),
        "a harder target for the flood",
        || async { flood.stats.set_targets.load(Ordering::Relaxed) >= 1 },
    )
    .await?;
    let acknowledged = flood.stats.shares_acknowledged.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(60),
        "shares at the new target",
        || async { flood.stats.shares_acknowledged.load(Ordering::Relaxed) > acknowledged },
    )
    .await?;
    assert_eq!(flood.stats.connections.load(Ordering::Relaxed), 1);
    // Shares found just before a SetTarget reached the miner still count, and the miner does
    // not hash the same job's nonces again for its new target: nothing was refused.
    assert_eq!(flood.stats.shares_rejected.load(Ordering::Relaxed), 0);

    stop.cancel();
    jdc.task.await?;
    stack.stop().await
}
