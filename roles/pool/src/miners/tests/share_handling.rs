//! SubmitSharesStandard through the pool's share handler: what each accepted share is
//! credited with, and the code each refused share gets.

use hashpool_ehash::Work;

use super::*;
use crate::{
    accepted_share::AcceptedShare, jobs::Sequenced, miners::targets::target_from_difficulty,
};

fn error_code(out: &[MiningOwned]) -> Option<String> {
    match out {
        [MiningOwned::SubmitSharesError(e)] => Some(hashpool_sv2_io::text(&e.error_code)),
        _ => None,
    }
}

#[tokio::test]
async fn a_share_meeting_its_job_target_is_credited_exactly_that_targets_work() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    // A zero hashrate: the channel mines at the floor.
    let work = pool.standard_channel(0.0, all_ff());
    let job_target = target_from_difficulty(MIN_DIFFICULTY);
    let network = network_target(TESTNET_NBITS);
    let (nonce, hash) = work.find(0, |h| job_target.is_met_by(h) && !network.is_met_by(h));
    let mut accepted = Vec::new();
    let out = pool.submit(work.share(1, nonce), &mut accepted);
    // Not a full batch yet (share_batch_size 10) and not a block: nothing to send now.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(accepted.len(), 1);
    let share: AcceptedShare = accepted[0];
    assert_eq!(share.work, Work::from_target(&job_target));
    assert_eq!(share.locking_key, key(1));
    assert_eq!(share.channel_id, work.channel_id);
    assert_eq!(share.share_hash, hash.to_byte_array());
    assert!(!share.block_found);
    // The miner page's figures for the channel: this share's difficulty is its best so far.
    let entry = pool.set.entry_mut(work.channel_id).expect("the channel");
    assert!(entry.last_share_ms.is_some());
    let difficulty = bitcoin::Target::from_le_bytes(hash.to_byte_array()).difficulty_float();
    assert_eq!(entry.best_difficulty, difficulty);
    let stats = pool.ctx.stats.snapshot();
    assert_eq!(stats.shares_accepted, 1);
    assert_eq!(stats.work_accepted_hashes, share.work.hashes());
    assert_eq!(stats.shares_without_job_target, 0);
    assert!(pool.solutions.try_recv().is_err(), "not a block");

    // The acknowledgement deadline acknowledges it, counting it once.
    let acks = pool.set.acknowledge_pending();
    let [MiningOwned::SubmitSharesSuccess(ack)] = acks.as_slice() else {
        panic!("{acks:?}");
    };
    assert_eq!(
        (ack.new_submits_accepted_count, ack.last_sequence_number),
        (1, 1)
    );
    assert!(pool.set.acknowledge_pending().is_empty());

    // Made durable, the ledger holds exactly that work for the channel's key.
    let receipt = pool.ctx.shares.make_durable(share).await;
    assert_eq!(receipt.await.unwrap(), Ok(true));
    let accrual = pool.ctx.shares.ledger().accrual(&key(1)).await.unwrap();
    let accrual = accrual.expect("the key accrued");
    assert_eq!((accrual.total, accrual.shares), (share.work, 1));
}

#[tokio::test]
async fn refused_shares_get_their_codes_and_are_not_credited() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let work = pool.standard_channel(0.0, all_ff());
    let job_target = target_from_difficulty(MIN_DIFFICULTY);
    let mut accepted = Vec::new();

    // A hash above the job target.
    let (weak, _) = work.find(0, |h| !job_target.is_met_by(h));
    let out = pool.submit(work.share(1, weak), &mut accepted);
    assert_eq!(error_code(&out).as_deref(), Some("difficulty-too-low"));

    // A good share, then the same share again.
    let (good, _) = work.find(0, |h| job_target.is_met_by(h));
    assert!(pool.submit(work.share(2, good), &mut accepted).is_empty());
    let out = pool.submit(work.share(3, good), &mut accepted);
    assert_eq!(error_code(&out).as_deref(), Some("duplicate-share"));

    // A job the channel never had, and a channel the connection does not have.
    let mut unknown = work.share(4, good);
    unknown.job_id += 1000;
    let out = pool.submit(unknown, &mut accepted);
    assert_eq!(error_code(&out).as_deref(), Some("invalid-job-id"));
    let mut elsewhere = work.share(5, good);
    elsewhere.channel_id += 1000;
    let out = pool.submit(elsewhere, &mut accepted);
    assert_eq!(error_code(&out).as_deref(), Some("invalid-channel-id"));

    // Only the good share was credited.
    assert_eq!(accepted.len(), 1);
    let stats = pool.ctx.stats.snapshot();
    assert_eq!((stats.shares_accepted, stats.shares_rejected), (1, 4));
}

/// Applies every job event published since `rx` subscribed to the connection's channels.
fn apply_events(
    pool: &mut Pool,
    rx: &mut tokio::sync::broadcast::Receiver<Sequenced>,
) -> Vec<MiningOwned> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.extend(pool.set.on_job_event(&event));
    }
    out
}

#[tokio::test]
async fn after_a_new_tip_shares_on_the_old_job_are_stale_and_the_new_job_is_credited() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let old = pool.standard_channel(0.0, all_ff());
    let job_target = target_from_difficulty(MIN_DIFFICULTY);
    let mut rx = pool.ctx.jobs.subscribe();
    pool.ctx.jobs.on_new_template(template(2, true));
    pool.ctx
        .jobs
        .on_set_new_prev_hash(prev_hash(2, [8; 32], TESTNET_NBITS));
    let out = apply_events(&mut pool, &mut rx);
    let new = StandardWork::from_messages(&out);
    assert_eq!(new.prev_hash, [8; 32]);
    assert_ne!(new.job_id, old.job_id);

    let mut accepted = Vec::new();
    let (nonce, _) = old.find(0, |h| job_target.is_met_by(h));
    let out = pool.submit(old.share(1, nonce), &mut accepted);
    assert_eq!(error_code(&out).as_deref(), Some("stale-share"));
    assert!(accepted.is_empty());

    let (nonce, _) = new.find(0, |h| job_target.is_met_by(h));
    assert!(pool.submit(new.share(2, nonce), &mut accepted).is_empty());
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].work, Work::from_target(&job_target));
}

