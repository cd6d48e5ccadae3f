//! OpenStandardMiningChannel, OpenExtendedMiningChannel and UpdateChannel: the target a miner
//! gets, what it may not ask for, and which key its ehash is locked to.

use channels_sv2::target::hash_rate_to_target;
use mining_sv2::UpdateChannelOwned;

use super::*;
use crate::miners::{targets::target_from_difficulty, LimitReason};

fn success_target(out: &[MiningOwned]) -> (u32, Target) {
    match &out[0] {
        MiningOwned::OpenStandardMiningChannelSuccess(s) => (s.channel_id, target_of(&s.target)),
        MiningOwned::OpenExtendedMiningChannelSuccess(s) => (s.channel_id, target_of(&s.target)),
        other => panic!("expected a Success, got {other:?}"),
    }
}

fn spm(pool: &Pool) -> f64 {
    pool.ctx.config.pool.shares_per_minute as f64
}

#[tokio::test]
async fn a_standard_channel_gets_the_target_of_its_hashrate_and_the_current_work() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let out = pool.open_standard(&key(1).to_hex(), 1e6, all_ff(), &[]);
    let MiningOwned::OpenStandardMiningChannelSuccess(s) = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(s.request_id, 7);
    assert_eq!(s.group_channel_id, pool.set.group_channel_id);
    // 1 MH/s at the pool's share rate: between the network target and the floor, so exactly
    // the hashrate's target.
    let expected = hash_rate_to_target(1e6, spm(&pool)).unwrap();
    assert!(expected < target_from_difficulty(MIN_DIFFICULTY));
    assert!(expected > network_target(TESTNET_NBITS));
    assert_eq!(target_of(&s.target), expected);
    // The current template and its tip follow at once: the miner can start.
    let work = StandardWork::from_messages(&out);
    assert_eq!(work.channel_id, s.channel_id);
    assert_eq!(work.prev_hash, TIP);
    assert_eq!(work.nbits, TESTNET_NBITS);
    let entry = &pool.set.channels()[&s.channel_id];
    assert_eq!(entry.locking_key, key(1));
    assert_eq!(entry.channel().target(), expected);
}

#[tokio::test]
async fn an_extended_channel_gets_the_target_of_its_hashrate_and_its_extranonce_space() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let out = pool.open_extended(&key(2).to_hex(), 1e6, all_ff(), 8, &[]);
    let MiningOwned::OpenExtendedMiningChannelSuccess(s) = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(s.request_id, 8);
    assert_eq!(
        target_of(&s.target),
        hash_rate_to_target(1e6, spm(&pool)).unwrap()
    );
    assert!(s.extranonce_size >= 8);
    // The whole extranonce is the pool's 20 bytes: server id and channel index, miner's part.
    assert_eq!(
        s.extranonce_prefix.as_bytes().len() + s.extranonce_size as usize,
        crate::miners::TOTAL_EXTRANONCE_LEN as usize
    );
    assert!(out
        .iter()
        .any(|m| matches!(m, MiningOwned::NewExtendedMiningJob(_))));
    assert_eq!(pool.set.channels()[&s.channel_id].locking_key, key(2));

    // More extranonce than the pool can give: refused with the spec's code.
    let out = pool.open_extended(&key(2).to_hex(), 1e6, all_ff(), 32, &[]);
    assert_eq!(
        open_error(&out).as_deref(),
        Some("min-extranonce-size-too-large")
    );
    assert_eq!(pool.set.channels().len(), 1);
}

#[tokio::test]
async fn a_max_target_harder_than_the_network_is_raised_to_the_network_target() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    // A tiny hashrate: the max target alone decides.
    let (_, standard) =
        success_target(&pool.open_standard(&key(1).to_hex(), 1.0, target_one(), &[]));
    assert_eq!(standard, network_target(TESTNET_NBITS));
    let (_, extended) =
        success_target(&pool.open_extended(&key(1).to_hex(), 1.0, target_one(), 4, &[]));
    assert_eq!(extended, network_target(TESTNET_NBITS));
}

#[tokio::test]
async fn a_max_target_easier_than_the_floor_is_floored_at_the_minimum_difficulty() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let floor = target_from_difficulty(MIN_DIFFICULTY);
    // A zero hashrate asks for the easiest target there is: the floor it gets.
    let (_, standard) = success_target(&pool.open_standard(&key(1).to_hex(), 0.0, all_ff(), &[]));
    assert_eq!(standard, floor);
    let (_, extended) =
        success_target(&pool.open_extended(&key(1).to_hex(), 0.0, all_ff(), 4, &[]));
    assert_eq!(extended, floor);
    // Where the network is easier than the floor (regtest), the floor still holds.
    let mut regtest = Pool::start(REGTEST_NBITS, |_| {}).await;
    let (_, t) = success_target(&regtest.open_standard(&key(1).to_hex(), 0.0, all_ff(), &[]));
    assert_eq!(t, floor);
}

#[tokio::test]
async fn nonsense_hashrates_are_refused_and_open_nothing() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    for hashrate in [f32::NAN, -1.0, f32::INFINITY, f32::NEG_INFINITY] {
        let out = pool.open_standard(&key(1).to_hex(), hashrate, all_ff(), &[]);
        assert_eq!(
            open_error(&out).as_deref(),
            Some("invalid-nominal-hashrate"),
            "standard, {hashrate}"
        );
        let out = pool.open_extended(&key(1).to_hex(), hashrate, all_ff(), 4, &[]);
        assert_eq!(
            open_error(&out).as_deref(),
            Some("invalid-nominal-hashrate"),
            "extended, {hashrate}"
        );
    }
    assert!(pool.set.channels().is_empty());
}

