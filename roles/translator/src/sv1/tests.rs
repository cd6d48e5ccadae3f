//! The SV1 side's tests: work and difficulty sent to a miner, its shares judged.

use std::sync::Arc;

use bitcoin::Target;
use channels_sv2::vardiff::classic::VardiffState;
use hashpool_shares::ShareChecker;
use hashpool_sv1::{difficulty_to_target, error_code, ClientRequest, Submit};
use mining_sv2::ERROR_CODE_SUBMIT_SHARES_STALE_SHARE;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::{
    miner::{on_work, sv1_job_id, Miner},
    requests::on_request,
    shares::{check_share, ChannelNow, Checked, Refusal},
    vardiff::{clamp_suggestion, suggest_difficulty, DIFFICULTY_1_HASHES, MAX_MINER_HASHRATE},
    Shared, RECENT_JOBS,
};
use crate::{
    stats::TranslatorStats,
    sv2::{ActiveJob, Command, NotAccepted, UpstreamWork},
    Sv1Limits, VardiffSettings,
};

fn miner(aggregated: bool) -> Miner {
    Miner {
        index: 7,
        source: std::net::IpAddr::from([127, 0, 0, 1]),
        subscribed: true,
        authorized: Some("w".into()),
        version_rolling: false,
        opening: None,
        aggregated,
        extranonce_prefix: Vec::new(),
        extranonce2_size: 0,
        fixed_extranonce: false,
        pad: 0,
        key: None,
        target: None,
        shares: ShareChecker::new(
            Target::from_le_bytes([0xff; 32]),
            RECENT_JOBS,
            Sv1Limits::DEFAULT_MAX_SHARES_PER_JOB,
        ),
        hashrate: 1.0,
        vardiff: VardiffState::new().unwrap(),
        vardiff_target: [0xff; 32],
        own_channel: None,
        extranonce_subscribed: false,
        must_reconnect: false,
        counters: None,
    }
}

fn work(opening: u64, prefix: &[u8], target: [u8; 32]) -> UpstreamWork {
    UpstreamWork {
        opening,
        channel_id: 1,
        extranonce_prefix: prefix.to_vec(),
        extranonce_size: 8,
        target,
        aggregated: true,
        job: Some(ActiveJob {
            job_id: 5,
            version: 0x2000_0000,
            coinbase_prefix: vec![1],
            coinbase_suffix: vec![2],
            merkle_path: Vec::new(),
            prev_hash: [0; 32],
            nbits: 0x207f_ffff,
            ntime: 1,
            clean: false,
            channel_target: target,
        }),
    }
}

#[test]
fn a_moved_extranonce_is_announced_or_the_miner_is_reconnected() {
    let mut m = miner(true);
    // As at subscribe.
    m.take_extranonce(&work(1, &[0xaa], [0x0f; 32]));
    let first = on_work(&mut m, &work(1, &[0xaa], [0x0f; 32]));
    assert!(first.iter().any(|l| l.contains("mining.notify")));
    assert!(!m.must_reconnect);
    // Same extranonce on a new opening: the job is new and clean, nothing else.
    let again = on_work(&mut m, &work(2, &[0xaa], [0x0f; 32]));
    assert!(again
        .iter()
        .any(|l| l.contains("mining.notify") && l.contains("true]")));
    assert!(!again.iter().any(|l| l.contains("set_extranonce")));
    assert!(!m.must_reconnect);
    // A new prefix: a miner that did not subscribe to extranonce changes must reconnect.
    assert!(on_work(&mut m, &work(3, &[0xbb], [0x0f; 32])).is_empty());
    assert!(m.must_reconnect);
    // One that did gets mining.set_extranonce with prefix + its index.
    let mut m = miner(true);
    m.extranonce_subscribed = true;
    m.take_extranonce(&work(1, &[0xaa], [0x0f; 32]));
    on_work(&mut m, &work(1, &[0xaa], [0x0f; 32]));
    let moved = on_work(&mut m, &work(2, &[0xbb], [0x0f; 32]));
    assert!(moved[0].contains("mining.set_extranonce"), "{moved:?}");
    assert!(moved[0].contains("bb00000007"), "{moved:?}");
    assert!(!m.must_reconnect);
}

