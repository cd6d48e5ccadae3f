//! A run profile: which roles to start, how, in which order, and how to tell they are healthy
//! (`config/profiles/<name>.toml`).

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {name:?} not found: no {path} (run from the repository root, or pass --profile <file>)")]
    NotFound { name: String, path: PathBuf },
    #[error("profile {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("profile {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// How the supervisor treats every role.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorSettings {
    /// Every role's health is checked this often.
    pub health_interval_ms: u64,
    /// A started role must be healthy within this long, or it counts as a failure.
    pub start_timeout_secs: u64,
    /// Restart delays double from this one (1 s, 2 s, 4 s, ...) up to `restart_max_ms`.
    pub restart_initial_ms: u64,
    pub restart_max_ms: u64,
    /// Failures in a row after which a role is given up.
    pub max_failures: u32,
    /// A role healthy for this long has its failures forgotten.
    pub stable_after_secs: u64,
    /// A running role failing this many health checks in a row is restarted.
    pub unhealthy_limit: u32,
    /// Time a role gets to exit after SIGTERM before SIGKILL.
    pub stop_timeout_secs: u64,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        Self {
            health_interval_ms: 2_000,
            start_timeout_secs: 60,
            restart_initial_ms: 1_000,
            restart_max_ms: 300_000,
            max_failures: 10,
            stable_after_secs: 30,
            unhealthy_limit: 3,
            stop_timeout_secs: 10,
        }
    }
}

impl SupervisorSettings {
    /// The delay before restart number `failures` (1 s, 2 s, 4 s, ... from the defaults).
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(32);
        let ms = self
            .restart_initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.restart_max_ms);
        Duration::from_millis(ms)
    }
}

/// One process to run and watch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub name: String,
    /// A binary name, looked up in the bin directory; or a path.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Roles that must be healthy before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// TCP ports the role listens on (127.0.0.1): free before it starts, accepting connections
    /// while it is healthy, free again once it stops.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// URLs that answer 2xx while the role is healthy.
    #[serde(default)]
    pub health_http: Vec<String>,
}

/// A page printed once the run is up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub supervisor: SupervisorSettings,
    /// Directory roles run in (relative paths in their args and configs start here); relative
    /// to the directory `hashpool up` runs in.
    #[serde(default = "default_workdir")]
    pub workdir: PathBuf,
    /// Environment for every role (a role's own `env` wins).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(rename = "role")]
    pub roles: Vec<RoleSpec>,
    #[serde(default, rename = "page")]
    pub pages: Vec<Page>,
}

fn default_workdir() -> PathBuf {
    PathBuf::from(".")
}

/// `--profile dev` names `config/profiles/dev.toml`; anything with a `/` or ending in `.toml`
/// is a path.
pub fn resolve(profile: &str) -> Result<PathBuf, ProfileError> {
    let path = if profile.contains('/') || profile.ends_with(".toml") {
        PathBuf::from(profile)
    } else {
        Path::new("config/profiles").join(format!("{profile}.toml"))
    };
    if !path.is_file() {
        return Err(ProfileError::NotFound {
            name: profile.to_string(),
            path,
        });
    }
    Ok(path)
}

