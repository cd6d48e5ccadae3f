//! An extended channel, driven by hand: the client builds the coinbase from the job's prefix,
//! its extranonce and the suffix, computes the merkle root, grinds a share and submits it. In
//! regtest the share is also a block, so the template provider checks the whole construction.

use std::time::Duration;

use binary_sv2::{B032Owned, U256Owned};
use bitcoin::{
    hashes::{sha256d, Hash},
    Target,
};
use common_messages_sv2::Protocol;
use hashpool_e2e::{
    init_tracing, public_key,
    raw_client::{setup_connection, RawClient},
    wait_until, Stack,
};
use mining_sv2::{OpenExtendedMiningChannelOwned, SubmitSharesExtendedOwned};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_channel_share_is_accepted_and_its_block_connects() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new().start().await?;
    let (tp, pool) = (&stack.tp, &stack.pool);
    wait_until(WAIT, "the pool to have work", || async {
        pool.running.jobs.has_work()
    })
    .await?;

    let mut c = RawClient::connect(pool.address(), Some(public_key())).await?;
    c.send(CommonMessagesOwned::SetupConnection(setup_connection(
        Protocol::MiningProtocol,
    )))
    .await?;
    c.recv(WAIT).await?;
    c.send(MiningOwned::OpenExtendedMiningChannel(
        OpenExtendedMiningChannelOwned {
            request_id: 5,
            user_identity: hashpool_sv2_io::str0255(&hashpool_e2e::test_key("ext").to_hex()),
            nominal_hash_rate: 1_000.0,
            max_target: U256Owned::from([0xff; 32]),
            min_extranonce_size: 8,
        },
    ))
    .await?;
    let success = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(s)) => {
                Some(s.clone())
            }
            _ => None,
        })
        .await?;
    assert_eq!(success.request_id, 5);
    assert!(success.extranonce_size >= 8);
    // The pool's server id (7 in the harness) leads every extranonce prefix.
    assert_eq!(
        &success.extranonce_prefix.as_bytes()[..2],
        &7u16.to_be_bytes()
    );
    let job = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::NewExtendedMiningJob(j)) => Some(j.clone()),
            _ => None,
        })
        .await?;
    let tip = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SetNewPrevHash(p)) => Some(p.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(tip.job_id, job.job_id);

    // A share with an extranonce of the wrong size is refused precisely.
    let share = |nonce: u32, extranonce: Vec<u8>, seq: u32| {
        MiningOwned::SubmitSharesExtended(SubmitSharesExtendedOwned {
            channel_id: success.channel_id,
            sequence_number: seq,
            job_id: job.job_id,
            nonce,
            ntime: tip.min_ntime,
            version: job.version,
            extranonce: B032Owned::new(extranonce).unwrap(),
        })
    };
    c.send(share(0, vec![0; 3], 1)).await?;
    let code = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                Some(hashpool_sv2_io::text(&e.error_code))
            }
            _ => None,
        })
        .await?;
    assert_eq!(code, "bad-extranonce-size");

    // Build the coinbase and grind a share that meets the channel target.
    let extranonce = vec![0x5a; success.extranonce_size as usize];
    let mut coinbase = job.coinbase_tx_prefix.as_bytes().to_vec();
    coinbase.extend_from_slice(success.extranonce_prefix.as_bytes());
    coinbase.extend_from_slice(&extranonce);
    coinbase.extend_from_slice(job.coinbase_tx_suffix.as_bytes());
    let mut root = sha256d::Hash::hash(&coinbase).to_byte_array();
    for step in job.merkle_path.iter() {
        let mut buf = [0u8; 64];
        buf[..32].copy_from_slice(&root);
        buf[32..].copy_from_slice(&step.to_array());
        root = sha256d::Hash::hash(&buf).to_byte_array();
    }
    let target = Target::from_le_bytes(success.target.to_array());
    let mut header = [0u8; 80];
    header[0..4].copy_from_slice(&job.version.to_le_bytes());
    header[4..36].copy_from_slice(&tip.prev_hash.to_array());
    header[36..68].copy_from_slice(&root);
    header[68..72].copy_from_slice(&tip.min_ntime.to_le_bytes());
    header[72..76].copy_from_slice(&tip.nbits.to_le_bytes());
    let nonce = (0u32..)
        .find(|n| {
            header[76..80].copy_from_slice(&n.to_le_bytes());
            Target::from_le_bytes(sha256d::Hash::hash(&header).to_byte_array()) <= target
        })
        .expect("a nonce under the target");
    c.send(share(nonce, extranonce, 2)).await?;
    let ack = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s)) => Some(s.clone()),
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                panic!("share refused: {}", hashpool_sv2_io::text(&e.error_code))
            }
            _ => None,
        })
        .await?;
    assert_eq!(ack.last_sequence_number, 2);
    assert_eq!(ack.new_submits_accepted_count, 1);

    // In regtest the share is a block: the template provider rebuilt and connected it.
    wait_until(WAIT, "the block to be connected", || async {
        tp.status().await.map(|s| s.height == 1).unwrap_or(false)
    })
    .await?;

    stack.stop().await?;
    Ok(())
}