#[test]
fn an_aggregated_miner_is_never_given_a_target_harder_than_the_channels() {
    let mut m = miner(true);
    // Vardiff wants a harder target than the channel's: the channel's is used.
    m.vardiff_target = [0x01; 32];
    let w = work(1, &[0xaa], [0x0f; 32]);
    assert_eq!(m.target_for(&w), [0x0f; 32]);
    // An easier one is the miner's own.
    m.vardiff_target = [0x3f; 32];
    assert_eq!(m.target_for(&w), [0x3f; 32]);
    // Channel-per-miner: always the channel's.
    let mut own = work(1, &[0xaa], [0x0f; 32]);
    own.aggregated = false;
    assert_eq!(m.target_for(&own), [0x0f; 32]);
}

fn submit(job_id: &str, nonce: u32) -> Submit {
    Submit {
        worker: "w".into(),
        job_id: job_id.into(),
        extranonce2: vec![0; 4],
        ntime: 1,
        nonce,
        version_bits: None,
    }
}

#[test]
fn shares_are_judged_by_their_jobs_channel_target_and_the_current_opening() {
    let mut m = miner(true);
    let easiest = [0xff; 32];
    let w = work(1, &[0xaa], easiest);
    m.take_extranonce(&w);
    on_work(&mut m, &w);
    let job = sv1_job_id(1, 5);
    let now = Some(ChannelNow { opening: 1 });
    // Every hash meets the job's (easiest) channel target: the share goes to the pool.
    assert!(matches!(
        check_share(&mut m, &submit(&job, 1), now),
        Ok(Checked::ToPool(..))
    ));
    // The pool made the channel harder (SetTarget): it still judges this job's shares by
    // the job's own target, so they still go to the pool.
    on_work(&mut m, &work(1, &[0xaa], [0; 32]));
    assert!(matches!(
        check_share(&mut m, &submit(&job, 2), now),
        Ok(Checked::ToPool(..))
    ));
    // A job that became active after it carries the harder target: shares under it are
    // answered here.
    let mut harder = work(1, &[0xaa], [0; 32]);
    if let Some(j) = harder.job.as_mut() {
        j.job_id = 6;
        j.channel_target = [0; 32];
    }
    on_work(&mut m, &harder);
    assert!(matches!(
        check_share(&mut m, &submit(&sv1_job_id(1, 6), 3), now),
        Ok(Checked::BelowChannelTarget { .. })
    ));
    // The channel reopened and the miner has not had its new work yet: its jobs are stale.
    let reopened = Some(ChannelNow { opening: 2 });
    assert!(matches!(
        check_share(&mut m, &submit(&job, 3), reopened),
        Err(Refusal::Stale)
    ));
    // No pool: refused, whatever the share.
    assert!(matches!(
        check_share(&mut m, &submit(&job, 4), None),
        Err(Refusal::NoPool)
    ));
}

#[test]
fn shares_hashed_before_a_retarget_of_a_clean_job_still_count() {
    let mut m = miner(false);
    let mut first = work(1, &[0xaa], [0xff; 32]);
    first.aggregated = false;
    if let Some(j) = first.job.as_mut() {
        j.clean = true;
    }
    m.take_extranonce(&first);
    on_work(&mut m, &first);
    // Vardiff made the channel far harder; the same (clean) job is re-sent with it.
    let mut harder = first.clone();
    harder.target = [0; 32];
    harder.target[0] = 1;
    let resent = on_work(&mut m, &harder);
    assert!(resent[0].contains("mining.set_difficulty"), "{resent:?}");
    assert!(
        resent[1].contains("mining.notify") && resent[1].trim_end().ends_with("false]}"),
        "a re-sent job must not make the miner drop its work: {resent:?}"
    );
    // A share the miner found at the old difficulty, answered after the retarget.
    let now = Some(ChannelNow { opening: 1 });
    let share = Submit {
        extranonce2: vec![0; m.extranonce2_size],
        ..submit(&sv1_job_id(1, 5), 1)
    };
    let checked = check_share(&mut m, &share, now);
    assert!(
        matches!(checked, Ok(Checked::ToPool(..))),
        "{:?}",
        checked.err()
    );
}

