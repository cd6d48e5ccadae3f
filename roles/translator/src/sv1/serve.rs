//! The SV1 listener: one task per accepted miner, counted while it is connected.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};

use hashpool_sv1::difficulty_to_target;
use hashpool_sv2_io::{Admission, Full};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    connection::{connection, Targets},
    harder,
    vardiff::vardiff_target,
    Shared,
};
use crate::{stats::Sv1Limit, sv2::Command, ChannelMode};

pub async fn serve(listener: TcpListener, shared: Shared, shutdown: CancellationToken) {
    let floor = difficulty_to_target(shared.limits.min_share_difficulty);
    let initial = vardiff_target(
        shared.vardiff.initial_hashrate,
        shared.vardiff.shares_per_minute,
    )
    .map_or(floor, |t| harder(t, floor));
    let admission = Arc::new(Admission::new(
        shared.limits.max_connections,
        shared.limits.max_connections_per_address,
    ));
    let shared = Arc::new((shared, Targets { initial, floor }));
    let next_index = Arc::new(AtomicU32::new(1));
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (shared, stop) = (shared.clone(), stop.clone());
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        // Checked on accept: a refused connection costs one accept and a close.
        let admitted = admission.admit(peer.ip());
        async move {
            let (shared, targets) = (&shared.0, shared.1);
            let _admitted = match admitted {
                Ok(a) => a,
                Err(full) => {
                    let limit = match full {
                        Full::Connections => Sv1Limit::Connections,
                        Full::ConnectionsPerAddress => Sv1Limit::ConnectionsPerAddress,
                    };
                    shared.stats.limit_hits.count(limit);
                    warn!(%peer, limit = limit.as_str(), "SV1 connection refused");
                    return;
                }
            };
            shared.stats.connections.fetch_add(1, Ordering::Relaxed);
            let result = connection(stream, peer, index, shared, targets, stop).await;
            shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
            if shared.mode == ChannelMode::PerMiner {
                let _ = shared.commands.send(Command::Close { miner: index }).await;
            }
            match result {
                Ok(()) => debug!(%peer, "SV1 miner disconnected"),
                Err(e) => info!(%peer, "SV1 miner dropped: {e}"),
            }
        }
    })
    .await
}
