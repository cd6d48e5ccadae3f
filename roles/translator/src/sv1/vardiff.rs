//! Each miner's difficulty: vardiff's estimate of its hashrate from its shares, and its own
//! suggestion (`mining.suggest_difficulty`), clamped.

use bitcoin::Target;
use channels_sv2::{target::hash_rate_to_target, vardiff::Vardiff};
use hashpool_sv1::difficulty_to_target;
use tracing::debug;

use super::{
    harder,
    miner::{on_work, Miner},
    Shared, Work,
};
use crate::{stats::TranslatorStats, sv2::Command};

/// The most a miner may claim through `mining.suggest_difficulty` (1 PH/s, H/s).
pub(super) const MAX_MINER_HASHRATE: f32 = 1e15;

/// Hashes in a difficulty-1 share.
pub(super) const DIFFICULTY_1_HASHES: f64 = 4_294_967_296.0;

/// The little-endian target at which a miner of `hashrate` finds `shares_per_minute`.
pub(super) fn vardiff_target(hashrate: f32, shares_per_minute: f32) -> Option<[u8; 32]> {
    hash_rate_to_target(hashrate as f64, shares_per_minute as f64)
        .ok()
        .map(|t| t.to_le_bytes())
}

/// The difficulty a miner that suggested `difficulty` is given: never under `floor` (whatever
/// it sent: 1e-30, 0, negative, NaN), never over what a miner of [`MAX_MINER_HASHRATE`] would
/// need at `shares_per_minute` (a floor above that cap still wins).
pub(super) fn clamp_suggestion(difficulty: f64, floor: f64, shares_per_minute: f64) -> f64 {
    let most = MAX_MINER_HASHRATE as f64 * 60.0 / shares_per_minute / DIFFICULTY_1_HASHES;
    if difficulty.is_nan() || difficulty < floor {
        floor
    } else {
        difficulty.min(most).max(floor)
    }
}

/// Vardiff: re-estimates the miner's hashrate from its shares; in aggregated mode moves its
/// difficulty, in channel-per-miner mode asks the pool to retarget its channel.
pub(super) async fn retarget(m: &mut Miner, work: &Work, shared: &Shared) -> Vec<String> {
    let Some(target) = m.target.filter(|_| m.authorized.is_some()) else {
        return Vec::new();
    };
    let spm = shared.vardiff.shares_per_minute;
    let hashrate = match m
        .vardiff
        .try_vardiff(m.hashrate, &Target::from_le_bytes(target), spm)
    {
        Ok(Some(h)) => h,
        Ok(None) => return Vec::new(),
        Err(e) => {
            debug!(miner = m.index, "vardiff: {e:?}");
            return Vec::new();
        }
    };
    debug!(miner = m.index, hashrate, "vardiff: new hashrate estimate");
    shared.stats.rehash(m.hashrate, hashrate);
    m.hashrate = hashrate;
    if let Some(c) = &m.counters {
        c.hashrate.set(hashrate as f64);
    }
    if !m.aggregated {
        let update = Command::Hashrate {
            miner: m.index,
            hashrate,
        };
        if shared.commands.send(update).await.is_ok() {
            TranslatorStats::add(&shared.stats.vardiff_updates);
        }
        return Vec::new();
    }
    let Some(new_target) = vardiff_target(hashrate, spm) else {
        return Vec::new();
    };
    // However slow vardiff measures the miner, its shares stay at the floor or harder.
    m.vardiff_target = harder(new_target, m.floor());
    let current = work.borrow().clone();
    let lines = current.map(|w| on_work(m, &w)).unwrap_or_default();
    if !lines.is_empty() {
        TranslatorStats::add(&shared.stats.vardiff_updates);
    }
    lines
}

/// `mining.suggest_difficulty`: the miner's own idea of its difficulty replaces the initial
/// estimate; vardiff corrects it from there. Clamped to `[min_share_difficulty, the difficulty
/// of MAX_MINER_HASHRATE]`: a miner cannot ask for free shares, nor swamp the totals.
pub(super) async fn suggest_difficulty(
    m: &mut Miner,
    difficulty: f64,
    work: &Work,
    shared: &Shared,
) {
    let spm = shared.vardiff.shares_per_minute as f64;
    let clamped = clamp_suggestion(difficulty, shared.limits.min_share_difficulty, spm);
    if clamped != difficulty {
        TranslatorStats::add(&shared.stats.suggested_difficulty_clamped);
        debug!(
            miner = m.index,
            suggested = difficulty,
            given = clamped,
            "suggested difficulty clamped"
        );
    }
    let difficulty = clamped;
    let hashrate = ((difficulty * DIFFICULTY_1_HASHES * spm / 60.0) as f32).min(MAX_MINER_HASHRATE);
    if !hashrate.is_finite() {
        return;
    }
    if m.authorized.is_some() {
        shared.stats.rehash(m.hashrate, hashrate);
    }
    m.hashrate = hashrate;
    if let Some(c) = &m.counters {
        c.hashrate.set(hashrate as f64);
    }
    m.vardiff_target = harder(difficulty_to_target(difficulty), m.floor());
    let channel_open = work.borrow().is_some();
    if !m.aggregated && m.own_channel.is_none() && channel_open {
        let _ = shared
            .commands
            .send(Command::Hashrate {
                miner: m.index,
                hashrate,
            })
            .await;
    }
}