/// A miner at the test defaults with its floor at `floor` (difficulty) on an aggregated
/// channel whose target is the easiest there is, subscribed and sent job 5.
fn floored_miner(floor: f64) -> (Miner, UpstreamWork, Vec<String>) {
    let mut m = miner(true);
    m.shares
        .set_floor(Target::from_le_bytes(difficulty_to_target(floor)));
    let w = work(1, &[0xaa], [0xff; 32]);
    m.take_extranonce(&w);
    let sent = on_work(&mut m, &w);
    (m, w, sent)
}

fn sent_difficulty(lines: &[String]) -> Option<f64> {
    lines.iter().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["method"] == "mining.set_difficulty").then(|| v["params"][0].as_f64())?
    })
}

#[test]
fn suggested_difficulties_are_clamped_to_the_floor_and_the_cap() {
    let (floor, spm) = (1e-6, 10.0);
    let cap = MAX_MINER_HASHRATE as f64 * 60.0 / spm / DIFFICULTY_1_HASHES;
    for nonsense in [1e-30, 0.0, -1.0, f64::NAN, f64::NEG_INFINITY, 5e-7] {
        assert_eq!(clamp_suggestion(nonsense, floor, spm), floor, "{nonsense}");
    }
    for huge in [1e300, f64::INFINITY, cap * 2.0] {
        assert_eq!(clamp_suggestion(huge, floor, spm), cap, "{huge}");
    }
    assert_eq!(clamp_suggestion(0.5, floor, spm), 0.5);
    assert_eq!(clamp_suggestion(floor, floor, spm), floor);
    // A floor above the cap (a strange config) still wins.
    assert_eq!(clamp_suggestion(1.0, cap * 10.0, spm), cap * 10.0);
}

#[tokio::test]
async fn a_suggested_1e_30_gets_the_floor_and_is_counted() {
    let (commands, _rx) = mpsc::channel(4);
    let shared = Shared {
        mode: crate::ChannelMode::Aggregated,
        aggregated: None,
        keys: None,
        commands,
        vardiff: VardiffSettings::default(),
        limits: Sv1Limits::default(),
        stats: Arc::new(TranslatorStats::default()),
    };
    let floor = Sv1Limits::DEFAULT_MIN_SHARE_DIFFICULTY;
    let mut m = miner(true);
    m.shares
        .set_floor(Target::from_le_bytes(difficulty_to_target(floor)));
    let (_tx, work_rx) = watch::channel(None);
    suggest_difficulty(&mut m, 1e-30, &work_rx, &shared).await;
    assert_eq!(m.vardiff_target, m.floor());
    assert_eq!(
        TranslatorStats::get(&shared.stats.suggested_difficulty_clamped),
        1
    );
    // The hashrate it stands for is the floor's, not 1e-30's.
    let spm = shared.vardiff.shares_per_minute as f64;
    let expected = (floor * DIFFICULTY_1_HASHES * spm / 60.0) as f32;
    assert!((m.hashrate / expected - 1.0).abs() < 1e-3, "{}", m.hashrate);
    // On a channel far easier than the floor, the difficulty it is sent is the floor.
    let w = work(1, &[0xaa], [0xff; 32]);
    m.take_extranonce(&w);
    let d = sent_difficulty(&on_work(&mut m, &w)).expect("a difficulty");
    assert!(d >= floor * (1.0 - 1e-9), "sent {d}");
    // A reasonable suggestion is taken as it is, and not counted.
    suggest_difficulty(&mut m, 0.25, &work_rx, &shared).await;
    assert_eq!(m.vardiff_target, difficulty_to_target(0.25));
    assert_eq!(
        TranslatorStats::get(&shared.stats.suggested_difficulty_clamped),
        1
    );
}