impl Profile {
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut profile: Profile = toml::from_str(&text).map_err(|e| ProfileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        profile.validate().map_err(|reason| ProfileError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        profile.order();
        Ok(profile)
    }

    fn validate(&self) -> Result<(), String> {
        if self.roles.is_empty() {
            return Err("no [[role]]".into());
        }
        let mut names = HashSet::new();
        for role in &self.roles {
            let ok = !role.name.is_empty()
                && role
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(format!(
                    "role name {:?}: use letters, digits, '-' and '_'",
                    role.name
                ));
            }
            if !names.insert(role.name.as_str()) {
                return Err(format!("role {:?} is listed twice", role.name));
            }
        }
        for role in &self.roles {
            for dep in &role.after {
                if !names.contains(dep.as_str()) {
                    return Err(format!(
                        "role {:?}: `after` names unknown role {dep:?}",
                        role.name
                    ));
                }
            }
        }
        let mut ports = HashSet::new();
        for role in &self.roles {
            for port in &role.ports {
                if !ports.insert(*port) {
                    return Err(format!("port {port} is listed by two roles"));
                }
            }
        }
        for role in &self.roles {
            for url in &role.health_http {
                let ok = reqwest::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if !ok {
                    return Err(format!(
                        "role {:?}: health_http {url:?} is not an http URL",
                        role.name
                    ));
                }
            }
        }
        let s = &self.supervisor;
        if s.max_failures == 0 {
            return Err("supervisor.max_failures must be at least 1".into());
        }
        // Bounds keep every delay a sane, representable duration.
        const DAY_MS: u64 = 86_400_000;
        const DAY_S: u64 = 86_400;
        let bounded = [
            ("health_interval_ms", s.health_interval_ms, 50, DAY_MS),
            ("restart_initial_ms", s.restart_initial_ms, 1, DAY_MS),
            ("restart_max_ms", s.restart_max_ms, 1, DAY_MS),
            ("start_timeout_secs", s.start_timeout_secs, 1, DAY_S),
            ("stable_after_secs", s.stable_after_secs, 0, DAY_S),
            ("stop_timeout_secs", s.stop_timeout_secs, 1, 3_600),
        ];
        for (key, value, min, max) in bounded {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "supervisor.{key} = {value}: must be between {min} and {max}"
                ));
            }
        }
        if s.unhealthy_limit == 0 {
            return Err("supervisor.unhealthy_limit must be at least 1".into());
        }
        Ok(())
    }

    /// Sorts roles so that each comes after the roles it waits for (file order otherwise);
    /// a cycle is left in file order and shows up as roles that never start.
    fn order(&mut self) {
        let mut placed: Vec<RoleSpec> = Vec::with_capacity(self.roles.len());
        let mut rest = std::mem::take(&mut self.roles);
        while !rest.is_empty() {
            let ready = rest.iter().position(|r| {
                r.after
                    .iter()
                    .all(|dep| placed.iter().any(|p| &p.name == dep))
            });
            match ready {
                Some(i) => placed.push(rest.remove(i)),
                None => {
                    placed.append(&mut rest);
                }
            }
        }
        self.roles = placed;
    }

    /// Dependency cycles (roles that could never start).
    pub fn cycle(&self) -> Option<String> {
        for (i, role) in self.roles.iter().enumerate() {
            for dep in &role.after {
                if !self.roles[..i].iter().any(|r| &r.name == dep) {
                    return Some(format!(
                        "role {:?} waits for {dep:?}, which waits for it (a cycle in `after`)",
                        role.name
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        Profile::load(&path)
    }

    #[test]
    fn backoff_doubles_from_one_second() {
        let s = SupervisorSettings::default();
        let delays: Vec<u64> = (1..=5).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16]);
        assert_eq!(s.backoff(40), Duration::from_millis(s.restart_max_ms));
    }

    #[test]
    fn roles_are_ordered_after_what_they_wait_for() {
        let p = parse(
            r#"
            [[role]]
            name = "b"
            command = "x"
            after = ["a"]
            [[role]]
            name = "a"
            command = "x"
            "#,
        )
        .unwrap();
        let names: Vec<_> = p.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(p.cycle().is_none());
    }

    #[test]
    fn cycles_are_reported() {
        let p = parse(
            r#"
            [[role]]
            name = "a"
            command = "x"
            after = ["b"]
            [[role]]
            name = "b"
            command = "x"
            after = ["a"]
            "#,
        )
        .unwrap();
        assert!(p.cycle().unwrap().contains("cycle"));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let unknown =
            parse("[[role]]\nname = \"a\"\ncommand = \"x\"\nafter = [\"nope\"]\n").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown role \"nope\""),
            "{unknown}"
        );
        let twice = parse(
            "[[role]]\nname = \"a\"\ncommand = \"x\"\nports = [1]\n[[role]]\nname = \"b\"\ncommand = \"y\"\nports = [1]\n",
        )
        .unwrap_err();
        assert!(twice.to_string().contains("port 1"), "{twice}");
        let typo = parse("[[role]]\nname = \"a\"\ncomand = \"x\"\n").unwrap_err();
        assert!(typo.to_string().contains("comand"), "{typo}");
        let url =
            parse("[[role]]\nname = \"a\"\ncommand = \"x\"\nhealth_http = [\"localhost:80\"]\n")
                .unwrap_err();
        assert!(url.to_string().contains("not an http URL"), "{url}");
        let huge = parse("[supervisor]\nrestart_max_ms = 18446744073709551615\n[[role]]\nname = \"a\"\ncommand = \"x\"\n")
            .unwrap_err();
        assert!(huge.to_string().contains("restart_max_ms"), "{huge}");
    }

    /// devenv.nix runs the same processes as the dev profile, with the same arguments.
    #[test]
    fn devenv_runs_the_dev_profile() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = Profile::load(&root.join("config/profiles/dev.toml")).unwrap();
        let devenv = std::fs::read_to_string(root.join("devenv.nix")).unwrap();
        for role in &p.roles {
            let head = format!("    {} = role {{", role.name);
            let start = devenv
                .find(&head)
                .unwrap_or_else(|| panic!("devenv.nix lacks {}", role.name));
            let block = &devenv[start..];
            let block = &block[..block.find("\n    };").expect("end of the role's block")];
            let exec = format!("exec = \"{} {}\";", role.command, role.args.join(" "));
            assert!(block.contains(&exec), "devenv.nix lacks `{exec}`");
            if role.after.is_empty() {
                assert!(
                    !block.contains("deps ="),
                    "{}: no deps in the profile",
                    role.name
                );
            } else {
                let deps: Vec<String> = role.after.iter().map(|d| format!("\"{d}\"")).collect();
                let line = format!("deps = [ {} ];", deps.join(" "));
                assert!(
                    block.contains(&line),
                    "{}: devenv.nix lacks `{line}`",
                    role.name
                );
            }
        }
        assert_eq!(devenv.matches(" = role {").count(), p.roles.len());
    }

    #[test]
    fn the_dev_profile_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/profiles/dev.toml");
        let p = Profile::load(&path).unwrap();
        assert!(p.cycle().is_none());
        for role in [
            "template-provider",
            "pool",
            "mint",
            "translator",
            "web-pool",
        ] {
            assert!(p.roles.iter().any(|r| r.name == role), "{role} missing");
        }
    }
}

