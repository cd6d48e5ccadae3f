//! One connection to the pool: the back-off between pools, the Noise handshake, SetupConnection
//! and the extension negotiation, then the loop that dispatches the pool's messages (to
//! [`super::channel`]) and the SV1 side's commands (to [`super::commands`]).

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use common_messages_sv2::Protocol;
use hashpool_sv2_io::{decode_frame, extension_frame, Backoff, ConnectionError, Dial, Reconnect};
use parsers_sv2::AnyMessageOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::TranslatorRunConfig;

use super::{
    channel::{open_channel, open_message, slot_key},
    failover::{apply_offline, Slot, Slots, AGGREGATED_SLOT},
    Command, Session, UpstreamState,
};

/// `max_target`: the easiest target the translator's floor allows; every channel is opened
/// and updated with it, so the pool never sets one easier.
pub async fn run(
    config: TranslatorRunConfig,
    aggregated: Option<UpstreamState>,
    mut commands: mpsc::Receiver<Command>,
    max_target: [u8; 32],
    minter: Option<hashpool_wallet::Minter>,
    stats: Arc<crate::TranslatorStats>,
    shutdown: CancellationToken,
) {
    let mut slots = Slots::new();
    if let Some(work) = aggregated {
        slots.insert(
            AGGREGATED_SLOT,
            Slot {
                user_identity: config.user_identity.clone(),
                hashrate: config.nominal_hashrate,
                work,
                locking_key: None,
            },
        );
    }
    let settings = Settings {
        config: &config,
        max_target,
        minter: minter.as_ref(),
        stats: &stats,
    };
    let mut reconnect = Reconnect::new(
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        config.upstreams.len(),
    );
    loop {
        let endpoint = &config.upstreams[reconnect.endpoint()];
        let mut established = false;
        let result = tokio::select! {
            r = session(&settings, endpoint, &mut slots, &mut commands, &mut established) => r,
            _ = shutdown.cancelled() => return,
        };
        stats.pool_connected.store(0, Ordering::Relaxed);
        for slot in slots.values() {
            slot.work.send_replace(None);
        }
        if let Err(e) = result {
            warn!(pool = %endpoint.address, "pool connection lost: {e}");
        }
        // Back to the preferred pool after one that opened a channel; the next pool at once
        // after one that did not, with a back-off after each full round.
        let delay = reconnect.after_loss(established);
        // Shares that arrive while no pool is there are refused honestly.
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                c = commands.recv() => match c {
                    Some(c) => apply_offline(&mut slots, &config, c),
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// What every connection to a pool is made with.
struct Settings<'a> {
    config: &'a TranslatorRunConfig,
    /// The easiest target any channel may have (the translator's floor).
    max_target: [u8; 32],
    /// Mints the quotes the pool announces.
    minter: Option<&'a hashpool_wallet::Minter>,
    stats: &'a crate::TranslatorStats,
}

/// One connection to `endpoint`: `established` is set once it opened a channel (or, per-miner
/// with no miner yet, once it set up).
async fn session(
    settings: &Settings<'_>,
    endpoint: &crate::UpstreamEndpoint,
    slots: &mut Slots,
    commands: &mut mpsc::Receiver<Command>,
    established: &mut bool,
) -> Result<(), ConnectionError> {
    let Settings {
        config,
        max_target,
        minter,
        stats,
    } = *settings;
    let dial = Dial::new(
        &endpoint.address,
        Some(endpoint.authority_public_key),
        Protocol::MiningProtocol,
        "translator",
    )
    .device_id(&config.user_identity)
    .capacity(4096);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    stats.pool_connected.store(1, Ordering::Relaxed);
    crate::TranslatorStats::add(&stats.pool_connections);
    let mode = config.channel_mode;
    // Without the mint-quote extension the translator's channel earns no ehash; a key's
    // channel is still locked to its key (its user identity) but nobody is told of its quotes.
    let wants_tlv = config.locking_key.is_some() || mode == crate::ChannelMode::PerKey;
    let tlv = wants_tlv && conn.try_extension(ext_mint_quote::EXTENSION_TYPE).await?;
    let locking_key = config.locking_key.filter(|_| tlv);
    for (id, slot) in slots.iter() {
        open_channel(
            &mut conn,
            open_message(*id, slot, mode, max_target),
            slot_key(slot, locking_key, tlv),
        )
        .await?;
    }
    // The pool connection counts as established once a channel opens on it, or, with a channel
    // per miner or key and none wanted yet, once it has set up.
    *established = mode != crate::ChannelMode::Aggregated && slots.is_empty();

    let mut session = Session {
        conn,
        config,
        slots,
        channels: HashMap::new(),
        by_slot: HashMap::new(),
        group_channel_id: None,
        locking_key,
        tlv,
        mode,
        max_target,
    };
    let result = loop {
        tokio::select! {
            frame = session.conn.recv_frame() => {
                let mut frame = match frame {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                };
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension(minter, &ext);
                    continue;
                }
                let message = match decode_frame(&mut frame, &[]) {
                    Ok(m) => m.1,
                    Err(e) => break Err(e.into()),
                };
                let AnyMessageOwned::Mining(m) = message else { continue };
                if let Err(e) = session.on_mining(m, endpoint, established).await {
                    break Err(e);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break Ok(()) };
                if let Err(e) = session.on_command(command).await {
                    break Err(e);
                }
            }
        }
    };
    for c in session.channels.values_mut() {
        c.fail_pending("the pool connection dropped");
    }
    result
}

/// Quote announcements go to the wallet; anything else from an extension is only logged.
fn on_extension(minter: Option<&hashpool_wallet::Minter>, ext: &hashpool_sv2_io::ExtensionFrame) {
    let announced =
        hashpool_wallet::announced_quote(ext.extension_type, ext.message_type, &ext.payload);
    if let (Some((quote, _)), Some(minter)) = (announced, minter) {
        minter.announce(quote);
    }
}