#[test]
fn no_miner_is_given_a_target_easier_than_the_floor_nor_credited_under_it() {
    // 2^-24: a share meets it once in ~256 hashes, quick to find both kinds.
    let floor = 1.0 / 16_777_216.0;
    let (mut m, w, sent) = floored_miner(floor);
    // The channel and vardiff would allow every hash; the miner is sent the floor.
    let d = sent_difficulty(&sent).expect("a difficulty");
    assert!((d / floor - 1.0).abs() < 1e-9, "sent {d}");
    assert_eq!(m.target_for(&w), m.floor());
    // Channel-per-miner: a pool target easier than the floor is floored too.
    let mut own = w.clone();
    own.aggregated = false;
    assert_eq!(m.target_for(&own), m.floor());
    // However easy a target vardiff picks, the miner stays at the floor.
    m.vardiff_target = [0xfe; 32];
    assert_eq!(m.target_for(&w), m.floor());
    // A listing that somehow carries an easier target: shares are still held to the floor.
    let job = sv1_job_id(1, 5);
    let listed = m.shares.job(&job).expect("job 5 listed").job.clone();
    m.shares.send(
        job.clone(),
        listed,
        Target::from_le_bytes([0xff; 32]),
        false,
    );
    let now = Some(ChannelNow { opening: 1 });
    let (mut low, mut good) = (0, 0);
    for nonce in 0..20_000 {
        match check_share(&mut m, &submit(&job, nonce), now) {
            Err(Refusal::LowDifficulty) => low += 1,
            Ok(Checked::ToPool(_, work)) => {
                assert!((work / floor - 1.0).abs() < 1e-9, "credited {work}");
                good += 1;
            }
            other => panic!("nonce {nonce}: {:?}", other.err()),
        }
    }
    assert!(low > 19_000 && good > 10, "{low} low, {good} good");
    assert_eq!(Refusal::LowDifficulty.code(), error_code::LOW_DIFFICULTY);
}

#[test]
fn seen_shares_are_bounded_per_job_and_a_duplicate_is_never_accepted() {
    let mut m = miner(true);
    m.shares = ShareChecker::new(m.shares.floor(), RECENT_JOBS, 3);
    let w = work(1, &[0xaa], [0xff; 32]);
    m.take_extranonce(&w);
    on_work(&mut m, &w);
    let now = Some(ChannelNow { opening: 1 });
    let job = sv1_job_id(1, 5);
    // Every hash is a share here (all-ff targets): three are remembered...
    for nonce in 0..3 {
        assert!(check_share(&mut m, &submit(&job, nonce), now).is_ok());
    }
    // ...the fourth on that job is refused, with its own code and reason...
    let full = check_share(&mut m, &submit(&job, 3), now).err();
    assert_eq!(full, Some(Refusal::JobShareLimit(3)));
    assert_eq!(Refusal::JobShareLimit(3).code(), error_code::OTHER);
    assert!(Refusal::JobShareLimit(3).to_string().contains("next job"));
    // ...and nothing was forgotten to make room: the first is still a duplicate.
    for nonce in 0..3 {
        assert_eq!(
            check_share(&mut m, &submit(&job, nonce), now).err(),
            Some(Refusal::Duplicate)
        );
    }
    assert_eq!(m.shares.remembered(), 3);
    // The next job has room of its own; the full one stays full.
    let mut next = w.clone();
    if let Some(j) = next.job.as_mut() {
        j.job_id = 6;
    }
    on_work(&mut m, &next);
    assert!(check_share(&mut m, &submit(&sv1_job_id(1, 6), 0), now).is_ok());
    assert_eq!(
        check_share(&mut m, &submit(&job, 4), now).err(),
        Some(Refusal::JobShareLimit(3))
    );
    // Jobs that can no longer be submitted to take their shares with them: memory stays
    // bounded by the recent jobs.
    for id in 7..7 + RECENT_JOBS as u32 {
        let mut newer = w.clone();
        if let Some(j) = newer.job.as_mut() {
            j.job_id = id;
        }
        on_work(&mut m, &newer);
    }
    assert_eq!(m.shares.remembered(), 0);
    assert_eq!(
        check_share(&mut m, &submit(&job, 0), now).err(),
        Some(Refusal::Stale)
    );
}

