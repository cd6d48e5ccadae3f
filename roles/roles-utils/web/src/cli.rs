//! The command line and run loop of both dashboards: the same flags ([`Args`]), each binary's
//! own name, description and default paths ([`Binary`]), and the same start and shutdown.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use serde::de::DeserializeOwned;

use crate::Dashboard;

/// What sets one dashboard binary apart on its command line.
pub struct Binary {
    pub name: &'static str,
    pub about: &'static str,
    /// The default role config.
    pub config: &'static str,
    /// The default shared topology.
    pub global_config: &'static str,
    /// `-g`'s help: which side's topology it is.
    pub global_config_help: &'static str,
}

impl Binary {
    /// Binary `name`: `about` for `--help`, its default role config.
    pub const fn new(name: &'static str, about: &'static str, config: &'static str) -> Self {
        Self {
            name,
            about,
            config,
            global_config: "",
            global_config_help: "",
        }
    }

    /// Its default shared topology, and `-g`'s help.
    pub const fn global_config(self, path: &'static str, help: &'static str) -> Self {
        Self {
            global_config: path,
            global_config_help: help,
            ..self
        }
    }
}

/// The flags both dashboards take; [`Binary::command`] adds one binary's defaults.
#[derive(clap::Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long)]
    pub config: PathBuf,
    #[arg(short, long)]
    pub global_config: PathBuf,
    #[command(flatten)]
    pub log: hashpool_role::LogArgs,
}

impl Binary {
    /// This binary's command line.
    pub fn command(&self) -> clap::Command {
        // The derive makes a path with no default required; the binary's default lifts that.
        Args::command()
            .name(self.name)
            .about(self.about)
            .mut_arg("config", |a| a.default_value(self.config).required(false))
            .mut_arg("global_config", |a| {
                a.default_value(self.global_config)
                    .required(false)
                    .help(self.global_config_help)
            })
    }

    /// The process's arguments (exits on `--help` or a bad flag, as `clap::Parser::parse` does).
    pub fn parse(&self) -> Args {
        let mut command = self.command();
        let matches = command.get_matches_mut();
        Args::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }

    /// The arguments with no flag given, the default paths taken under `dir`.
    pub fn args_in(&self, dir: &Path) -> Args {
        Args {
            config: dir.join(self.config),
            global_config: dir.join(self.global_config),
            log: Default::default(),
        }
    }

    /// [`Binary::args_in`] this source tree: the tests load the shipped configs this way.
    pub fn shipped_args(&self) -> Args {
        self.args_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../..")))
    }

    /// The binary's `main`: parses the command line and runs the dashboard `load` makes from
    /// its files until SIGINT/SIGTERM.
    pub async fn main(
        &self,
        load: impl FnOnce(&Args) -> anyhow::Result<Dashboard>,
    ) -> anyhow::Result<()> {
        self.run(self.parse(), load).await
    }

    /// [`Binary::main`] on arguments already parsed.
    pub async fn run(
        &self,
        args: Args,
        load: impl FnOnce(&Args) -> anyhow::Result<Dashboard>,
    ) -> anyhow::Result<()> {
        let (name, args) = (self.name, &args);
        hashpool_role::run(name, &args.log, |shutdown| async move {
            let dashboard = load(args)?;
            let address = dashboard.address;
            let running = dashboard
                .serve(shutdown)
                .await
                .with_context(|| format!("binding {address}"))?;
            tracing::info!(address = %running.address, "{name}: open http://{}/", running.address);
            Ok(running.task)
        })
        .await
    }
}

impl Args {
    /// Both files: the side's shared topology `G` (every address comes from it) and the
    /// dashboard's own file `F`, as `check` takes it (its error names the key).
    pub fn load_files<G: DeserializeOwned, F: DeserializeOwned, T>(
        &self,
        check: impl FnOnce(F) -> Result<T, String>,
    ) -> anyhow::Result<(G, T)> {
        let global: G = hashpool_config::load(&self.global_config)?;
        let own: F = hashpool_config::load(&self.config)?;
        let own =
            check(own).map_err(|e| anyhow::anyhow!("config {}: {e}", self.config.display()))?;
        Ok((global, own))
    }
}
