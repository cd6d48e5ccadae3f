//! Harness for end-to-end tests: starts the template provider, the pool and miners in-process
//! on 127.0.0.1 with ports the OS picks, and reads their state the way an operator would
//! (monitoring and status HTTP APIs). [`Stack`] starts the usual combinations in one
//! expression; each role also has its own starter ([`TestProvider`], [`TestPool`],
//! [`TestMint`], [`TestJdServer`]) for tests that stop and restart them.

pub mod fake_mint;
pub mod grind;
pub mod payouts;
pub mod postgres;
pub mod process;
pub mod raw_client;

mod job_declaration;
mod miners;
mod provider;
mod stack;
mod stats_service;
mod test_mint;
mod test_pool;

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

pub use job_declaration::{jd_server_config, TestJdServer};
pub use miners::{miner_options, sv1_miner_options, test_key, translator_config};
pub use provider::TestProvider;
pub use stack::{Running, Stack, TestTranslator};
pub use stats_service::{start_stats, stats_get, stats_reporter};
pub use test_mint::{mint_run_config, open_wallet, wallet_config, TestMint};
pub use test_pool::{test_limits, PoolOptions, TestPool};

/// The well-known SRI test authority keypair (local and test use only).
pub const AUTHORITY_PUBLIC_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
pub const AUTHORITY_SECRET_KEY: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
/// Regtest proof-of-work limit.
pub const REGTEST_NBITS: u32 = 0x207f_ffff;
/// The script the test pool is paid to (its coinbase reward, the jd-server's pool output).
pub const POOL_SCRIPT: &str = "raw(00147a5ee1a1a4a5b35c3e0e2d4bd6c1a7bb17b3d7c1)";

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
