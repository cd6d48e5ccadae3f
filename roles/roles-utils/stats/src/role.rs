//! What `stats-pool` and `stats-proxy` share: all of them but the side they serve. Their command
//! line ([`Args`], each with its own name and default paths), their own config file
//! (`config/stats-pool.config.toml`, `config/stats-proxy.config.toml`), how it combines with the
//! `[stats]` section of their side's shared topology, and the run loop ([`main`]).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{CommandFactory, FromArgMatches};
use hashpool_config::{PoolGlobalConfig, ProxyGlobalConfig, StatsTopology};
use serde::Deserialize;
use stratum_apps::key_utils::Secp256k1SecretKey;

use crate::{ingest::IngestConfig, protocol::Role, service::StatsServiceConfig};

/// The role's own file.
#[derive(Debug, Clone, Deserialize)]
pub struct StatsRoleConfig {
    pub stats: StatsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatsSettings {
    /// Secret half of the service's authority key (its public half is in the shared config).
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    /// A SQLite file path (created if missing), or a `postgres://` URL.
    pub database: String,
    /// A hashrate sample of every channel / miner this often.
    pub sample_interval_secs: u64,
    /// Hashrate is the work accepted over this window.
    pub hashrate_window_secs: u64,
    /// Hashrate samples and work rows are kept this long; blocks and issuance for good.
    pub retention_days: f64,
}

impl StatsRoleConfig {
    /// Combines the role's file with its side's topology; fails naming the key.
    pub fn run_config(
        &self,
        service: &'static str,
        role: Role,
        topology: &StatsTopology,
    ) -> Result<StatsServiceConfig, String> {
        let s = &self.stats;
        if s.sample_interval_secs == 0 {
            return Err("`stats.sample_interval_secs` must be at least 1".into());
        }
        if s.hashrate_window_secs < s.sample_interval_secs {
            return Err(
                "`stats.hashrate_window_secs` must be at least `stats.sample_interval_secs`".into(),
            );
        }
        if !(s.retention_days.is_finite() && s.retention_days > 0.0) {
            return Err("`stats.retention_days` must be a positive number of days".into());
        }
        let derived: stratum_apps::key_utils::Secp256k1PublicKey = s.authority_secret_key.into();
        if derived.into_bytes() != topology.authority_public_key.into_bytes() {
            return Err(
                "`stats.authority_secret_key` is not the secret half of the shared config's \
                 `stats.authority_public_key`"
                    .into(),
            );
        }
        Ok(StatsServiceConfig {
            service,
            ingest_address: topology.ingest_address,
            http_address: topology.http_address,
            ingest: IngestConfig {
                authority_public_key: topology.authority_public_key,
                authority_secret_key: s.authority_secret_key,
                cert_validity_secs: s.cert_validity_secs,
                role,
                reporter_keys: topology
                    .reporter_public_keys
                    .iter()
                    .map(|k| k.into_bytes())
                    .collect(),
                max_report_age_secs: (s.retention_days * 86_400.0) as i64,
            },
            database: s.database.clone(),
            sample_interval: Duration::from_secs(s.sample_interval_secs),
            hashrate_window: Duration::from_secs(s.hashrate_window_secs),
            retention: Duration::from_secs_f64(s.retention_days * 86_400.0),
        })
    }
}

/// The stats service of one side, loaded from its own file and the side's shared topology
/// (`G`: the pool's or the proxy's).
pub fn load<G: serde::de::DeserializeOwned>(
    service: &'static str,
    role: Role,
    config: &Path,
    global_config: &Path,
    stats_of: impl FnOnce(&G) -> &StatsTopology,
) -> Result<StatsServiceConfig, String> {
    let global: G = hashpool_config::load(global_config).map_err(|e| e.to_string())?;
    let own: StatsRoleConfig = hashpool_config::load(config).map_err(|e| e.to_string())?;
    own.run_config(service, role, stats_of(&global))
        .map_err(|e| format!("config {}: {e}", config.display()))
}

/// How the two binaries differ: the side whose reports they take ([`Role`]) picks the rest.
struct Binary {
    service: &'static str,
    about: &'static str,
    config: &'static str,
    global_config: &'static str,
}

const fn binary(role: Role) -> Binary {
    match role {
        Role::Pool => Binary {
            service: "stats-pool",
            about: "Hashpool stats-pool: keeps what the pool reports and serves it over HTTP",
            config: "config/stats-pool.config.toml",
            global_config: "config/shared/pool.toml",
        },
        Role::Translator => Binary {
            service: "stats-proxy",
            about:
                "Hashpool stats-proxy: keeps what the translator reports and serves it over HTTP",
            config: "config/stats-proxy.config.toml",
            global_config: "config/shared/proxy.toml",
        },
    }
}

/// The command line of both stats binaries; [`Args::command_for`] adds each one's name,
/// description and default paths.
#[derive(clap::Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Shared topology (TOML).
    #[arg(short, long)]
    pub global_config: PathBuf,
    #[command(flatten)]
    pub log: hashpool_role::LogArgs,
}