#[cfg(test)]
mod jd_profile_tests {
    use super::*;

    /// Job-declaration mode: miners reach the pool through the jd-client, never directly.
    #[test]
    fn the_jd_profile_puts_the_jd_client_between_the_miners_and_the_pool() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = Profile::load(&root.join("config/profiles/jd.toml")).unwrap();
        assert!(p.cycle().is_none());
        let role = |name: &str| {
            p.roles
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let jdc: crate::keys::RoleKey = crate::keys::ROLE_KEYS
            .into_iter()
            .find(|k| k.role == "jd-client")
            .expect("the jd-client has a key");
        assert_eq!(jdc.var, "HASHPOOL__JD_CLIENT__AUTHORITY_SECRET_KEY");
        let jd_client = role("jd-client");
        assert_eq!(jd_client.ports, vec![34265, 9110, 8083]);
        for after in ["pool", "jd-server"] {
            assert!(jd_client.after.iter().any(|a| a == after));
        }
        assert_eq!(
            role("translator")
                .env
                .get("HASHPOOL__TRANSLATOR__UPSTREAM_ADDRESS")
                .map(String::as_str),
            Some("127.0.0.1:34265")
        );
        // The wallet API the miner's page reads is the jd-client's, not the translator's.
        let translator = role("translator");
        assert_eq!(
            translator
                .env
                .get("HASHPOOL__WALLET__ENABLED")
                .map(String::as_str),
            Some("false")
        );
        assert!(!translator.ports.contains(&8083));
        let sv2 = role("mining-device");
        let at = sv2.args.iter().position(|a| a == "--pool").unwrap();
        assert_eq!(sv2.args[at + 1], "127.0.0.1:34265");
        // The jd-client's own config listens where the profile expects it.
        let config = std::fs::read_to_string(root.join("config/jd-client.config.toml")).unwrap();
        assert!(config.contains("listen_address = \"127.0.0.1:34265\""));
    }
}

