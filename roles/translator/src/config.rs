//! The translator's configuration: its own file (`config/translator.config.toml`) plus the
//! miner-side topology (`config/shared/proxy.toml`).

use std::path::PathBuf;

use hashpool_config::ProxyGlobalConfig;
use serde::Deserialize;

/// `config/translator.config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct TranslatorConfig {
    pub translator: TranslatorSettings,
    pub vardiff: VardiffConfig,
    pub wallet: WalletSettings,
    /// Reporting to stats-proxy: on when the section is there.
    #[serde(default)]
    pub stats_reporter: Option<crate::stats_report::StatsReporterSettings>,
}

/// `[vardiff]`: each SV1 miner's difficulty.
#[derive(Debug, Clone, Deserialize)]
pub struct VardiffConfig {
    /// H/s a new miner is assumed to have until its shares are measured.
    pub initial_hashrate: f32,
    /// The share rate each miner's difficulty aims at.
    pub shares_per_minute: f32,
    /// How often each miner's difficulty is reconsidered.
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TranslatorSettings {
    /// User identity of the translator's channel on the pool.
    pub user_identity: String,
    /// Hashrate announced for the channel (H/s); the pool's vardiff corrects it.
    pub nominal_hashrate: f32,
    /// `aggregated` (one channel for every miner), `per_miner` (one channel each) or `per_key`
    /// (public mode: the username is the miner's key, one channel per key locked to it).
    #[serde(default)]
    pub channel_mode: crate::ChannelMode,
    /// Public mode only: the key (66 hex characters) whose channel miners whose username holds
    /// no key mine on. Absent: such miners are refused at `mining.authorize`.
    #[serde(default)]
    pub default_key: Option<String>,
    /// Pools tried, in order, when the shared config's upstream does not answer.
    #[serde(default)]
    pub fallback_upstreams: Vec<FallbackUpstream>,
    /// No SV1 miner is given an easier difficulty, nor has a share under it accepted.
    #[serde(default = "default_min_share_difficulty")]
    pub min_share_difficulty: f64,
    /// Shares remembered per miner and job (duplicate detection); past it the job's further
    /// shares are refused.
    #[serde(default = "default_max_shares_per_job")]
    pub max_shares_per_job: usize,
    /// SV1 connections held at once, in all and from one address.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Public mode: distinct keys mined for at once from one address.
    #[serde(default = "default_max_keys_per_address")]
    pub max_keys_per_address: usize,
    /// Seconds a connection has to authorize a worker.
    #[serde(default = "default_authorize_timeout_secs")]
    pub authorize_timeout_secs: u64,
    /// Seconds of silence after which a connection is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Seconds a write to a miner may take.
    #[serde(default = "default_write_timeout_secs")]
    pub write_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    crate::Sv1Limits::DEFAULT_MAX_CONNECTIONS
}

fn default_max_connections_per_address() -> usize {
    crate::Sv1Limits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
}

fn default_max_keys_per_address() -> usize {
    crate::Sv1Limits::DEFAULT_MAX_KEYS_PER_ADDRESS
}

fn default_authorize_timeout_secs() -> u64 {
    crate::Sv1Limits::DEFAULT_AUTHORIZE_TIMEOUT.as_secs()
}

fn default_idle_timeout_secs() -> u64 {
    crate::Sv1Limits::DEFAULT_IDLE_TIMEOUT.as_secs()
}

fn default_write_timeout_secs() -> u64 {
    crate::Sv1Limits::DEFAULT_WRITE_TIMEOUT.as_secs()
}

fn default_min_share_difficulty() -> f64 {
    crate::Sv1Limits::DEFAULT_MIN_SHARE_DIFFICULTY
}

fn default_max_shares_per_job() -> usize {
    crate::Sv1Limits::DEFAULT_MAX_SHARES_PER_JOB
}

#[derive(Debug, Clone, Deserialize)]
pub struct FallbackUpstream {
    /// `host:port`: a host name (resolved at each connect) or an IP address.
    pub address: hashpool_config::HostPort,
    pub authority_public_key: stratum_apps::key_utils::Secp256k1PublicKey,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSettings {
    /// Earn ehash: without a wallet the translator mines without a locking key (the pool
    /// then needs a default key, or refuses the channel).
    pub enabled: bool,
    pub unit: String,
    pub database_path: PathBuf,
    /// The mnemonic file, created (mode 0600) on first run if missing.
    pub mnemonic_path: PathBuf,
    /// How often missed quotes are looked up at the mint.
    pub recovery_interval_secs: u64,
    /// ehash in each faucet token.
    pub faucet_amount: u64,
    /// One faucet token per client address per this many seconds.
    pub faucet_interval_secs: u64,
    /// Bearer token of the wallet API's spending routes (created 0600 on first run); by default
    /// `wallet-api-token` beside the wallet's database. web-proxy reads the same file.
    #[serde(default)]
    pub api_token_path: Option<PathBuf>,
}

impl TranslatorConfig {
    /// The run config (without the wallet, which [`crate::role`] opens) from both files.
    pub fn run_config(
        &self,
        global: &ProxyGlobalConfig,
    ) -> Result<crate::TranslatorRunConfig, String> {
        if self.translator.user_identity.is_empty() {
            return Err("`translator.user_identity` is empty".into());
        }
        if !(self.translator.nominal_hashrate.is_finite() && self.translator.nominal_hashrate > 0.0)
        {
            return Err("`translator.nominal_hashrate` must be a positive number".into());
        }
        let v = &self.vardiff;
        if !(v.initial_hashrate.is_finite() && v.initial_hashrate > 0.0) {
            return Err("`vardiff.initial_hashrate` must be a positive number".into());
        }
        if !(v.shares_per_minute.is_finite() && v.shares_per_minute > 0.0) {
            return Err("`vardiff.shares_per_minute` must be a positive number".into());
        }
        if v.interval_secs == 0 {
            return Err("`vardiff.interval_secs` must be at least 1".into());
        }
        self.sv1_limits().check().map_err(|e| e.to_string())?;
        let public = self.translator.channel_mode == crate::ChannelMode::PerKey;
        if public && self.wallet.enabled {
            return Err(
                "a public translator (`translator.channel_mode = \"per_key\"`) holds no \
                        wallet: set `wallet.enabled = false` (each miner claims its own ehash)"
                    .into(),
            );
        }
        let default_key = match &self.translator.default_key {
            None => None,
            Some(_) if !public => {
                return Err(
                    "`translator.default_key` is for `channel_mode = \"per_key\"` only".into(),
                )
            }
            Some(hex) => Some(ext_mint_quote::LockingKey::from_hex(hex).map_err(|e| {
                format!("`translator.default_key` is not a compressed public key in hex: {e}")
            })?),
        };
        Ok(crate::TranslatorRunConfig {
            downstream_address: global.translator.downstream_address,
            upstreams: std::iter::once(crate::UpstreamEndpoint {
                address: global.translator.upstream_address.clone(),
                authority_public_key: global.translator.upstream_authority_public_key,
            })
            .chain(
                self.translator
                    .fallback_upstreams
                    .iter()
                    .map(|f| crate::UpstreamEndpoint {
                        address: f.address.clone(),
                        authority_public_key: f.authority_public_key,
                    }),
            )
            .collect(),
            user_identity: self.translator.user_identity.clone(),
            nominal_hashrate: self.translator.nominal_hashrate,
            locking_key: None,
            channel_mode: self.translator.channel_mode,
            default_key,
            vardiff: crate::VardiffSettings {
                initial_hashrate: v.initial_hashrate,
                shares_per_minute: v.shares_per_minute,
                interval: std::time::Duration::from_secs(v.interval_secs),
            },
        })
    }
}

impl TranslatorConfig {
    /// What any one SV1 miner may make the translator do (checked by [`Self::run_config`]).
    pub fn sv1_limits(&self) -> crate::Sv1Limits {
        let t = &self.translator;
        crate::Sv1Limits {
            min_share_difficulty: t.min_share_difficulty,
            max_shares_per_job: t.max_shares_per_job,
            max_connections: t.max_connections,
            max_connections_per_address: t.max_connections_per_address,
            max_keys_per_address: t.max_keys_per_address,
            authorize_timeout: std::time::Duration::from_secs(t.authorize_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(t.idle_timeout_secs),
            write_timeout: std::time::Duration::from_secs(t.write_timeout_secs),
        }
    }

    /// Where and as whom stats are reported, if they are.
    pub fn stats_reporting(
        &self,
        global: &ProxyGlobalConfig,
    ) -> Option<crate::stats_report::StatsReporting> {
        self.stats_reporter
            .as_ref()
            .map(|s| crate::stats_report::StatsReporting {
                reporter: hashpool_stats::ReporterConfig {
                    address: s
                        .address
                        .clone()
                        .unwrap_or_else(|| global.stats.ingest_address.into()),
                    service_public_key: global.stats.authority_public_key,
                    secret_key: s.secret_key,
                    role: hashpool_stats::Role::Translator,
                    name: self.translator.user_identity.clone(),
                    buffer: s.buffer.max(1),
                },
                interval: std::time::Duration::from_secs(s.interval_secs.max(1)),
                upstream: global.translator.upstream_address.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn stats_proxy_is_dialed_by_name_when_the_reporter_names_it() {
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let own: TranslatorConfig =
            hashpool_config::load_with_env(&repo("config/translator.config.toml"), vec![]).unwrap();
        let reporting = own.stats_reporting(&global).unwrap();
        assert_eq!(reporting.reporter.address, global.stats.ingest_address);
        let own: TranslatorConfig = hashpool_config::load_with_env(
            &repo("config/translator.config.toml"),
            vec![(
                "HASHPOOL__STATS_REPORTER__ADDRESS".to_string(),
                "stats.example.org:34290".to_string(),
            )],
        )
        .unwrap();
        let reporting = own.stats_reporting(&global).unwrap();
        assert_eq!(
            reporting.reporter.address.to_string(),
            "stats.example.org:34290"
        );
        assert!(reporting.reporter.address.is_name());
    }

    #[test]
    fn shipped_local_config_loads() {
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let own: TranslatorConfig =
            hashpool_config::load_with_env(&repo("config/translator.config.toml"), vec![]).unwrap();
        let run = own.run_config(&global).unwrap();
        assert_eq!(run.upstreams[0].address, global.translator.upstream_address);
        assert!(own.wallet.enabled);
        assert_eq!(run.channel_mode, crate::ChannelMode::Aggregated);
        // Local CPU miners (20-50 kH/s at 10 shares a minute: difficulty ~3e-5 and up) stay
        // above the local floor.
        let limits = own.sv1_limits();
        assert!(limits.check().is_ok());
        let slowest_local_miner =
            20_000.0 * 60.0 / run.vardiff.shares_per_minute as f64 / 2f64.powi(32);
        assert!(limits.min_share_difficulty < slowest_local_miner / 2.0);
    }

    #[test]
    fn upstreams_may_be_host_names() {
        let file = |fallback: &str| {
            format!(
                "[translator]\nuser_identity = \"t\"\nnominal_hashrate = 1.0\n\
                 [[translator.fallback_upstreams]]\naddress = \"{fallback}\"\n\
                 authority_public_key = \"9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72\"\n\
                 [vardiff]\ninitial_hashrate = 1000.0\nshares_per_minute = 10.0\ninterval_secs = 20\n\
                 [wallet]\nenabled = false\nunit = \"hash\"\ndatabase_path = \"w\"\nmnemonic_path = \"m\"\n\
                 recovery_interval_secs = 60\nfaucet_amount = 1\nfaucet_interval_secs = 1\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let load = |text: String| {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            hashpool_config::load_with_env::<TranslatorConfig, _>(&path, vec![])
        };
        let env = vec![(
            "HASHPOOL__TRANSLATOR__UPSTREAM_ADDRESS".to_string(),
            "localhost:34254".to_string(),
        )];
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), env).unwrap();
        let own = load(file("pool2.example.org:3333")).unwrap();
        let run = own.run_config(&global).unwrap();
        let upstreams: Vec<String> = run
            .upstreams
            .iter()
            .map(|u| u.address.to_string())
            .collect();
        assert_eq!(upstreams, ["localhost:34254", "pool2.example.org:3333"]);
        let err = load(file("pool2.example.org")).unwrap_err().to_string();
        assert!(
            err.contains("translator.fallback_upstreams[0].address") && err.contains("no port"),
            "{err}"
        );
    }

    /// Rigs at home through one's own translator (docs/home-miner.md): the pool by name, the
    /// wallet on (the ehash is the home miner's), stats reported locally.
    #[test]
    fn shipped_home_translator_config_loads() {
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/home/translator/proxy.toml"), vec![])
                .unwrap();
        let own: TranslatorConfig = hashpool_config::load_with_env(
            &repo("config/home/translator/translator.config.toml"),
            vec![],
        )
        .unwrap();
        let run = own.run_config(&global).unwrap();
        assert!(run.upstreams[0].address.is_name());
        assert_eq!(
            run.upstreams[0].address.to_string(),
            "pool.example.org:34254"
        );
        assert!(own.wallet.enabled);
        assert_eq!(run.channel_mode, crate::ChannelMode::Aggregated);
        assert!(own.sv1_limits().check().is_ok());
        let reporting = own
            .stats_reporting(&global)
            .expect("reports to stats-proxy");
        assert_eq!(
            reporting.reporter.address.to_string(),
            global.stats.ingest_address.to_string()
        );
    }

    #[test]
    fn shipped_prod_config_has_limits_that_work() {
        // Its secret comes from the environment at install (systemd), as here.
        let secret = (
            "HASHPOOL__STATS_REPORTER__SECRET_KEY".to_string(),
            "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n".to_string(),
        );
        let own: TranslatorConfig = hashpool_config::load_with_env(
            &repo("config/prod/translator.config.toml"),
            vec![secret],
        )
        .unwrap();
        let limits = own.sv1_limits();
        assert!(limits.check().is_ok());
        assert!(limits.min_share_difficulty > crate::Sv1Limits::DEFAULT_MIN_SHARE_DIFFICULTY);
    }

    #[test]
    fn channel_mode_and_vardiff_are_read_and_checked() {
        let file = |mode: &str, spm: &str| {
            format!(
                "[translator]\nuser_identity = \"t\"\nnominal_hashrate = 1.0\nchannel_mode = \"{mode}\"\n\
                 [vardiff]\ninitial_hashrate = 1000.0\nshares_per_minute = {spm}\ninterval_secs = 20\n\
                 [wallet]\nenabled = false\nunit = \"hash\"\ndatabase_path = \"w\"\nmnemonic_path = \"m\"\n\
                 recovery_interval_secs = 60\nfaucet_amount = 1\nfaucet_interval_secs = 1\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let load = |text: String| {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            hashpool_config::load_with_env::<TranslatorConfig, _>(&path, vec![])
        };
        let own = load(file("per_miner", "6.0")).unwrap();
        let run = own.run_config(&global).unwrap();
        assert_eq!(run.channel_mode, crate::ChannelMode::PerMiner);
        assert_eq!(run.vardiff.shares_per_minute, 6.0);
        let err = load(file("per_rig", "6.0")).unwrap_err().to_string();
        assert!(err.contains("channel_mode"), "{err}");
        let zero = load(file("aggregated", "0.0")).unwrap();
        let err = zero.run_config(&global).unwrap_err();
        assert!(err.contains("vardiff.shares_per_minute"), "{err}");
    }

    #[test]
    fn sv1_limits_default_when_absent_and_are_checked() {
        let file = |extra: &str| {
            format!(
                "[translator]\nuser_identity = \"t\"\nnominal_hashrate = 1.0\n{extra}\n\
                 [vardiff]\ninitial_hashrate = 1000.0\nshares_per_minute = 10.0\ninterval_secs = 20\n\
                 [wallet]\nenabled = false\nunit = \"hash\"\ndatabase_path = \"w\"\nmnemonic_path = \"m\"\n\
                 recovery_interval_secs = 60\nfaucet_amount = 1\nfaucet_interval_secs = 1\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let load = |text: String| {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            hashpool_config::load_with_env::<TranslatorConfig, _>(&path, vec![]).unwrap()
        };
        assert_eq!(load(file("")).sv1_limits(), crate::Sv1Limits::default());
        let own = load(file("min_share_difficulty = 0.5\nmax_shares_per_job = 10"));
        assert_eq!(
            own.sv1_limits(),
            crate::Sv1Limits {
                min_share_difficulty: 0.5,
                max_shares_per_job: 10,
                ..Default::default()
            }
        );
        assert!(own.run_config(&global).is_ok());
        for bad in [
            "min_share_difficulty = 0.0",
            "min_share_difficulty = -1.0",
            "min_share_difficulty = nan",
            "min_share_difficulty = inf",
        ] {
            let err = load(file(bad)).run_config(&global).unwrap_err();
            assert!(err.contains("min_share_difficulty"), "{bad}: {err}");
        }
        let err = load(file("max_shares_per_job = 0"))
            .run_config(&global)
            .unwrap_err();
        assert!(err.contains("max_shares_per_job"), "{err}");
        for (bad, named) in [
            ("max_connections = 0", "max_connections"),
            (
                "max_connections_per_address = 0",
                "max_connections_per_address",
            ),
            ("authorize_timeout_secs = 0", "authorize_timeout_secs"),
            ("idle_timeout_secs = 0", "idle_timeout_secs"),
            ("write_timeout_secs = 0", "write_timeout_secs"),
        ] {
            let err = load(file(bad)).run_config(&global).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        let own = load(file(
            "max_connections_per_address = 3\nauthorize_timeout_secs = 5",
        ));
        assert_eq!(own.sv1_limits().max_connections_per_address, 3);
        assert_eq!(
            own.sv1_limits().authorize_timeout,
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn public_mode_holds_no_wallet_and_takes_a_default_key_only_explicitly() {
        let file = |mode: &str, extra: &str, wallet: bool| {
            format!(
                "[translator]\nuser_identity = \"t\"\nnominal_hashrate = 1.0\nchannel_mode = \"{mode}\"\n{extra}\n\
                 [vardiff]\ninitial_hashrate = 1000.0\nshares_per_minute = 10.0\ninterval_secs = 20\n\
                 [wallet]\nenabled = {wallet}\nunit = \"hash\"\ndatabase_path = \"w\"\nmnemonic_path = \"m\"\n\
                 recovery_interval_secs = 60\nfaucet_amount = 1\nfaucet_interval_secs = 1\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let run = |text: String| {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            hashpool_config::load_with_env::<TranslatorConfig, _>(&path, vec![])
                .unwrap()
                .run_config(&global)
        };
        let public = run(file("per_key", "", false)).unwrap();
        assert_eq!(public.channel_mode, crate::ChannelMode::PerKey);
        assert_eq!(public.default_key, None);
        let key = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        let with_default =
            run(file("per_key", &format!("default_key = \"{key}\""), false)).unwrap();
        assert_eq!(
            with_default.default_key.map(|k| k.to_hex()).as_deref(),
            Some(key)
        );

        let err = run(file("per_key", "", true)).unwrap_err();
        assert!(err.contains("wallet.enabled = false"), "{err}");
        let err = run(file("per_key", "default_key = \"02abc\"", false)).unwrap_err();
        assert!(err.contains("translator.default_key"), "{err}");
        let err = run(file(
            "aggregated",
            &format!("default_key = \"{key}\""),
            true,
        ))
        .unwrap_err();
        assert!(err.contains("per_key"), "{err}");
    }
}