impl Args {
    /// The command line of the binary serving `role`.
    pub fn command_for(role: Role) -> clap::Command {
        let binary = binary(role);
        // The derive makes a path with no default required; each binary's default lifts that.
        Self::command()
            .name(binary.service)
            .about(binary.about)
            .mut_arg("config", |a| a.default_value(binary.config).required(false))
            .mut_arg("global_config", |a| {
                a.default_value(binary.global_config).required(false)
            })
    }

    /// The process's arguments, as the binary serving `role` takes them (exits on `--help` or
    /// a bad flag, as `clap::Parser::parse` does).
    pub fn parse_for(role: Role) -> Self {
        let mut command = Self::command_for(role);
        let matches = command.get_matches_mut();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }

    /// The service's run config from both files.
    pub fn load(&self, role: Role) -> Result<StatsServiceConfig, String> {
        let (service, config, global) = (binary(role).service, &self.config, &self.global_config);
        match role {
            Role::Pool => load(service, role, config, global, |g: &PoolGlobalConfig| {
                &g.stats
            }),
            Role::Translator => load(service, role, config, global, |g: &ProxyGlobalConfig| {
                &g.stats
            }),
        }
    }
}

/// The stats binary serving `role`: parses the command line and runs until SIGINT/SIGTERM.
pub async fn main(role: Role) -> anyhow::Result<()> {
    let args = Args::parse_for(role);
    run(binary(role).service, &args.log, || args.load(role)).await
}

/// Runs a stats service binary (`stats-pool`, `stats-proxy`) until SIGINT/SIGTERM.
pub async fn run(
    service: &'static str,
    log: &hashpool_role::LogArgs,
    load: impl FnOnce() -> Result<StatsServiceConfig, String>,
) -> anyhow::Result<()> {
    hashpool_role::run(service, log, |shutdown| async move {
        let config = load().map_err(anyhow::Error::msg)?;
        let (ingest, http, database) = (
            config.ingest_address,
            config.http_address,
            config.database.clone(),
        );
        let running = crate::service::start(config, shutdown).await.map_err(|e| {
            anyhow::anyhow!(
                "database {}: {e}",
                crate::service::redact(&database)
            )
        })?;
        tracing::info!(%ingest, %http, "reporters connect to the ingest address; the API is on /api/v1/..., metrics on /metrics");
        Ok(running.task)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The home translator's stats-proxy (config/profiles/home.toml) loads from its files.
    #[test]
    fn the_home_stats_proxy_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
        let args = Args {
            config: root.join("config/home/translator/stats-proxy.config.toml"),
            global_config: root.join("config/home/translator/proxy.toml"),
            log: Default::default(),
        };
        let config = args.load(Role::Translator).unwrap();
        assert_eq!(config.service, "stats-proxy");
        assert!(config.http_address.ip().is_loopback());
        assert!(config.ingest_address.ip().is_loopback());
    }
}
