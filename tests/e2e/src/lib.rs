//! Harness for end-to-end tests: starts the template provider, the pool and miners in-process
//! on 127.0.0.1 with ports the OS picks, and reads their state the way an operator would
//! (monitoring and status HTTP APIs).

pub mod fake_mint;
pub mod grind;
pub mod process;
pub mod raw_client;

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use pool::{config::PoolSettings, config::TemplateProviderSettings, PoolRunConfig, RunningPool};
use stratum_apps::{
    config_helpers::CoinbaseRewardScript,
    key_utils::{Secp256k1PublicKey, Secp256k1SecretKey},
    monitoring::{
        ExtendedChannelInfo, StandardChannelInfo, Sv2ClientChannelsResponse, Sv2ClientsResponse,
    },
};
use template_provider::{
    config::{ChainConfig, MempoolConfig, ServerConfig},
    http::StatusResponse,
    RunningProvider, TemplateProviderConfig,
};
use tokio_util::sync::CancellationToken;

/// The well-known SRI test authority keypair (local and test use only).
pub const AUTHORITY_PUBLIC_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
pub const AUTHORITY_SECRET_KEY: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
/// Regtest proof-of-work limit.
pub const REGTEST_NBITS: u32 = 0x207f_ffff;

pub fn public_key() -> Secp256k1PublicKey {
    AUTHORITY_PUBLIC_KEY.parse().expect("valid test key")
}

pub fn secret_key() -> Secp256k1SecretKey {
    AUTHORITY_SECRET_KEY.parse().expect("valid test key")
}

/// Logs to the test output, once per test binary; `RUST_LOG` selects levels.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A loopback address with a port that was free a moment ago (for servers whose API takes an
/// address rather than a listener).
pub fn free_address() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address")
}

/// Where `cargo build` put the workspace's binaries: two levels above the running test binary
/// (`target/debug/deps/<test>`). Tests that run the binaries themselves need
/// `cargo build --workspace --bins` first (scripts/test.sh does it).
pub fn workspace_bin_dir(needed: &[&str]) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf();
    for bin in needed {
        assert!(
            dir.join(bin).is_file(),
            "{} missing: run `cargo build --workspace --bins` before the tests (scripts/test.sh does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// `n` free loopback ports below the kernel's ephemeral range, for tests that stop and start
/// servers on the same ports: no other test's `127.0.0.1:0` socket (ephemeral) can take one of
/// them in between. The start is spread by the process id, so parallel runs rarely meet.
pub fn ports_outside_ephemeral_range(n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let first = 10_000u16;
    let span = low.saturating_sub(first).max(1);
    // Each call in this process continues where the last ended (tests run in parallel).
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut candidate = next.unwrap_or(first + (std::process::id() % u32::from(span)) as u16);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        let free = std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok();
        if free {
            ports.push(candidate);
        }
        candidate = if candidate + 1 >= low {
            first
        } else {
            candidate + 1
        };
        if ports.len() == n {
            *next = Some(candidate);
            return ports;
        }
    }
    panic!("fewer than {n} free ports between {first} and {low}");
}

pub fn loopback_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

pub struct TestProvider {
    pub running: RunningProvider,
    pub shutdown: CancellationToken,
}

impl TestProvider {
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        nbits: u32,
        synthetic_tx_interval_ms: u64,
    ) -> anyhow::Result<Self> {
        let config = TemplateProviderConfig {
            template_provider: ServerConfig {
                listen_address: listen,
                http_address: loopback_any_port(),
                authority_public_key: public_key(),
                authority_secret_key: secret_key(),
                cert_validity_secs: 3600,
            },
            chain: ChainConfig {
                data_dir: data_dir.to_path_buf(),
                nbits,
            },
            mempool: MempoolConfig {
                synthetic_tx_interval_ms,
                synthetic_tx_fee_sats: 1_000,
                max_transactions: 20,
            },
        };
        let shutdown = CancellationToken::new();
        let running = template_provider::start(config, shutdown.clone()).await?;
        Ok(Self { running, shutdown })
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        let url = format!("http://{}/status", self.running.http_address);
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// Stops the provider and waits until every one of its tasks has ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("template provider did not stop")??;
        Ok(())
    }
}

