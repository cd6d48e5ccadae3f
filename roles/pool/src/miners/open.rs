//! OpenStandardMiningChannel, OpenExtendedMiningChannel and UpdateChannel.

use binary_sv2::B032Owned;
use channels_sv2::{
    server::{
        error::{ExtendedChannelError, StandardChannelError},
        extended::ExtendedChannel,
        standard::StandardChannel,
    },
    VardiffState,
};
use ext_mint_quote::LockingKey;
use hashpool_shares::{target_to_u256, u256_to_target};
use mining_sv2::{
    OpenExtendedMiningChannelOwned, OpenExtendedMiningChannelSuccessOwned,
    OpenMiningChannelErrorOwned, OpenStandardMiningChannelOwned,
    OpenStandardMiningChannelSuccessOwned, SetTargetOwned, UpdateChannelErrorOwned,
    UpdateChannelOwned, ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED,
    ERROR_CODE_OPEN_MINING_CHANNEL_INVALID_USER_IDENTITY,
    ERROR_CODE_OPEN_MINING_CHANNEL_MIN_EXTRANONCE_SIZE_TOO_LARGE,
    ERROR_CODE_UPDATE_CHANNEL_INVALID_CHANNEL_ID,
};
use parsers_sv2::{MiningOwned, Tlv};
use tracing::{info, warn};

use super::{
    admission::LimitReason,
    channel_set::{ChannelEntry, ChannelKind, ChannelSet},
    targets::{network_target, TargetBounds},
    MinerHandles,
};

use hashpool_sv2_io::str0255 as code;

/// Past jobs of the current tip a channel still takes shares on (channels_sv2 keeps 16 by
/// default: at a job every few seconds and thousands of channels, that is most of a
/// connection's memory, each job a copy of its template). Miners send shares within seconds of
/// a new job; two cover a minute of template updates at a template provider's usual 30 s, and
/// the 10,000-connection benchmark holds a connection in about 1.6 KiB less per job dropped.
pub(crate) const PAST_JOBS: usize = 2;

fn open_error(request_id: u32, error_code: &str) -> Vec<MiningOwned> {
    vec![MiningOwned::OpenMiningChannelError(
        OpenMiningChannelErrorOwned {
            request_id,
            error_code: code(error_code),
        },
    )]
}

fn standard_error_code(e: &StandardChannelError) -> &'static str {
    match e {
        StandardChannelError::OpenChannelInvalidNominalHashrate(c)
        | StandardChannelError::OpenChannelInvalidMaxTarget(c) => c,
        _ => "invalid-channel-parameters",
    }
}

fn extended_error_code(e: &ExtendedChannelError) -> &'static str {
    match e {
        ExtendedChannelError::OpenChannelInvalidNominalHashrate(c)
        | ExtendedChannelError::OpenChannelInvalidMaxTarget(c)
        | ExtendedChannelError::RequestedMinExtranonceSizeTooLarge(c) => c,
        _ => "invalid-channel-parameters",
    }
}

/// Bounds for a channel opened now: the pool's floor and the current tip's network target.
fn bounds(ctx: &MinerHandles) -> TargetBounds {
    let network = ctx
        .jobs
        .snapshot()
        .current
        .as_ref()
        .map(|(_, tip)| network_target(tip.n_bits));
    TargetBounds::new(ctx.config.limits.min_share_difficulty, network)
}

fn capacity_left(ctx: &MinerHandles, set: &ChannelSet) -> bool {
    set.channels().len() < ctx.config.pool.max_channels_per_connection
}

/// The key a channel's ehash is locked to: the locking-key TLV (when the extension was
/// negotiated), else a user identity that is a key (`<key>` or `<key>.<worker>`), else the
/// pool's default key. Returns the error code of the refusal otherwise.
fn locking_key(ctx: &MinerHandles, user: &str, tlvs: &[Tlv]) -> Result<LockingKey, &'static str> {
    match ext_mint_quote::locking_key_from_tlvs(tlvs) {
        Ok(Some(key)) => return Ok(key),
        Ok(None) => {}
        Err(e) => {
            warn!(%user, "channel refused: bad locking-key TLV: {e}");
            return Err(ext_mint_quote::error_code::INVALID_LOCKING_KEY);
        }
    }
    let identity_key = user.split('.').next().unwrap_or(user);
    if let Ok(key) = LockingKey::from_hex(identity_key) {
        return Ok(key);
    }
    ctx.config.pool.default_locking_key.ok_or_else(|| {
        warn!(%user, "channel refused: no locking key (TLV or key as user identity) and no default key");
        ERROR_CODE_OPEN_MINING_CHANNEL_INVALID_USER_IDENTITY
    })
}

/// What every channel must have before it opens: a locking key and room on the connection.
/// Returns the key, or the error code of the refusal.
fn admit(
    ctx: &MinerHandles,
    set: &ChannelSet,
    user: &str,
    tlvs: &[Tlv],
) -> Result<LockingKey, &'static str> {
    let key = locking_key(ctx, user, tlvs)?;
    if !capacity_left(ctx, set) {
        ctx.admission.count(LimitReason::ChannelsPerConnection);
        return Err(ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED);
    }
    Ok(key)
}

