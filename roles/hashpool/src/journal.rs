//! `hashpool logs` on a deployment (docs/deployment.md): the roles run as systemd units
//! (`hashpool-<role>`) that log to the journal, so their logs are read with `journalctl`. A
//! local run's logs are files in the run directory (`control::logs`).

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::bail;

/// Where scripts/install.sh puts the units; `hashpool.target` there marks a deployment.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The target every deployed unit is part of.
pub const TARGET: &str = "hashpool.target";

/// The units scripts/install.sh installs, by role: `hashpool-<role>.service`.
pub const DEPLOYED_ROLES: [&str; 11] = [
    "pool",
    "mint",
    "translator",
    "jd-server",
    "jd-client",
    "stats-pool",
    "stats-proxy",
    "web-pool",
    "web-proxy",
    "bitcoind",
    "sv2-tp",
];

/// Where `hashpool logs` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogSource {
    /// A local run's files if the run directory has logs, else the journal if the systemd
    /// units are installed.
    #[default]
    Auto,
    /// The local run's files (`<run-dir>/logs/`).
    Local,
    /// The journal of the deployed units (`journalctl -u hashpool-<role>`).
    Journal,
}

/// Whether to read the journal: asked for, or (`auto`) no local run here and a deployment on
/// this machine.
pub fn use_journal(source: LogSource, local_logs: bool, deployed: bool) -> bool {
    match source {
        LogSource::Local => false,
        LogSource::Journal => true,
        LogSource::Auto => !local_logs && deployed,
    }
}

/// Whether scripts/install.sh installed the units on this machine.
pub fn is_deployed() -> bool {
    Path::new(UNIT_DIR).join(TARGET).exists()
}

/// The unit of a deployed role, named `pool`, `hashpool-pool` or `hashpool-pool.service`.
pub fn unit(role: &str) -> anyhow::Result<String> {
    let name = role.strip_suffix(".service").unwrap_or(role);
    let name = name.strip_prefix("hashpool-").unwrap_or(name);
    if !DEPLOYED_ROLES.contains(&name) {
        bail!(
            "no deployed role {role:?} (roles: {})",
            DEPLOYED_ROLES.join(", ")
        );
    }
    Ok(format!("hashpool-{name}.service"))
}

/// `journalctl`'s arguments for `hashpool logs [ROLE] [-n N] [--follow]`: one role's unit, or
/// every Hashpool unit without a role.
pub fn journalctl_args(
    role: Option<&str>,
    lines: usize,
    follow: bool,
) -> anyhow::Result<Vec<String>> {
    let unit = match role {
        Some(role) => unit(role)?,
        None => "hashpool-*".to_string(),
    };
    let mut args = vec![
        "--unit".to_string(),
        unit,
        "--lines".to_string(),
        lines.to_string(),
        "--no-pager".to_string(),
    ];
    if follow {
        args.push("--follow".to_string());
    }
    Ok(args)
}

/// Replaces this process with `journalctl` (so Ctrl-C and its exit status are its own).
pub fn logs(role: Option<&str>, lines: usize, follow: bool) -> anyhow::Result<()> {
    let args = journalctl_args(role, lines, follow)?;
    let err = Command::new("journalctl").args(&args).exec();
    bail!("running journalctl {}: {err}", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_reads_its_own_unit() {
        assert_eq!(
            journalctl_args(Some("pool"), 100, false).unwrap(),
            [
                "--unit",
                "hashpool-pool.service",
                "--lines",
                "100",
                "--no-pager"
            ]
        );
        assert_eq!(
            journalctl_args(Some("hashpool-jd-client.service"), 5, true).unwrap(),
            [
                "--unit",
                "hashpool-jd-client.service",
                "--lines",
                "5",
                "--no-pager",
                "--follow"
            ]
        );
        assert_eq!(
            journalctl_args(Some("hashpool-sv2-tp"), 1, false).unwrap()[1],
            "hashpool-sv2-tp.service"
        );
    }

    #[test]
    fn without_a_role_every_unit_is_read() {
        assert_eq!(
            journalctl_args(None, 20, true).unwrap(),
            [
                "--unit",
                "hashpool-*",
                "--lines",
                "20",
                "--no-pager",
                "--follow"
            ]
        );
    }

    #[test]
    fn an_unknown_role_names_the_known_ones() {
        for role in ["template-provider", "*", "pool; rm", ""] {
            let err = journalctl_args(Some(role), 10, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("roles: pool, mint,"), "{err}");
        }
    }

    #[test]
    fn auto_prefers_a_local_run_then_the_deployment() {
        use LogSource::*;
        assert!(!use_journal(Auto, true, true));
        assert!(use_journal(Auto, false, true));
        assert!(!use_journal(Auto, false, false));
        assert!(use_journal(Journal, true, false));
        assert!(!use_journal(Local, false, true));
    }
}