pub struct TestPool {
    pub running: RunningPool,
    pub monitoring: SocketAddr,
    pub shutdown: CancellationToken,
    pub ledger_path: std::path::PathBuf,
}

pub struct PoolOptions {
    pub shares_per_minute: f32,
    pub share_batch_size: usize,
    /// A batch not yet full is acknowledged after this long.
    pub share_ack_interval_ms: u64,
    pub vardiff_interval_secs: u64,
    pub mint_quote_extension: bool,
    pub default_locking_key: Option<ext_mint_quote::LockingKey>,
    /// Where the accrual ledger lives; the caller keeps the directory.
    pub ledger_path: std::path::PathBuf,
    /// Difficulty-1 shares of work per ehash.
    pub unit_work: f64,
    pub batch_interval_ms: u64,
    pub retry_interval_ms: u64,
    /// Where miners connect (tests that restart the pool keep it).
    pub listen_address: SocketAddr,
    /// Reporting to a stats service.
    pub stats_reporting: Option<pool::stats_report::StatsReporting>,
    /// The jd-server whose job tokens custom jobs must carry.
    pub jd_server_public_key: Option<Secp256k1PublicKey>,
    /// What each miner may cost the pool.
    pub limits: pool::config::MinerLimits,
}

/// The pool's limits as tests use them: the defaults, with a share difficulty floor low enough
/// for CPU miners (a share still costs work: at 1e-9 about four hashes).
pub fn test_limits() -> pool::config::MinerLimits {
    pool::config::MinerLimits {
        min_share_difficulty: 1e-9,
        ..Default::default()
    }
}

/// A fresh ledger file under the system temp directory, unique per call. Tests that care
/// where it is (restarts) pass their own path.
fn default_ledger_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "hashpool-e2e-ledger-{}-{}.sqlite",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            shares_per_minute: 6.0,
            share_batch_size: 1,
            share_ack_interval_ms: 1_000,
            vardiff_interval_secs: 1,
            mint_quote_extension: true,
            default_locking_key: None,
            ledger_path: default_ledger_path(),
            unit_work: 1e-6,
            batch_interval_ms: 300,
            retry_interval_ms: 1_000,
            listen_address: loopback_any_port(),
            stats_reporting: None,
            jd_server_public_key: None,
            limits: test_limits(),
        }
    }
}

impl TestPool {
    pub async fn start(provider: SocketAddr, options: PoolOptions) -> anyhow::Result<Self> {
        let monitoring = free_address();
        let config = PoolRunConfig {
            listen_address: options.listen_address,
            monitoring_address: monitoring,
            authority_public_key: public_key(),
            pool: PoolSettings {
                authority_secret_key: secret_key(),
                cert_validity_secs: 3600,
                coinbase_reward_script: CoinbaseRewardScript::from_descriptor(
                    "raw(00147a5ee1a1a4a5b35c3e0e2d4bd6c1a7bb17b3d7c1)",
                )
                .map_err(|e| anyhow::anyhow!("reward script: {e}"))?,
                pool_signature: "hashpool-test".into(),
                server_id: 7,
                shares_per_minute: options.shares_per_minute,
                share_batch_size: options.share_batch_size,
                share_ack_interval_ms: options.share_ack_interval_ms,
                vardiff_interval_secs: options.vardiff_interval_secs,
                max_channels_per_connection: 16,
                mint_quote_extension: options.mint_quote_extension,
                default_locking_key: options.default_locking_key,
                ledger_path: options.ledger_path.clone(),
                metrics_address: Some(loopback_any_port()),
            },
            template_provider: TemplateProviderSettings {
                address: provider,
                authority_public_key: Some(public_key()),
                reconnect_initial_ms: 100,
                reconnect_max_ms: 1_000,
            },
            quotes: pool::config::QuoteSettings {
                batch_interval_ms: options.batch_interval_ms,
                retry_interval_ms: options.retry_interval_ms,
            },
            mint_link_address: loopback_any_port(),
            // The test mint proves the SRI test key, like local runs.
            mint_public_key: public_key(),
            unit: "hash".into(),
            unit_work: hashpool_ehash::UnitWork::from_difficulty(options.unit_work)
                .map_err(|e| anyhow::anyhow!("unit work: {e}"))?,
            stats_reporting: options.stats_reporting.clone(),
            jd_server_public_key: options.jd_server_public_key,
            limits: options.limits,
        };
        let shutdown = CancellationToken::new();
        let running = pool::start(config, shutdown.clone()).await?;
        let pool = Self {
            running,
            monitoring,
            shutdown,
            ledger_path: options.ledger_path,
        };
        wait_until(
            Duration::from_secs(20),
            "pool monitoring API to answer",
            || async { pool.clients().await.is_ok() },
        )
        .await?;
        Ok(pool)
    }

