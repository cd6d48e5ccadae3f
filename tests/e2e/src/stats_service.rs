//! Stats services (`stats-pool`, `stats-proxy`) in-process, and reporting to them.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{loopback_any_port, public_key, secret_key};

/// A stats service (`stats-pool` or `stats-proxy`) in-process on free ports, SQLite in `dir`,
/// sampling every second; the SRI test key is its authority and the one reporter key it takes.
pub async fn start_stats(
    dir: &std::path::Path,
    role: hashpool_stats::Role,
    shutdown: CancellationToken,
) -> anyhow::Result<hashpool_stats::RunningStats> {
    let config = hashpool_stats::StatsServiceConfig {
        service: match role {
            hashpool_stats::Role::Pool => "stats-pool",
            hashpool_stats::Role::Translator => "stats-proxy",
        },
        ingest_address: loopback_any_port(),
        http_address: loopback_any_port(),
        ingest: hashpool_stats::ingest::IngestConfig {
            authority_public_key: public_key(),
            authority_secret_key: secret_key(),
            cert_validity_secs: 3600,
            role,
            reporter_keys: vec![public_key().into_bytes()],
            max_report_age_secs: 86_400,
        },
        database: dir.join("stats.sqlite").display().to_string(),
        sample_interval: Duration::from_secs(1),
        hashrate_window: Duration::from_secs(30),
        retention: Duration::from_secs(86_400),
    };
    Ok(hashpool_stats::start(config, shutdown).await?)
}

/// How a role reports to a stats service started by [`start_stats`].
pub fn stats_reporter(
    stats: &hashpool_stats::RunningStats,
    role: hashpool_stats::Role,
    name: &str,
) -> hashpool_stats::ReporterConfig {
    hashpool_stats::ReporterConfig {
        address: stats.ingest_address.into(),
        service_public_key: public_key(),
        secret_key: secret_key(),
        role,
        name: name.into(),
        buffer: 1024,
    }
}

/// GET a stats service's JSON API.
pub async fn stats_get(
    stats: &hashpool_stats::RunningStats,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("http://{}{path}", stats.http_address))
        .await?
        .error_for_status()?
        .json()
        .await?)
}