#[tokio::test]
async fn a_share_the_pool_calls_stale_is_answered_as_stale_and_counted_apart() {
    let (commands, mut upstream) = mpsc::channel(4);
    let shared = Shared {
        mode: crate::ChannelMode::Aggregated,
        aggregated: None,
        keys: None,
        commands,
        vardiff: VardiffSettings::default(),
        limits: Sv1Limits::default(),
        stats: Arc::new(TranslatorStats::default()),
    };
    let mut m = miner(true);
    let w = work(1, &[0xaa], [0xff; 32]);
    m.take_extranonce(&w);
    on_work(&mut m, &w);
    let (_tx, mut work_rx) = watch::channel(Some(Arc::new(w)));
    let (out, mut answers) = mpsc::unbounded_channel();
    let job = sv1_job_id(1, 5);
    for (nonce, verdict) in [
        (1, ERROR_CODE_SUBMIT_SHARES_STALE_SHARE),
        (2, "invalid-share"),
    ] {
        let request = ClientRequest::Submit {
            id: json!(nonce),
            submit: submit(&job, nonce),
        };
        assert!(on_request(request, &mut m, &mut work_rx, &shared, &out)
            .await
            .is_empty());
        let Some(Command::Share(share)) = upstream.recv().await else {
            panic!("no share forwarded");
        };
        let _ = share
            .verdict
            .send(Err(NotAccepted::Refused(verdict.into())));
        let answer: Value =
            serde_json::from_str(&answers.recv().await.expect("an answer")).expect("JSON");
        let code = if verdict == ERROR_CODE_SUBMIT_SHARES_STALE_SHARE {
            error_code::JOB_NOT_FOUND
        } else {
            error_code::OTHER
        };
        assert_eq!(answer["error"][0], json!(code), "{answer}");
    }
    let stats = &shared.stats;
    assert_eq!(TranslatorStats::get(&stats.shares_refused_upstream), 2);
    assert_eq!(
        TranslatorStats::get(&stats.shares_refused_upstream_stale),
        1
    );
}

/// A public-mode miner: subscribed before its key is known, extranonce1 its index alone.
fn public_miner() -> Miner {
    Miner {
        authorized: None,
        subscribed: false,
        fixed_extranonce: true,
        extranonce2_size: crate::sv2::MIN_EXTRANONCE2_BYTES,
        ..miner(true)
    }
}

fn public_shared(
    default_key: Option<ext_mint_quote::LockingKey>,
) -> (Shared, mpsc::Receiver<Command>) {
    let (commands, upstream) = mpsc::channel(16);
    let shared = Shared {
        mode: crate::ChannelMode::PerKey,
        aggregated: None,
        keys: Some(super::KeyChannels::new(
            default_key,
            Sv1Limits::DEFAULT_MAX_KEYS_PER_ADDRESS,
        )),
        commands,
        vardiff: VardiffSettings::default(),
        limits: Sv1Limits::default(),
        stats: Arc::new(TranslatorStats::default()),
    };
    (shared, upstream)
}

fn test_key(n: u8) -> ext_mint_quote::LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
    ext_mint_quote::LockingKey::from_slice(&sk.public_key(&secp).serialize()).unwrap()
}