    pub fn address(&self) -> SocketAddr {
        self.running.listen_address
    }

    pub async fn clients(&self) -> anyhow::Result<Sv2ClientsResponse> {
        let url = format!("http://{}/api/v1/clients", self.monitoring);
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// Every standard channel the pool serves, as its monitoring API reports them.
    pub async fn standard_channels(&self) -> anyhow::Result<Vec<StandardChannelInfo>> {
        let mut out = Vec::new();
        for client in self.clients().await?.items {
            let url = format!(
                "http://{}/api/v1/clients/{}/channels",
                self.monitoring, client.client_id
            );
            let r: Sv2ClientChannelsResponse =
                reqwest::get(url).await?.error_for_status()?.json().await?;
            out.extend(r.standard_channels);
        }
        Ok(out)
    }

    /// Accepted shares over every channel, from the monitoring API.
    /// Every extended channel the pool serves, as its monitoring API reports them.
    pub async fn extended_channels(&self) -> anyhow::Result<Vec<ExtendedChannelInfo>> {
        let mut out = Vec::new();
        for client in self.clients().await?.items {
            let url = format!(
                "http://{}/api/v1/clients/{}/channels",
                self.monitoring, client.client_id
            );
            let r: Sv2ClientChannelsResponse =
                reqwest::get(url).await?.error_for_status()?.json().await?;
            out.extend(r.extended_channels);
        }
        Ok(out)
    }

    pub async fn shares_accepted(&self) -> u64 {
        self.standard_channels()
            .await
            .map(|cs| cs.iter().map(|c| c.shares_accepted as u64).sum())
            .unwrap_or(0)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("pool did not stop")??;
        Ok(())
    }
}

/// A miner's locking key, derived from `name` (distinct names, distinct keys).
pub fn test_key(name: &str) -> ext_mint_quote::LockingKey {
    use bitcoin::hashes::{sha256, Hash};
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let secret = bitcoin::secp256k1::SecretKey::from_slice(
        sha256::Hash::hash(name.as_bytes()).as_byte_array(),
    )
    .expect("a hash is a valid secret key with overwhelming probability");
    let public = bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &secret);
    ext_mint_quote::LockingKey::from_slice(&public.serialize()).expect("a valid point")
}

/// A miner that negotiates the mint-quote extension and locks its ehash to `test_key(user)`.
pub fn miner_options(
    pool: SocketAddr,
    user: &str,
    hashrate: f32,
    limit: bool,
) -> mining_device::MinerOptions {
    mining_device::MinerOptions {
        pool_address: pool,
        pool_authority_key: Some(public_key()),
        user_identity: user.to_string(),
        device_id: user.to_string(),
        threads: 1,
        nominal_hashrate: hashrate,
        limit_hashrate: limit,
        hash_pace: None,
        locking_key: Some(test_key(user)),
        minter: None,
    }
}