#[tokio::test]
async fn a_block_on_a_channel_harder_than_the_network_is_credited_the_network_targets_work() {
    // Regtest: the network target is easier than any channel of a huge claimed hashrate.
    let mut pool = Pool::start(REGTEST_NBITS, |_| {}).await;
    let work = pool.standard_channel(1e20, all_ff());
    let job_target = pool.set.channels()[&work.channel_id].channel().target();
    let network = network_target(REGTEST_NBITS);
    assert!(job_target < network);
    let (nonce, hash) = work.find(0, |h| network.is_met_by(h) && !job_target.is_met_by(h));
    let mut accepted = Vec::new();
    let out = pool.submit(work.share(1, nonce), &mut accepted);
    // Paid what the hash proves (the network target), not the channel's harder target.
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].work, Work::from_target(&network));
    assert!(accepted[0].block_found);
    // A block is acknowledged at once, submitted to the template provider, and reported.
    assert!(
        matches!(out.as_slice(), [MiningOwned::SubmitSharesSuccess(a)] if a.new_submits_accepted_count == 1),
        "{out:?}"
    );
    let solution = pool.solutions.try_recv().expect("a SubmitSolution");
    assert_eq!(solution.template_id, 1);
    assert_eq!(solution.header_nonce, nonce);
    assert_eq!(solution.header_timestamp, work.ntime);
    match pool.events.try_recv().expect("a block event") {
        PoolEvent::BlockFound {
            hash: h,
            channel_id,
            template_id,
            height,
            reward_sats,
            difficulty,
            ..
        } => {
            assert_eq!(h, hash.to_raw_hash().to_string());
            assert_eq!((channel_id, template_id), (work.channel_id, Some(1)));
            // From the block's coinbase: the template's BIP34 height and all it pays.
            assert_eq!((height, reward_sats), (Some(10_000), Some(5_000_000_000)));
            assert_eq!(
                difficulty,
                Some(hashpool_shares::chain::difficulty(REGTEST_NBITS))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.ctx.stats.snapshot().blocks_found, 1);
}

#[tokio::test]
async fn a_block_meeting_its_job_target_is_credited_the_job_targets_work() {
    let mut pool = Pool::start(REGTEST_NBITS, |_| {}).await;
    let work = pool.standard_channel(0.0, all_ff());
    let job_target = target_from_difficulty(MIN_DIFFICULTY);
    let network = network_target(REGTEST_NBITS);
    // On regtest every share at the floor is also a block.
    let (nonce, hash) = work.find(0, |h| job_target.is_met_by(h));
    let mut accepted = Vec::new();
    pool.submit(work.share(1, nonce), &mut accepted);
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].block_found);
    // A block is a share too: it is the channel's best (channels_sv2's own best skips it).
    let best = pool
        .set
        .entry_mut(work.channel_id)
        .expect("the channel")
        .best_difficulty;
    assert_eq!(
        best,
        bitcoin::Target::from_le_bytes(hash.to_byte_array()).difficulty_float()
    );
    assert!(best > 0.0);
    assert_eq!(accepted[0].work, Work::from_target(&job_target));
    assert!(accepted[0].work > Work::from_target(&network));
    assert!(pool.solutions.try_recv().is_ok());
}

#[tokio::test]
async fn a_long_tip_keeps_the_targets_of_the_jobs_still_held_only() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let first = pool.standard_channel(0.0, all_ff());
    let channel_id = first.channel_id;
    let mut rx = pool.ctx.jobs.subscribe();
    // Hours of one tip: a new template every few seconds, each a new job on the channel.
    let mut newest = None;
    for id in 2..40 {
        pool.ctx.jobs.on_new_template(template(id, false));
        let out = apply_events(&mut pool, &mut rx);
        let job = out
            .iter()
            .find_map(|m| match m {
                MiningOwned::NewMiningJob(j) => Some(j.clone()),
                _ => None,
            })
            .expect("a job per template");
        newest = Some(StandardWork {
            channel_id,
            job_id: job.job_id,
            version: job.version,
            merkle_root: job.merkle_root.to_array(),
            prev_hash: first.prev_hash,
            ntime: first.ntime,
            nbits: first.nbits,
        });
    }
    let newest = newest.unwrap();
    let entry = &pool.set.channels()[&channel_id];
    assert!(
        entry.job_targets.len() <= crate::miners::open::PAST_JOBS + 1,
        "{} job targets kept",
        entry.job_targets.len()
    );
    assert!(entry.job_targets.contains_key(&newest.job_id));

    // The newest job is still credited exactly; the first one is long gone from the channel.
    let job_target = target_from_difficulty(MIN_DIFFICULTY);
    let mut accepted = Vec::new();
    let (nonce, _) = newest.find(0, |h| job_target.is_met_by(h));
    assert!(pool
        .submit(newest.share(1, nonce), &mut accepted)
        .is_empty());
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].work, Work::from_target(&job_target));
    let (nonce, _) = first.find(0, |h| job_target.is_met_by(h));
    assert!(error_code(&pool.submit(first.share(2, nonce), &mut accepted)).is_some());
    assert_eq!(accepted.len(), 1);
}