#[cfg(test)]
mod home_profile_tests {
    use super::*;

    /// Rigs at home: the translator, its stats-proxy and the page, and no pool (it is dialed by
    /// name); every file a role is given exists.
    #[test]
    fn the_home_profile_runs_a_translator_and_its_page_from_the_home_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = Profile::load(&root.join("config/profiles/home.toml")).unwrap();
        assert!(p.cycle().is_none());
        let names: Vec<&str> = p.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["stats-proxy", "translator", "web-proxy"]);
        for role in &p.roles {
            for pair in role.args.windows(2) {
                if pair[0] == "-c" || pair[0] == "-g" {
                    assert!(
                        pair[1].starts_with("config/home/translator/"),
                        "{}: {}",
                        role.name,
                        pair[1]
                    );
                    assert!(root.join(&pair[1]).is_file(), "{} missing", pair[1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod cluster_profile_tests {
    use std::collections::HashSet;

    use super::*;

    /// Two pool instances on one PostgreSQL ledger, PostgreSQL a role before every role that
    /// keeps a database on it, the translator falling back to pool B.
    #[test]
    fn the_cluster_profile_runs_two_pools_on_one_ledger_after_postgresql() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = Profile::load(&root.join("config/profiles/cluster.toml")).unwrap();
        assert!(p.cycle().is_none());
        let role = |name: &str| {
            p.roles
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let postgres = role("postgres");
        assert!(root.join(&postgres.command).is_file());
        assert_eq!(postgres.ports, vec![5433]);
        let (a, b) = (role("pool"), role("pool-b"));
        let ledger = |r: &RoleSpec| r.env.get("HASHPOOL__POOL__LEDGER_DATABASE_URL").cloned();
        assert!(ledger(a).is_some_and(|u| u.contains("127.0.0.1:5433/hashpool_ledger")));
        assert_eq!(ledger(a), ledger(b));
        // B: another extranonce space, and its own ports (every role's ports are its own).
        assert_eq!(
            b.env.get("HASHPOOL__POOL__SERVER_ID").map(String::as_str),
            Some("2")
        );
        let config = std::fs::read_to_string(root.join("config/pool.config.toml")).unwrap();
        assert!(config.contains("server_id = 1\n"));
        let mut ports = HashSet::new();
        for r in &p.roles {
            for port in &r.ports {
                assert!(ports.insert(*port), "port {port} twice");
            }
        }
        for var in [
            "HASHPOOL__POOL__LISTEN_ADDRESS",
            "HASHPOOL__POOL__MINT_LINK_ADDRESS",
            "HASHPOOL__POOL__MONITORING_ADDRESS",
            "HASHPOOL__POOL__API_ADDRESS",
            "HASHPOOL__POOL__METRICS_ADDRESS",
        ] {
            let address = b.env.get(var).unwrap_or_else(|| panic!("{var} unset"));
            let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                b.ports.contains(&port),
                "{var}={address} not among pool-b's ports"
            );
        }
        // Every role with a database on PostgreSQL starts after it.
        for (name, var) in [
            ("pool", "HASHPOOL__POOL__LEDGER_DATABASE_URL"),
            ("pool-b", "HASHPOOL__POOL__LEDGER_DATABASE_URL"),
            ("mint", "HASHPOOL__MINT__DATABASE_URL"),
            ("stats-pool", "HASHPOOL__STATS__DATABASE"),
            ("stats-proxy", "HASHPOOL__STATS__DATABASE"),
        ] {
            let r = role(name);
            assert!(r.env.get(var).is_some_and(|u| u.starts_with("postgres://")));
            assert!(r.after.iter().any(|a| a == "postgres"), "{name}");
        }
        // The translator falls back to pool B; a miner mines on B.
        let translator = role("translator");
        let file = translator
            .args
            .iter()
            .find(|a| a.ends_with(".toml"))
            .unwrap();
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.contains("[[translator.fallback_upstreams]]\naddress = \"127.0.0.1:34257\""));
        let miner = role("mining-device");
        let at = miner.args.iter().position(|a| a == "--pool").unwrap();
        assert_eq!(miner.args[at + 1], "127.0.0.1:34257");
    }
}