/// A translator in front of the test pool (aggregated mode), its miners' difficulty starting at
/// `initial_hashrate` and aiming at 120 shares a minute.
pub fn translator_config(
    pool: SocketAddr,
    user: &str,
    locking_key: Option<ext_mint_quote::LockingKey>,
    initial_hashrate: f32,
) -> translator::TranslatorRunConfig {
    translator::TranslatorRunConfig {
        downstream_address: loopback_any_port(),
        upstreams: vec![translator::UpstreamEndpoint {
            address: pool,
            authority_public_key: public_key(),
        }],
        user_identity: user.into(),
        nominal_hashrate: 60_000.0,
        locking_key,
        minter: None,
        channel_mode: translator::ChannelMode::Aggregated,
        vardiff: translator::VardiffSettings {
            initial_hashrate,
            shares_per_minute: 120.0,
            interval: Duration::from_secs(16),
        },
    }
}

/// Runs `promtool check metrics` on an exposition: `Err` if it does not parse (or promtool is
/// missing: `scripts/setup.sh --deps-only` installs it), else the lint problems promtool found.
pub fn promtool_check(exposition: &str) -> anyhow::Result<Vec<String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("promtool (Debian package prometheus): {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("promtool stdin"))?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Ok(Vec::new()),
        // 3: it parsed, with lint problems.
        Some(3) => Ok(said.lines().map(str::to_string).collect()),
        _ => anyhow::bail!("not valid Prometheus exposition: {said}"),
    }
}

/// The value of an unlabelled sample in an exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Polls `check` every 100 ms until it holds; fails after `timeout` naming what was awaited.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real mint (roles/mint) in-process, linked to a pool's mint link, its database under `dir`.
pub struct TestMint {
    pub running: mint::RunningMint,
    pub shutdown: CancellationToken,
}

pub fn mint_run_config(
    dir: &Path,
    mint_link: SocketAddr,
    http_address: SocketAddr,
) -> mint::MintRunConfig {
    mint::MintRunConfig {
        http_address,
        pool_address: mint_link,
        pool_authority_public_key: public_key(),
        secret_key: secret_key(),
        unit: "hash".into(),
        database_path: dir.join("mint.sqlite"),
        seed_path: dir.join("mint.seed"),
        name: "test mint".into(),
        description: "hashpool e2e".into(),
        max_concurrent_quotes: 4,
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(1_000),
        // Lookups are signed for `http://<bound address>`, the URL `TestMint::url` gives.
        public_url: None,
        other_urls: Vec::new(),
        monitoring_address: loopback_any_port(),
        lookup_nonce_capacity: mint::config::DEFAULT_LOOKUP_NONCE_CAPACITY,
    }
}

impl TestMint {
    pub async fn start(dir: &Path, mint_link: SocketAddr) -> anyhow::Result<Self> {
        Self::start_at(dir, mint_link, loopback_any_port()).await
    }

    pub async fn start_at(
        dir: &Path,
        mint_link: SocketAddr,
        http_address: SocketAddr,
    ) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let running = mint::start(
            mint_run_config(dir, mint_link, http_address),
            shutdown.clone(),
        )
        .await?;
        Ok(Self { running, shutdown })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.running.http_address)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("mint did not stop")??;
        Ok(())
    }
}

/// A wallet with a fresh mnemonic under `dir`.
pub async fn open_wallet(
    dir: &Path,
    mint_url: &str,
) -> anyhow::Result<hashpool_wallet::EhashWallet> {
    Ok(
        hashpool_wallet::EhashWallet::open(&hashpool_wallet::WalletConfig {
            mint_url: mint_url.to_string(),
            unit: "hash".into(),
            database_path: dir.join("wallet.sqlite"),
            mnemonic: None,
            mnemonic_path: dir.join("mnemonic"),
        })
        .await?,
    )
}

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
        address: stats.ingest_address,
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
