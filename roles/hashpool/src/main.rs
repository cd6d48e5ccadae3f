use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hashpool::{
    control::{self, UpOptions},
    journal::{self, LogSource},
    keys,
    profile::Profile,
    state::RunDir,
    supervisor::Supervisor,
};

#[derive(Parser)]
#[command(
    name = "hashpool",
    version,
    about = "Start, watch and stop a local Hashpool run"
)]
struct Cli {
    /// Where logs and the supervisor's state live.
    #[arg(
        long,
        global = true,
        env = "HASHPOOL_RUN_DIR",
        default_value = ".hashpool"
    )]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start every role of a profile, wait until they are healthy, print where the pages are.
    Up {
        /// A name (config/profiles/<name>.toml) or a path to a profile file.
        #[arg(long, default_value = "dev")]
        profile: String,
        /// Where the role binaries are (default: beside this binary, then PATH).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Supervise from this terminal instead of in the background; Ctrl-C stops everything.
        #[arg(long)]
        foreground: bool,
        /// How long to wait for every role to be healthy.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout_secs: u64,
        /// With --foreground, also write the supervisor's log to this file.
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
    /// State, pid, restarts and uptime of every role.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A role's log (the supervisor's own without a role). On a deployment (systemd units
    /// installed, no local run here) the role's journal, through journalctl (every Hashpool
    /// unit's without a role).
    Logs {
        role: Option<String>,
        /// Lines from the end to print first.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Keep printing what is written (like `tail -f`).
        #[arg(short = 'f', long, short_alias = 'F')]
        follow: bool,
        /// Where to read: the local run's files or the deployment's journal.
        #[arg(long, value_enum, default_value_t = LogSource::Auto)]
        source: LogSource,
    },
    /// Stop every role and the supervisor; returns when every port is free.
    Stop {
        /// How long the supervisor gets to stop every role before it is killed.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout_secs: u64,
    },
    /// Make a deployment's keys and wallet mnemonic (never replacing existing ones) and write
    /// the public keys into the shared topology (used by scripts/install.sh).
    Keys {
        /// The deployment's config directory (holds shared/ and keys/).
        #[arg(long)]
        config_dir: PathBuf,
        /// The deployment's data directory (the translator's mnemonic goes in translator/).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// (internal) The supervisor process `up` starts.
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            profile,
            bin_dir,
            foreground,
            timeout_secs,
            log_file,
        } => {
            let options = UpOptions {
                profile,
                run_dir: cli.run_dir,
                bin_dir,
                timeout: Duration::from_secs(timeout_secs),
            };
            if foreground {
                let prepared = control::prepare(&options)?;
                supervise(
                    prepared.profile,
                    prepared.profile_path,
                    prepared.workdir,
                    prepared.bin_dir,
                    prepared.run,
                    log_file,
                )
            } else {
                control::up(&options)
            }
        }
        Cmd::Status { json } => {
            control::status(&cli.run_dir, json)?;
            Ok(())
        }
        Cmd::Logs {
            role,
            lines,
            follow,
            source,
        } => {
            let local_logs = RunDir::new(cli.run_dir.clone()).logs().is_dir();
            if journal::use_journal(source, local_logs, journal::is_deployed()) {
                journal::logs(role.as_deref(), lines, follow)
            } else {
                control::logs(&cli.run_dir, role.as_deref(), lines, follow)
            }
        }
        Cmd::Stop { timeout_secs } => {
            control::stop(&cli.run_dir, Duration::from_secs(timeout_secs))
        }
        Cmd::Keys {
            config_dir,
            data_dir,
        } => {
            let public = keys::ensure(&config_dir, &data_dir)?;
            for (role, key) in &public.0 {
                println!("{role:<12} public key {key}");
            }
            for note in &public.1 {
                println!("note: {note}");
            }
            println!(
                "secret keys: {}/*.env (root only); public keys written to {}/shared/",
                config_dir.join("keys").display(),
                config_dir.display()
            );
            Ok(())
        }
        Cmd::Supervise {
            profile,
            bin_dir,
            log_file,
        } => {
            let loaded = Profile::load(&profile)?;
            let workdir = std::env::current_dir()?.join(&loaded.workdir);
            supervise(
                loaded,
                profile,
                workdir,
                bin_dir,
                RunDir::new(cli.run_dir),
                log_file,
            )
        }
    }
}

fn supervise(
    profile: Profile,
    profile_path: PathBuf,
    workdir: PathBuf,
    bin_dir: PathBuf,
    run: RunDir,
    log_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(&hashpool_logging::LogArgs::with_file(log_file))?;
    // Held until the process ends: one supervisor per run directory.
    let _lock = run
        .lock_supervisor()
        .with_context(|| format!("locking {}", run.root.display()))?
        .with_context(|| format!("hashpool is already running from {}", run.root.display()))?;
    // One thread: roles are told to stop when the thread that started them ends
    // (PR_SET_PDEATHSIG), so every start must come from a thread that lives as long as the
    // supervisor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let supervisor = Supervisor::new(profile, profile_path, workdir, &bin_dir, run)?;
        supervisor.run(hashpool_role::shutdown_signal()).await
    })
}
