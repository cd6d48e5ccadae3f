//! Feeds the stratum-apps monitoring server (`/api/v1/clients`, `/metrics`) from the pool's
//! live channels.

use std::sync::{Arc, Mutex};

use channels_sv2::target::bytes_to_hex;
use stratum_apps::monitoring::{
    client::Sv2ClientKind, ExtendedChannelInfo, StandardChannelInfo, Sv2ClientInfo,
    Sv2ClientsMonitoring, Sv2ClientsSummary,
};

use crate::miners::{
    channel_set::{ChannelKind, ChannelSet},
    PoolChannel, Registry,
};

/// The miners' connections, as the monitoring server reads them.
pub struct PoolMonitoring {
    pub registry: Arc<Registry>,
    /// Connections listed one by one, at most (`pool.monitoring_max_clients`).
    pub max_clients: usize,
}

/// The connections shown one by one: all of them up to `max`, else the `max` with the most
/// nominal hashrate (the older connection first on a tie). stratum-apps keeps a dozen
/// Prometheus series and a full view per listed channel; a pool of many small miners would
/// otherwise spend more memory on monitoring than on the miners themselves.
fn shown(connections: Vec<Arc<Mutex<ChannelSet>>>, max: usize) -> Vec<Arc<Mutex<ChannelSet>>> {
    if connections.len() <= max {
        return connections;
    }
    let mut ranked: Vec<(f32, usize, Arc<Mutex<ChannelSet>>)> = connections
        .into_iter()
        .map(|set| {
            let (hashrate, client_id) = {
                let s = set.lock().unwrap_or_else(|p| p.into_inner());
                let hashrate = s
                    .channels()
                    .values()
                    .map(|e| e.channel().nominal_hashrate())
                    .sum::<f32>();
                (hashrate, s.client_id)
            };
            (hashrate, client_id, set)
        })
        .collect();
    let order = |a: &(f32, usize, _), b: &(f32, usize, _)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if max > 0 {
        ranked.select_nth_unstable_by(max - 1, order);
    }
    ranked.truncate(max);
    ranked.sort_unstable_by(order);
    ranked.into_iter().map(|(_, _, set)| set).collect()
}

struct Common {
    channel_id: u32,
    user_identity: String,
    nominal_hashrate: f32,
    target_hex: String,
    expected_shares_per_minute: f32,
    shares_accepted: u32,
    shares_rejected: u32,
    shares_rejected_by_reason: std::collections::HashMap<String, u32>,
    share_work_sum: f64,
    last_share_sequence_number: u32,
    best_diff: f64,
    last_batch_accepted: u32,
    last_batch_work_sum: u64,
    share_batch_size: usize,
    blocks_found: u32,
}

fn common(c: &dyn PoolChannel) -> Common {
    let a = c.share_accounting();
    Common {
        channel_id: c.channel_id(),
        user_identity: c.user_identity().to_string(),
        nominal_hashrate: c.nominal_hashrate(),
        target_hex: bytes_to_hex(&c.target().to_be_bytes()),
        expected_shares_per_minute: c.shares_per_minute(),
        shares_accepted: a.get_shares_accepted(),
        shares_rejected: a.get_rejected_shares_count(),
        shares_rejected_by_reason: a
            .get_rejected_shares()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        share_work_sum: a.get_share_work_sum(),
        last_share_sequence_number: a.get_last_share_sequence_number(),
        best_diff: a.get_best_diff(),
        last_batch_accepted: a.get_last_batch_accepted(),
        last_batch_work_sum: a.get_last_batch_work_sum(),
        share_batch_size: a.get_share_batch_size(),
        blocks_found: a.get_blocks_found(),
    }
}

fn client_info(set: &ChannelSet) -> Sv2ClientInfo {
    let mut standard = Vec::new();
    let mut extended = Vec::new();
    for entry in set.channels().values() {
        let c = common(entry.channel());
        match &entry.kind {
            ChannelKind::Standard(s) => standard.push(StandardChannelInfo {
                channel_id: c.channel_id,
                user_identity: c.user_identity,
                nominal_hashrate: c.nominal_hashrate,
                stable_hashrate: s.get_stable_hashrate(),
                target_hex: c.target_hex,
                requested_max_target_hex: bytes_to_hex(&s.get_requested_max_target().to_be_bytes()),
                extranonce_prefix_hex: bytes_to_hex(s.get_extranonce_prefix()),
                expected_shares_per_minute: c.expected_shares_per_minute,
                shares_accepted: c.shares_accepted,
                shares_rejected: c.shares_rejected,
                shares_rejected_by_reason: c.shares_rejected_by_reason,
                share_work_sum: c.share_work_sum,
                last_share_sequence_number: c.last_share_sequence_number,
                best_diff: c.best_diff,
                last_batch_accepted: c.last_batch_accepted,
                last_batch_work_sum: c.last_batch_work_sum,
                share_batch_size: c.share_batch_size,
                blocks_found: c.blocks_found,
            }),
            ChannelKind::Extended(e) => extended.push(ExtendedChannelInfo {
                channel_id: c.channel_id,
                user_identity: c.user_identity,
                nominal_hashrate: c.nominal_hashrate,
                stable_hashrate: e.get_stable_hashrate(),
                target_hex: c.target_hex,
                requested_max_target_hex: bytes_to_hex(&e.get_requested_max_target().to_be_bytes()),
                extranonce_prefix_hex: bytes_to_hex(e.get_extranonce_prefix()),
                full_extranonce_size: e.get_full_extranonce_size(),
                rollable_extranonce_size: e.get_rollable_extranonce_size(),
                expected_shares_per_minute: c.expected_shares_per_minute,
                shares_accepted: c.shares_accepted,
                shares_rejected: c.shares_rejected,
                shares_rejected_by_reason: c.shares_rejected_by_reason,
                share_work_sum: c.share_work_sum,
                last_share_sequence_number: c.last_share_sequence_number,
                best_diff: c.best_diff,
                last_batch_accepted: c.last_batch_accepted,
                last_batch_work_sum: c.last_batch_work_sum,
                share_batch_size: c.share_batch_size,
                blocks_found: c.blocks_found,
            }),
        }
    }
    let mut info = Sv2ClientInfo::new(set.client_id, extended, standard);
    info.client_kind = Sv2ClientKind::from_setup_connection(&set.vendor, "");
    info
}

impl Sv2ClientsMonitoring for PoolMonitoring {
    fn get_sv2_clients(&self) -> Vec<Sv2ClientInfo> {
        shown(self.registry.connections(), self.max_clients)
            .iter()
            .map(|set| client_info(&set.lock().unwrap_or_else(|p| p.into_inner())))
            .collect()
    }

    /// Counted from the channels themselves: the default builds every client's full view a
    /// second time per refresh (with thousands of miners, most of an idle pool's CPU).
    fn get_sv2_clients_summary(&self) -> Sv2ClientsSummary {
        let connections = self.registry.connections();
        let (mut extended, mut standard, mut hashrate) = (0, 0, 0.0f32);
        for set in &connections {
            let set = set.lock().unwrap_or_else(|p| p.into_inner());
            for entry in set.channels().values() {
                match entry.kind {
                    ChannelKind::Standard(_) => standard += 1,
                    ChannelKind::Extended(_) => extended += 1,
                }
                hashrate += entry.channel().nominal_hashrate();
            }
        }
        Sv2ClientsSummary {
            total_clients: connections.len(),
            total_channels: extended + standard,
            extended_channels: extended,
            standard_channels: standard,
            total_hashrate: hashrate,
        }
    }
}