pub fn standard(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    m: OpenStandardMiningChannelOwned,
    tlvs: &[Tlv],
) -> Vec<MiningOwned> {
    let user = hashpool_sv2_io::text(&m.user_identity);
    let key = match admit(ctx, set, &user, tlvs) {
        Ok(k) => k,
        Err(code) => return open_error(m.request_id, code),
    };
    let Ok(prefix) = ctx.extranonces().allocate_standard() else {
        return open_error(
            m.request_id,
            ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED,
        );
    };
    let channel_id = ctx.next_channel_id();
    let bounds = bounds(ctx);
    let channel = match StandardChannel::new_for_pool(
        channel_id,
        user.clone(),
        prefix,
        bounds.max_target(u256_to_target(&m.max_target)),
        m.nominal_hash_rate,
        ctx.config.pool.share_batch_size,
        ctx.config.pool.shares_per_minute,
        ctx.config.pool.pool_signature.clone(),
        Some(PAST_JOBS),
    ) {
        Ok(c) => c,
        Err(e) => return open_error(m.request_id, standard_error_code(&e)),
    };
    let success =
        MiningOwned::OpenStandardMiningChannelSuccess(OpenStandardMiningChannelSuccessOwned {
            request_id: m.request_id,
            channel_id,
            target: target_to_u256(channel.get_target()),
            extranonce_prefix: B032Owned::new(channel.get_extranonce_prefix().to_vec())
                .expect("an extranonce prefix is at most 32 bytes"),
            group_channel_id: set.group_channel_id,
        });
    info!(channel_id, %user, %key, hashrate = m.nominal_hash_rate, "standard channel opened");
    register(
        ctx,
        set,
        channel_id,
        ChannelKind::Standard(channel),
        key,
        success,
    )
}

pub fn extended(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    m: OpenExtendedMiningChannelOwned,
    tlvs: &[Tlv],
) -> Vec<MiningOwned> {
    let user = hashpool_sv2_io::text(&m.user_identity);
    let key = match admit(ctx, set, &user, tlvs) {
        Ok(k) => k,
        Err(code) => return open_error(m.request_id, code),
    };
    let (prefix, rollable) = {
        let mut allocator = ctx.extranonces();
        let rollable = allocator.rollable_extranonce_size();
        match allocator.allocate_extended(m.min_extranonce_size as usize) {
            Ok(p) => (p, rollable),
            Err(_) if (m.min_extranonce_size as usize) > rollable as usize => {
                return open_error(
                    m.request_id,
                    ERROR_CODE_OPEN_MINING_CHANNEL_MIN_EXTRANONCE_SIZE_TOO_LARGE,
                )
            }
            Err(_) => {
                return open_error(
                    m.request_id,
                    ERROR_CODE_OPEN_MINING_CHANNEL_CHANNEL_CAPACITY_EXHAUSTED,
                )
            }
        }
    };
    let channel_id = ctx.next_channel_id();
    let bounds = bounds(ctx);
    let channel = match ExtendedChannel::new_for_pool(
        channel_id,
        user.clone(),
        prefix,
        bounds.max_target(u256_to_target(&m.max_target)),
        m.nominal_hash_rate,
        true,
        rollable as u16,
        ctx.config.pool.share_batch_size,
        ctx.config.pool.shares_per_minute,
        ctx.config.pool.pool_signature.clone(),
        Some(PAST_JOBS),
    ) {
        Ok(c) => c,
        Err(e) => return open_error(m.request_id, extended_error_code(&e)),
    };
    let success =
        MiningOwned::OpenExtendedMiningChannelSuccess(OpenExtendedMiningChannelSuccessOwned {
            request_id: m.request_id,
            channel_id,
            target: target_to_u256(channel.get_target()),
            extranonce_size: channel.get_rollable_extranonce_size(),
            extranonce_prefix: B032Owned::new(channel.get_extranonce_prefix().to_vec())
                .expect("an extranonce prefix is at most 32 bytes"),
            group_channel_id: set.group_channel_id,
        });
    info!(channel_id, %user, %key, hashrate = m.nominal_hash_rate, "extended channel opened");
    register(
        ctx,
        set,
        channel_id,
        ChannelKind::Extended(channel),
        key,
        success,
    )
}

/// Adds an opened channel: its Success message, then the current work.
fn register(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    channel_id: u32,
    kind: ChannelKind,
    locking_key: LockingKey,
    success: MiningOwned,
) -> Vec<MiningOwned> {
    let mut entry = ChannelEntry {
        kind,
        locking_key,
        vardiff: VardiffState::new().expect("the default vardiff parameters are valid"),
        bootstrap_seq: 0,
        job_targets: Default::default(),
        network_target: None,
        acked: Default::default(),
        last_share_ms: None,
        best_difficulty: 0.0,
    };
    let mut out = vec![success];
    out.extend(ChannelSet::bootstrap(&mut entry, &ctx.jobs.snapshot()));
    ctx.registry.open_channel(set, channel_id, entry);
    out
}

/// UpdateChannel: the miner's new hashrate and maximum target, bounded as at open.
pub fn update(ctx: &MinerHandles, set: &mut ChannelSet, m: UpdateChannelOwned) -> Vec<MiningOwned> {
    let error = |c: &str| {
        vec![MiningOwned::UpdateChannelError(UpdateChannelErrorOwned {
            channel_id: m.channel_id,
            error_code: code(c),
        })]
    };
    let Some(entry) = set.entry_mut(m.channel_id) else {
        return error(ERROR_CODE_UPDATE_CHANNEL_INVALID_CHANNEL_ID);
    };
    let bounds = TargetBounds::new(ctx.config.limits.min_share_difficulty, entry.network_target);
    let max_target = bounds.max_target(u256_to_target(&m.maximum_target));
    match entry
        .channel_mut()
        .update(m.nominal_hash_rate, Some(max_target))
    {
        Ok(target) => vec![MiningOwned::SetTarget(SetTargetOwned {
            channel_id: m.channel_id,
            maximum_target: target_to_u256(&target),
        })],
        Err(c) => error(c),
    }
}