fn authorize_request(user: &str) -> ClientRequest {
    ClientRequest::Authorize {
        id: json!(2),
        user: user.into(),
        password: None,
    }
}

#[tokio::test]
async fn a_public_miner_is_told_its_extranonce_before_its_key_and_it_never_changes() {
    let (shared, mut upstream) = public_shared(None);
    let (out, _answers) = mpsc::unbounded_channel();
    let mut m = public_miner();
    let (_idle, mut work_rx) = watch::channel(None);
    let subscribe = ClientRequest::Subscribe {
        id: json!(1),
        user_agent: None,
    };
    let lines = on_request(subscribe, &mut m, &mut work_rx, &shared, &out).await;
    let answer: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(answer["result"][1], json!("00000007"), "{answer}");
    assert_eq!(answer["result"][2], json!(4), "{answer}");

    let key = test_key(1);
    let user = format!("{key}.rig1");
    let lines = on_request(
        authorize_request(&user),
        &mut m,
        &mut work_rx,
        &shared,
        &out,
    )
    .await;
    assert!(lines[0].contains("true"), "{lines:?}");
    let Some(Command::Open {
        key: Some(opened_for),
        work: channel,
        ..
    }) = upstream.recv().await
    else {
        panic!("the key's channel was not opened");
    };
    assert_eq!(opened_for, key);

    // The key's channel: a 2-byte prefix and 12 bytes of extranonce, more than the miner's
    // index and extranonce2 need.
    let mut w = work(1, &[0xaa, 0xbb], [0xff; 32]);
    w.extranonce_size = 12;
    channel.send_replace(Some(Arc::new(w.clone())));
    let lines = on_work(&mut m, &w);
    assert!(
        !lines.iter().any(|l| l.contains("set_extranonce")),
        "{lines:?}"
    );
    let notify: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let (coinbase1, coinbase2) = (
        notify["params"][2].as_str().unwrap(),
        notify["params"][3].as_str().unwrap(),
    );
    assert_eq!(
        coinbase1, "01aabb",
        "the channel's prefix rides in coinbase1"
    );
    assert_eq!(
        coinbase2, "0000000002",
        "the unused extranonce rides in coinbase2"
    );

    // The share the pool gets has the channel's whole extranonce, and the coinbase the miner
    // hashed is the one the pool rebuilds from it.
    let Ok(Checked::ToPool(share, _)) = check_share(
        &mut m,
        &Submit {
            worker: user.clone(),
            ..submit(&sv1_job_id(1, 5), 1)
        },
        Some(ChannelNow { opening: 1 }),
    ) else {
        panic!("the share was not sent to the pool");
    };
    assert_eq!(share.extranonce.len(), 12);
    let miner_view = [
        hex::decode(coinbase1).unwrap(),
        m.extranonce1(),
        vec![0; 4],
        hex::decode(coinbase2).unwrap(),
    ]
    .concat();
    let pool_view = [vec![1], vec![0xaa, 0xbb], share.extranonce.clone(), vec![2]].concat();
    assert_eq!(miner_view, pool_view);

    // Another pool, another prefix: the miner's extranonce stays as it was told.
    let mut moved = work(2, &[0xcc], [0xff; 32]);
    moved.extranonce_size = 8;
    let lines = on_work(&mut m, &moved);
    assert!(!m.must_reconnect);
    assert!(
        !lines.iter().any(|l| l.contains("set_extranonce")),
        "{lines:?}"
    );
    assert_eq!(m.extranonce1(), vec![0, 0, 0, 7]);
    assert_eq!(m.pad, 0);
}

