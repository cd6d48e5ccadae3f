//! SetCustomMiningJob: set only with a job token of the pool's jd-server for exactly that job,
//! on the pool's tip, once per token.

use std::str::FromStr;

use bitcoin::{consensus, Amount, TxOut};
use hashpool_job_declaration::{JobCommitment, JobToken};
use mining_sv2::SetCustomMiningJobOwned;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

use super::*;

/// The jd-server's secret key in these tests.
const JD_SECRET: [u8; 32] = [9; 32];

fn jd_public_key() -> Secp256k1PublicKey {
    Secp256k1SecretKey::from_str(&bitcoin::base58::encode_check(&JD_SECRET))
        .unwrap()
        .into()
}

fn outputs(sats: u64) -> Vec<TxOut> {
    vec![TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
    }]
}

/// An extended channel's id and its whole extranonce length.
fn open(pool: &mut Pool) -> (u32, usize) {
    let out = pool.open_extended(&key(1).to_hex(), 1e6, all_ff(), 8, &[]);
    let MiningOwned::OpenExtendedMiningChannelSuccess(s) = &out[0] else {
        panic!("{out:?}");
    };
    (
        s.channel_id,
        s.extranonce_prefix.as_bytes().len() + s.extranonce_size as usize,
    )
}

/// A job on the pool's tip paying `outputs`, with the jd-server's token for `token_outputs`.
fn job(
    channel_id: u32,
    extranonce_len: usize,
    outputs: &[TxOut],
    token_outputs: &[TxOut],
) -> SetCustomMiningJobOwned {
    let prefix = vec![0x02, 0x10, 0x27];
    let commitment = JobCommitment::new(
        0x2000_0000,
        2,
        &prefix,
        extranonce_len,
        u32::MAX,
        token_outputs,
        0,
        &[],
    );
    let token = JobToken::issue(&JD_SECRET, &commitment, u64::from(now()) + 600).unwrap();
    SetCustomMiningJobOwned {
        channel_id,
        request_id: 3,
        token: B0255Owned::new(token).unwrap(),
        version: 0x2000_0000,
        prev_hash: U256Owned::from(TIP),
        min_ntime: now(),
        nbits: TESTNET_NBITS,
        coinbase_tx_version: 2,
        coinbase_prefix: B0255Owned::new(prefix).unwrap(),
        coinbase_tx_input_n_sequence: u32::MAX,
        coinbase_tx_outputs: B064KOwned::new(consensus::serialize(&outputs.to_vec())).unwrap(),
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255Owned::new(vec![]).unwrap(),
    }
}

fn set_job(pool: &mut Pool, m: SetCustomMiningJobOwned) -> Result<u32, String> {
    let request_id = m.request_id;
    let out = crate::miners::custom::set_custom_job(&pool.ctx, &mut pool.set, m);
    match out.as_slice() {
        [MiningOwned::SetCustomMiningJobSuccess(s)] => {
            assert_eq!(s.request_id, request_id);
            Ok(s.job_id)
        }
        [MiningOwned::SetCustomMiningJobError(e)] => {
            assert_eq!(e.request_id, request_id);
            Err(hashpool_sv2_io::text(&e.error_code))
        }
        other => panic!("{other:?}"),
    }
}

async fn jd_pool() -> Pool {
    Pool::start(TESTNET_NBITS, |c| {
        c.jd_server_public_key = Some(jd_public_key())
    })
    .await
}

#[tokio::test]
async fn a_declared_job_on_the_tip_is_set_and_credited_at_the_channel_target() {
    let mut pool = jd_pool().await;
    let (channel_id, extranonce_len) = open(&mut pool);
    let paid = outputs(5_000_000_000);
    let job_id = set_job(&mut pool, job(channel_id, extranonce_len, &paid, &paid)).unwrap();
    let entry = &pool.set.channels()[&channel_id];
    // Its shares are credited against the channel's target on the pool's tip.
    assert_eq!(
        entry.job_targets.get(&job_id).copied(),
        Some(crate::miners::targets::JobTarget {
            job: entry.channel().target(),
            network: Some(network_target(TESTNET_NBITS)),
        })
    );
}