#[tokio::test]
async fn the_locking_key_comes_from_the_tlv_then_the_identity_then_the_default() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let opened_key = |pool: &Pool, out: &[MiningOwned]| {
        let (id, _) = success_target(out);
        pool.set.channels()[&id].locking_key
    };
    // The TLV wins over a key given as user identity.
    let tlv = ext_mint_quote::locking_key_tlv(&key(3));
    let out = pool.open_standard(&key(1).to_hex(), 1e6, all_ff(), std::slice::from_ref(&tlv));
    assert_eq!(opened_key(&pool, &out), key(3));
    let out = pool.open_extended("worker", 1e6, all_ff(), 4, &[tlv]);
    assert_eq!(opened_key(&pool, &out), key(3));
    // A TLV that is not a key refuses the channel, whatever the identity says.
    let bad = Tlv::new(
        ext_mint_quote::EXTENSION_TYPE,
        ext_mint_quote::TLV_FIELD_LOCKING_KEY,
        vec![0x02; 20],
    );
    let out = pool.open_standard(&key(1).to_hex(), 1e6, all_ff(), std::slice::from_ref(&bad));
    assert_eq!(open_error(&out).as_deref(), Some("invalid-locking-key"));
    let out = pool.open_extended(&key(1).to_hex(), 1e6, all_ff(), 4, &[bad]);
    assert_eq!(open_error(&out).as_deref(), Some("invalid-locking-key"));
    // `<key>.<worker>` as identity.
    let out = pool.open_standard(&format!("{}.rig7", key(4).to_hex()), 1e6, all_ff(), &[]);
    assert_eq!(opened_key(&pool, &out), key(4));
    // No key anywhere and no default: refused.
    let out = pool.open_standard("alice.rig1", 1e6, all_ff(), &[]);
    assert_eq!(open_error(&out).as_deref(), Some("invalid-user-identity"));
    let out = pool.open_extended("alice.rig1", 1e6, all_ff(), 4, &[]);
    assert_eq!(open_error(&out).as_deref(), Some("invalid-user-identity"));
    assert_eq!(pool.set.channels().len(), 3);

    // With a default key, such a channel accrues to it.
    let mut pool = Pool::start(TESTNET_NBITS, |c| c.pool.default_locking_key = Some(key(5))).await;
    let out = pool.open_standard("alice.rig1", 1e6, all_ff(), &[]);
    assert_eq!(opened_key(&pool, &out), key(5));
}

#[tokio::test]
async fn channels_beyond_the_per_connection_limit_are_refused_and_counted() {
    let mut pool = Pool::start(TESTNET_NBITS, |c| c.pool.max_channels_per_connection = 1).await;
    success_target(&pool.open_standard(&key(1).to_hex(), 1e6, all_ff(), &[]));
    let out = pool.open_extended(&key(1).to_hex(), 1e6, all_ff(), 4, &[]);
    assert_eq!(
        open_error(&out).as_deref(),
        Some("channel-capacity-exhausted")
    );
    assert_eq!(pool.set.channels().len(), 1);
    assert_eq!(
        pool.ctx
            .admission
            .hits_of(LimitReason::ChannelsPerConnection),
        1
    );
}

fn update(pool: &mut Pool, channel_id: u32, hashrate: f32, max: Target) -> MiningOwned {
    let m = UpdateChannelOwned {
        channel_id,
        nominal_hash_rate: hashrate,
        maximum_target: U256Owned::from(max.to_le_bytes()),
    };
    let mut out = crate::miners::open::update(&pool.ctx, &mut pool.set, m);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[tokio::test]
async fn update_channel_retargets_within_the_same_bounds_as_opening() {
    let mut pool = Pool::start(TESTNET_NBITS, |_| {}).await;
    let (id, _) = success_target(&pool.open_standard(&key(1).to_hex(), 1e6, all_ff(), &[]));
    let set_target = |m: MiningOwned| match m {
        MiningOwned::SetTarget(t) => (t.channel_id, target_of(&t.maximum_target)),
        other => panic!("expected SetTarget, got {other:?}"),
    };
    let error = |m: MiningOwned| match m {
        MiningOwned::UpdateChannelError(e) => (e.channel_id, hashpool_sv2_io::text(&e.error_code)),
        other => panic!("expected UpdateChannel.Error, got {other:?}"),
    };
    let spm = spm(&pool);
    // A new hashrate: the target of that hashrate, on the channel too.
    let expected = hash_rate_to_target(4e6, spm).unwrap();
    assert_eq!(
        set_target(update(&mut pool, id, 4e6, all_ff())),
        (id, expected)
    );
    assert_eq!(pool.set.channels()[&id].channel().target(), expected);
    // A max target harder than the network: raised to it.
    assert_eq!(
        set_target(update(&mut pool, id, 1.0, target_one())),
        (id, network_target(TESTNET_NBITS))
    );
    // Easier than the floor: floored.
    assert_eq!(
        set_target(update(&mut pool, id, 0.0, all_ff())),
        (id, target_from_difficulty(MIN_DIFFICULTY))
    );
    // Nonsense hashrates are refused and change nothing.
    for hashrate in [f32::NAN, -5.0, f32::INFINITY] {
        assert_eq!(
            error(update(&mut pool, id, hashrate, all_ff())),
            (id, "invalid-nominal-hashrate".to_string()),
            "{hashrate}"
        );
    }
    assert_eq!(
        pool.set.channels()[&id].channel().target(),
        target_from_difficulty(MIN_DIFFICULTY)
    );
    assert_eq!(
        error(update(&mut pool, id + 100, 1e6, all_ff())),
        (id + 100, "invalid-channel-id".to_string())
    );
}