#[tokio::test]
async fn a_public_miner_without_a_valid_key_is_refused_with_what_to_put_there() {
    let (shared, mut upstream) = public_shared(None);
    let (out, _answers) = mpsc::unbounded_channel();
    let (_idle, mut work_rx) = watch::channel(None);
    for user in [
        "bitaxe",
        "02deadbeef02deadbeef02deadbeef02deadbeef02deadbeef02deadbeef0000",
    ] {
        let mut m = public_miner();
        m.subscribed = true;
        let lines = on_request(authorize_request(user), &mut m, &mut work_rx, &shared, &out).await;
        let answer: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            answer["error"][0],
            json!(error_code::UNAUTHORIZED),
            "{answer}"
        );
        assert!(
            answer["error"][1]
                .as_str()
                .unwrap()
                .contains("hashpool-wallet init"),
            "{answer}"
        );
        assert!(m.authorized.is_none() && m.key.is_none());
    }
    assert!(
        upstream.try_recv().is_err(),
        "no channel for a refused miner"
    );

    // One connection, one key: a second key is refused, another worker of the same key is not.
    let mut m = public_miner();
    m.subscribed = true;
    let first = format!("{}.a", test_key(1));
    assert!(on_request(
        authorize_request(&first),
        &mut m,
        &mut work_rx,
        &shared,
        &out
    )
    .await[0]
        .contains("true"));
    let other = test_key(2).to_hex();
    let lines = on_request(
        authorize_request(&other),
        &mut m,
        &mut work_rx,
        &shared,
        &out,
    )
    .await;
    assert!(lines[0].contains("connect again"), "{lines:?}");
    let same = format!("{}.b", test_key(1));
    assert!(on_request(
        authorize_request(&same),
        &mut m,
        &mut work_rx,
        &shared,
        &out
    )
    .await[0]
        .contains("true"));
    assert_eq!(m.key.map(|k| k.0), Some(test_key(1)));

    // With a default key, a username without a key mines for it.
    let (shared, mut upstream) = public_shared(Some(test_key(3)));
    let mut m = public_miner();
    m.subscribed = true;
    assert!(on_request(
        authorize_request("bitaxe"),
        &mut m,
        &mut work_rx,
        &shared,
        &out
    )
    .await[0]
        .contains("true"));
    assert!(matches!(
        upstream.recv().await,
        Some(Command::Open { key: Some(k), .. }) if k == test_key(3)
    ));
}

#[tokio::test]
async fn one_address_cannot_take_more_keys_than_its_bound() {
    let (mut shared, mut upstream) = public_shared(None);
    shared.keys = Some(super::KeyChannels::new(None, 2));
    let (out, _answers) = mpsc::unbounded_channel();
    let (_idle, mut work_rx) = watch::channel(None);
    // Three connections from one address, each naming a key of its own.
    let mut answers = Vec::new();
    for n in 1..=3u8 {
        let mut m = public_miner();
        m.index = u32::from(n);
        let subscribe = ClientRequest::Subscribe {
            id: json!(1),
            user_agent: None,
        };
        on_request(subscribe, &mut m, &mut work_rx, &shared, &out).await;
        let user = format!("{}.rig", test_key(n));
        let lines = on_request(
            authorize_request(&user),
            &mut m,
            &mut work_rx,
            &shared,
            &out,
        )
        .await;
        answers.push(lines[0].clone());
    }
    assert!(
        answers[0].contains("true") && answers[1].contains("true"),
        "{answers:?}"
    );
    let refused: Value = serde_json::from_str(&answers[2]).unwrap();
    assert_eq!(refused["error"][0], json!(24), "{refused}");
    assert!(
        refused["error"][1]
            .as_str()
            .is_some_and(|m| m.contains("max_keys_per_address")),
        "{refused}"
    );
    assert_eq!(
        shared
            .stats
            .limit_hits
            .get(crate::stats::Sv1Limit::KeysPerAddress),
        1
    );
    // Two channels opened on the pool, none for the refused key.
    let mut opened = 0;
    while let Ok(c) = upstream.try_recv() {
        assert!(matches!(c, Command::Open { .. }), "{c:?}");
        opened += 1;
    }
    assert_eq!(opened, 2);
}