#[tokio::test]
async fn a_token_reused_is_refused() {
    let mut pool = jd_pool().await;
    let (channel_id, extranonce_len) = open(&mut pool);
    let paid = outputs(5_000_000_000);
    let first = job(channel_id, extranonce_len, &paid, &paid);
    let again = first.clone();
    assert!(set_job(&mut pool, first).is_ok());
    assert_eq!(
        set_job(&mut pool, again),
        Err("invalid-mining-job-token".to_string())
    );
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let mut pool = jd_pool().await;
    let (channel_id, extranonce_len) = open(&mut pool);
    let paid = outputs(5_000_000_000);
    // A made-up token.
    let mut forged = job(channel_id, extranonce_len, &paid, &paid);
    forged.token = B0255Owned::new(vec![1; hashpool_job_declaration::JOB_TOKEN_LEN]).unwrap();
    assert_eq!(
        set_job(&mut pool, forged),
        Err("invalid-mining-job-token".to_string())
    );
    // A real token, for another job (one satoshi less for the pool).
    let skimmed = job(channel_id, extranonce_len, &outputs(4_999_999_999), &paid);
    assert_eq!(
        set_job(&mut pool, skimmed),
        Err("invalid-mining-job-token".to_string())
    );
    // Declared for another extranonce length than the channel's.
    let other_len = job(channel_id, extranonce_len + 1, &paid, &paid);
    assert_eq!(
        set_job(&mut pool, other_len),
        Err("invalid-mining-job-token".to_string())
    );
    // Neither used the real token up: it still sets its job.
    assert!(set_job(&mut pool, job(channel_id, extranonce_len, &paid, &paid)).is_ok());
}

#[tokio::test]
async fn jobs_off_the_pools_tip_or_with_a_bad_coinbase_are_refused_with_their_codes() {
    let mut pool = jd_pool().await;
    let (channel_id, extranonce_len) = open(&mut pool);
    let paid = outputs(5_000_000_000);
    let mut off_tip = job(channel_id, extranonce_len, &paid, &paid);
    off_tip.prev_hash = U256Owned::from([3; 32]);
    assert_eq!(
        set_job(&mut pool, off_tip),
        Err("invalid-job-param-value-prev-hash".to_string())
    );
    let mut other_bits = job(channel_id, extranonce_len, &paid, &paid);
    other_bits.nbits = REGTEST_NBITS;
    assert_eq!(
        set_job(&mut pool, other_bits),
        Err("invalid-job-param-value-prev-hash".to_string())
    );
    let mut ahead = job(channel_id, extranonce_len, &paid, &paid);
    ahead.min_ntime = now() + 3_600;
    assert_eq!(
        set_job(&mut pool, ahead),
        Err("invalid-job-param-value-min-ntime".to_string())
    );
    let mut before_tip = job(channel_id, extranonce_len, &paid, &paid);
    before_tip.min_ntime = now() - 3_600;
    assert_eq!(
        set_job(&mut pool, before_tip),
        Err("invalid-job-param-value-min-ntime".to_string())
    );
    let mut garbage = job(channel_id, extranonce_len, &paid, &paid);
    garbage.coinbase_tx_outputs = B064KOwned::new(vec![0xff, 0x01]).unwrap();
    assert_eq!(
        set_job(&mut pool, garbage),
        Err("invalid-job-param-value-coinbase-tx-outputs".to_string())
    );
    // None of these set a job or used the token.
    assert!(pool.set.channels()[&channel_id].job_targets.len() <= 1);
    assert!(set_job(&mut pool, job(channel_id, extranonce_len, &paid, &paid)).is_ok());
}

#[tokio::test]
async fn custom_jobs_need_a_jd_server_and_an_extended_channel() {
    // No jd-server configured: no token can be valid.
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let (channel_id, extranonce_len) = open(&mut pool);
    let paid = outputs(5_000_000_000);
    assert_eq!(
        set_job(&mut pool, job(channel_id, extranonce_len, &paid, &paid)),
        Err("invalid-mining-job-token".to_string())
    );
    // A standard channel, or none at all.
    let mut pool = jd_pool().await;
    let standard = pool.standard_channel(1e6, all_ff()).channel_id;
    assert_eq!(
        set_job(&mut pool, job(standard, 20, &paid, &paid)),
        Err("invalid-channel-id".to_string())
    );
    assert_eq!(
        set_job(&mut pool, job(standard + 100, 20, &paid, &paid)),
        Err("invalid-channel-id".to_string())
    );
}
