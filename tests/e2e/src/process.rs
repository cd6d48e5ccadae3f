//! Roles as child processes (the `e2e-role` binary), for tests that kill them with SIGKILL and
//! start them again on the same files and ports.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::{AUTHORITY_PUBLIC_KEY, AUTHORITY_SECRET_KEY};

pub struct RoleProcess {
    pub name: String,
    exe: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl RoleProcess {
    /// Starts `e2e-role <role> <args>`, its output appended to `<log_dir>/<name>.log`.
    pub fn start(
        exe: &Path,
        name: &str,
        role: &str,
        args: Vec<String>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut all = vec![role.to_string()];
        all.extend(args);
        let mut p = Self {
            name: name.to_string(),
            exe: exe.to_path_buf(),
            args: all,
            log: log_dir.join(format!("{name}.log")),
            child: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.exe)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()?;
            }
            let status =
                tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await;
            if status.is_err() {
                child.kill().await?;
                anyhow::bail!("{} did not stop on SIGTERM", self.name);
            }
        }
        Ok(())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is still running", self.name);
        self.spawn()
    }

    /// The last lines of the role's output (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Addresses of one pool-side deployment on loopback.
pub struct Topology {
    pub pool: SocketAddr,
    pub mint_link: SocketAddr,
    pub monitoring: SocketAddr,
    pub mint_http: SocketAddr,
    /// The pool's miner API (settlement reports and rates).
    pub api: SocketAddr,
}

impl Topology {
    pub fn free() -> Self {
        Self {
            pool: crate::free_address(),
            mint_link: crate::free_address(),
            monitoring: crate::free_address(),
            mint_http: crate::free_address(),
            api: crate::free_address(),
        }
    }

    /// `config/shared/pool.toml` for this topology (unit work in difficulty-1 shares).
    pub fn global_config(&self, unit_work: f64) -> String {
        format!(
            r#"[pool]
listen_address = "{pool}"
mint_link_address = "{link}"
monitoring_address = "{mon}"
api_address = "{api}"
authority_public_key = "{key}"

[mint]
http_address = "{mint}"
authority_public_key = "{key}"

[stats]
ingest_address = "127.0.0.1:1"
http_address = "127.0.0.1:1"
authority_public_key = "{key}"
reporter_public_keys = ["{key}"]

[web]
address = "127.0.0.1:1"

[ehash]
unit = "hash"
unit_work = {unit_work:e}
"#,
            pool = self.pool,
            link = self.mint_link,
            mon = self.monitoring,
            api = self.api,
            mint = self.mint_http,
            key = AUTHORITY_PUBLIC_KEY,
        )
    }
}

/// `config/pool.config.toml` for tests: fast batches and retries.
pub fn pool_config(provider: SocketAddr, ledger: &Path) -> String {
    format!(
        r#"[pool]
authority_secret_key = "{secret}"
cert_validity_secs = 3600
coinbase_reward_script = "raw(00147a5ee1a1a4a5b35c3e0e2d4bd6c1a7bb17b3d7c1)"
pool_signature = "hashpool-test"
server_id = 3
shares_per_minute = 120.0
share_batch_size = 2
vardiff_interval_secs = 1
max_channels_per_connection = 16
mint_quote_extension = true
ledger_path = "{ledger}"

[template_provider]
address = "{provider}"
authority_public_key = "{public}"
reconnect_initial_ms = 100
reconnect_max_ms = 1000

[quotes]
batch_interval_ms = 300
retry_interval_ms = 1000

# CPU miners mine far below the default floor (difficulty 1).
[limits]
min_share_difficulty = 1e-9
"#,
        secret = AUTHORITY_SECRET_KEY,
        public = AUTHORITY_PUBLIC_KEY,
        ledger = ledger.display(),
    )
}

/// `config/mint.config.toml` for tests.
pub fn mint_config(dir: &Path) -> String {
    format!(
        r#"[mint]
authority_secret_key = "{secret}"
database_path = "{db}"
seed_path = "{seed}"
name = "crash test mint"
description = "hashpool e2e"
max_concurrent_quotes = 4
# Not the default port: tests (and a local mint) run side by side.
monitoring_address = "{monitoring}"

[pool_link]
reconnect_initial_ms = 100
reconnect_max_ms = 1000
"#,
        secret = AUTHORITY_SECRET_KEY,
        db = dir.join("mint.sqlite").display(),
        seed = dir.join("mint.seed").display(),
        monitoring = crate::free_address(),
    )
}
