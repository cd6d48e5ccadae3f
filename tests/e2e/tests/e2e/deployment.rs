//! The testnet4 deployment, in a scratch root: `scripts/install.sh --root` produces the
//! expected tree (binaries, configs, keys, units logging to the journal, journald drop-in)
//! without touching the real system; every installed config loads with the roles' typed config
//! structs and the keys it generated; a re-install keeps the operator's files and secrets;
//! rollback switches releases; every unit passes `systemd-analyze verify`.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use hashpool_config::{PoolGlobalConfig, ProxyGlobalConfig};
use hashpool_e2e::workspace_bin_dir;
use stratum_apps::key_utils::Secp256k1PublicKey;

const ROLES: [&str; 9] = [
    "pool",
    "jd-server",
    "jd-client",
    "mint",
    "translator",
    "stats-pool",
    "stats-proxy",
    "web-pool",
    "web-proxy",
];
const KEYED: [&str; 7] = [
    "pool",
    "mint",
    "translator",
    "stats-pool",
    "stats-proxy",
    "jd-server",
    "jd-client",
];
const UNITS: [&str; 12] = [
    "hashpool-pool.service",
    "hashpool-mint.service",
    "hashpool-translator.service",
    "hashpool-jd-server.service",
    "hashpool-jd-client.service",
    "hashpool-stats-pool.service",
    "hashpool-stats-proxy.service",
    "hashpool-web-pool.service",
    "hashpool-web-proxy.service",
    "hashpool-bitcoind.service",
    "hashpool-sv2-tp.service",
    "hashpool.target",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

fn install(root: &Path, bin: &Path, version: &str) -> String {
    run(Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin-dir")
        .arg(bin)
        .arg("--version")
        .arg(version))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `KEY=value` lines of an environment file, as systemd reads them.
fn env_file(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn public(key: &stratum_apps::key_utils::Secp256k1SecretKey) -> String {
    Secp256k1PublicKey::from(*key).to_string()
}

/// Loads every installed config the way its role does, with the environment its unit gives it.
fn load_every_role(etc: &Path) {
    let env = |role: &str| {
        let mut env = env_file(&etc.join("hashpool.env"));
        if KEYED.contains(&role) {
            env.extend(env_file(&etc.join(format!("keys/{role}.env"))));
        }
        env
    };
    let global_pool = |role: &str| -> PoolGlobalConfig {
        hashpool_config::load_with_env(&etc.join("shared/pool.toml"), env(role))
            .unwrap_or_else(|e| panic!("{role}: {e}"))
    };
    let global_proxy = |role: &str| -> ProxyGlobalConfig {
        hashpool_config::load_with_env(&etc.join("shared/proxy.toml"), env(role))
            .unwrap_or_else(|e| panic!("{role}: {e}"))
    };
    let own = |role: &str| etc.join(format!("{role}.config.toml"));

    // Pool and mint: their run configs refuse a secret that is not the half of the pinned key.
    let pool: pool::config::PoolConfig =
        hashpool_config::load_with_env(&own("pool"), env("pool")).expect("pool config");
    let pool_run = pool::PoolRunConfig::new(&global_pool("pool"), pool).expect("pool run config");
    assert!(pool_run
        .pool
        .ledger_path
        .starts_with("/var/lib/hashpool/pool"));
    let mint: mint::MintConfig =
        hashpool_config::load_with_env(&own("mint"), env("mint")).expect("mint config");
    mint::MintRunConfig::new(&global_pool("mint"), mint).expect("mint run config");
    // The jd-server: its secret must sign the tokens the pool checks with the shared key.
    let jds: jd_server::JdServerConfig =
        hashpool_config::load_with_env(&own("jd-server"), env("jd-server"))
            .expect("jd-server config");
    let jds = jd_server::JdServerRunConfig::new(&global_pool("jd-server"), jds)
        .expect("jd-server run config");
    assert!(
        jds.rpc.cookie_file.is_some(),
        "the jd-server reads bitcoind's cookie"
    );
    // The jd-client: its Noise secret from its own key file.
    let jdc: jd_client::JdClientConfig =
        hashpool_config::load_with_env(&own("jd-client"), env("jd-client"))
            .expect("jd-client config");
    jd_client::JdClientRunConfig::new(&jdc).expect("jd-client run config");

    // Stats services: the same check inside their run configs.
    for (role, global) in [
        ("stats-pool", global_pool("stats-pool").stats),
        ("stats-proxy", global_proxy("stats-proxy").stats),
    ] {
        let cfg: hashpool_stats::role::StatsRoleConfig =
            hashpool_config::load_with_env(&own(role), env(role)).expect("stats config");
        let side = if role == "stats-pool" {
            hashpool_stats::Role::Pool
        } else {
            hashpool_stats::Role::Translator
        };
        cfg.run_config("stats", side, &global)
            .unwrap_or_else(|e| panic!("{role}: {e}"));
    }

    // Translator: pins the pool's key; reports to stats-proxy with a key it lists.
    let translator: translator::config::TranslatorConfig =
        hashpool_config::load_with_env(&own("translator"), env("translator"))
            .expect("translator config");
    let proxy = global_proxy("translator");
    translator
        .run_config(&proxy)
        .expect("translator run config");
    let reporter = translator
        .stats_reporter
        .as_ref()
        .expect("the translator reports to stats-proxy");
    let listed: Vec<String> = proxy
        .stats
        .reporter_public_keys
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(listed, vec![public(&reporter.secret_key)]);
    let pool_key = env_file(&etc.join("keys/pool.env"))
        .into_iter()
        .find(|(k, _)| k == "HASHPOOL__POOL__AUTHORITY_SECRET_KEY")
        .expect("pool secret")
        .1;
    assert_eq!(
        proxy.translator.upstream_authority_public_key.to_string(),
        public(&pool_key.parse().expect("pool secret parses"))
    );
    assert_eq!(
        translator.wallet.mnemonic_path,
        PathBuf::from("/var/lib/hashpool/translator/mnemonic"),
        "the translator uses the mnemonic install made"
    );

    // Dashboards.
    for (role, global_ok) in [
        ("web-pool", global_pool("web-pool").web.address.port() > 0),
        (
            "web-proxy",
            global_proxy("web-proxy").web.address.port() > 0,
        ),
    ] {
        assert!(global_ok);
        if role == "web-proxy" {
            // web-proxy's file also names the wallet API token it sends: the one install.sh
            // creates and its unit binds read-only.
            let web: web_proxy::cli::WebProxyFile =
                hashpool_config::load_with_env(&own(role), env(role)).expect("web config");
            let web = web.checked().unwrap_or_else(|e| panic!("{role}: {e}"));
            assert_eq!(
                web.wallet_api.token_path,
                Path::new("/var/lib/hashpool/translator/wallet-api-token")
            );
            continue;
        }
        // web-pool's own file type: it also takes `[upstreams]` (roles on other hosts).
        let web: web_pool::cli::WebPoolFile =
            hashpool_config::load_with_env(&own(role), env(role)).expect("web config");
        let web = web.checked().unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(
            web.upstreams.mint_url, None,
            "the prod web-pool reads the mint at the topology's address until an operator names it"
        );
    }
}

#[test]
fn install_in_a_scratch_root_makes_a_deployment_that_loads_and_verifies() {
    let bin = workspace_bin_dir(&[
        "hashpool",
        "jd-server",
        "jd-client",
        "pool",
        "mint",
        "translator",
        "stats-pool",
        "stats-proxy",
        "web-pool",
        "web-proxy",
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();

    let out = install(root, &bin, "v1");
    assert!(out.contains("a trial tree"), "{out}");
    let etc = root.join("etc/hashpool");

    // The tree.
    assert_eq!(
        fs::read_link(root.join("opt/hashpool/current")).expect("current link"),
        PathBuf::from("releases/v1")
    );
    for b in ROLES.iter().chain(["hashpool"].iter()) {
        let path = root.join("opt/hashpool/current/bin").join(b);
        assert_eq!(mode(&path), 0o755, "{}", path.display());
    }
    for role in ROLES {
        let installed = fs::read(etc.join(format!("{role}.config.toml"))).expect("config");
        let shipped = fs::read(repo().join(format!("config/prod/{role}.config.toml"))).unwrap();
        assert_eq!(installed, shipped, "{role}: installed as shipped");
    }
    assert_eq!(mode(&etc.join("keys")), 0o700);
    let mut secrets = HashMap::new();
    for role in KEYED {
        let path = etc.join(format!("keys/{role}.env"));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        secrets.insert(role, fs::read(&path).unwrap());
    }
    let mnemonic = root.join("var/lib/hashpool/translator/mnemonic");
    assert_eq!(mode(&mnemonic), 0o600);
    // The wallet API token web-proxy sends: private, and one the wallet accepts as it is.
    let api_token = root.join("var/lib/hashpool/translator/wallet-api-token");
    assert_eq!(mode(&api_token), 0o600);
    hashpool_wallet::api::ApiToken::load_or_create(&api_token).expect("a usable wallet API token");
    for unit in UNITS {
        assert!(
            root.join("etc/systemd/system").join(unit).is_file(),
            "{unit}"
        );
    }
    // Every unit logs to the journal (kept on disk by the drop-in), none to a file.
    assert!(root
        .join("etc/systemd/journald.conf.d/hashpool.conf")
        .is_file());
    for unit in UNITS.iter().filter(|u| u.ends_with(".service")) {
        let text = fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        assert!(text.contains("\nStandardOutput=journal\n"), "{unit}");
        assert!(!text.contains("/var/log/hashpool"), "{unit}");
    }
    assert!(!root.join("etc/logrotate.d/hashpool").exists());
    // No secret in anything shipped or shared.
    for f in [
        "shared/pool.toml",
        "shared/proxy.toml",
        "hashpool.env",
        "pool.config.toml",
    ] {
        let text = fs::read_to_string(etc.join(f)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            assert!(
                !line.contains("SECRET_KEY") && !line.starts_with("authority_secret_key"),
                "{f}: {line}"
            );
        }
    }
    assert!(
        !fs::read_to_string(etc.join("shared/pool.toml"))
            .unwrap()
            .contains(hashpool_e2e::AUTHORITY_PUBLIC_KEY),
        "the SRI test key is replaced by the generated ones"
    );

    load_every_role(&etc);

    // An upgrade: the operator's edits, the keys, the mnemonic and the topology are kept; the
    // new release becomes current and the old one stays for rollback.
    let pool_config = etc.join("pool.config.toml");
    let mut edited = fs::read_to_string(&pool_config).unwrap();
    edited.push_str("\n# edited by the operator\n");
    fs::write(&pool_config, &edited).unwrap();
    let shared_before = fs::read(etc.join("shared/pool.toml")).unwrap();
    let mnemonic_before = fs::read(&mnemonic).unwrap();
    let api_token_before = fs::read(&api_token).unwrap();
    let out = install(root, &bin, "v2");
    assert!(out.contains("never overwritten"), "{out}");
    assert_eq!(fs::read_to_string(&pool_config).unwrap(), edited);
    assert_eq!(
        fs::read(etc.join("shared/pool.toml")).unwrap(),
        shared_before
    );
    assert_eq!(fs::read(&mnemonic).unwrap(), mnemonic_before);
    assert_eq!(fs::read(&api_token).unwrap(), api_token_before);
    for role in KEYED {
        assert_eq!(
            fs::read(etc.join(format!("keys/{role}.env"))).unwrap(),
            secrets[role],
            "{role}'s secret kept"
        );
    }
    assert_eq!(
        fs::read_link(root.join("opt/hashpool/current")).unwrap(),
        PathBuf::from("releases/v2")
    );
    assert!(root.join("opt/hashpool/releases/v1/bin/pool").is_file());
    load_every_role(&etc);

    // Rollback: back to v1, then forward again.
    run(Command::new("bash")
        .arg(repo().join("scripts/rollback.sh"))
        .arg("--root")
        .arg(root));
    assert_eq!(
        fs::read_link(root.join("opt/hashpool/current")).unwrap(),
        PathBuf::from("releases/v1")
    );
    run(Command::new("bash")
        .arg(repo().join("scripts/rollback.sh"))
        .arg("--root")
        .arg(root)
        .arg("--to")
        .arg("v2"));
    assert_eq!(
        fs::read_link(root.join("opt/hashpool/current")).unwrap(),
        PathBuf::from("releases/v2")
    );

    // systemd-analyze verify, inside the scratch root: systemd's own units (targets the ours
    // name) copied in; stand-ins for the programs this workspace does not build (Bitcoin Core,
    // sv2-tp).
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install Debian's systemd package (scripts/setup.sh --deps-only does)"
    );
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .expect("systemd's units (multi-user.target) on this machine");
    let copy_to = root.join("usr/lib/systemd");
    fs::create_dir_all(&copy_to).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(system_units)
        .arg(copy_to.join("system")));
    let stand_in = |path: PathBuf| {
        if !path.exists() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "#!/bin/sh\nexit 1\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    stand_in(root.join("usr/local/bin/bitcoin-node"));
    stand_in(root.join("usr/local/bin/sv2-tp"));
    for unit in UNITS {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(format!("/etc/systemd/system/{unit}"))
            .output()
            .expect("systemd-analyze");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{unit}:\n{text}"
        );
    }
    // And the check is live: a unit naming a program that is not there fails.
    fs::remove_file(root.join("opt/hashpool/current/bin/web-proxy")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/hashpool-web-proxy.service")
        .output()
        .expect("systemd-analyze");
    assert!(!out.status.success(), "verify must catch a missing binary");
}

/// The reverse-proxy example (`scripts/reverse-proxy/Caddyfile`) is a Caddyfile Caddy accepts
/// as it is (formatted), puts both dashboards behind a login and the mint in front of no
/// login, and forwards each name to the address the shipped production configs bind.
#[test]
fn the_reverse_proxy_example_is_valid_caddy_and_matches_the_prod_addresses() {
    let caddyfile = repo().join("scripts/reverse-proxy/Caddyfile");
    let out = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .output()
        .expect(
            "caddy is missing: install Debian's caddy package (scripts/setup.sh --deps-only does)",
        );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "caddy adapt: {said}");
    assert!(
        !said.contains("not formatted"),
        "run `caddy fmt --overwrite`: {said}"
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let pool: PoolGlobalConfig =
        hashpool_config::load_with_env(&repo().join("config/prod/shared/pool.toml"), vec![])
            .unwrap();
    let proxy: ProxyGlobalConfig =
        hashpool_config::load_with_env(&repo().join("config/prod/shared/proxy.toml"), vec![])
            .unwrap();
    let expected = [
        ("pool.example.org", pool.web.address.to_string(), true),
        ("miner.example.org", proxy.web.address.to_string(), true),
        (
            "mint.example.org",
            pool.mint.http_address.to_string(),
            false,
        ),
    ];

    let routes = config["apps"]["http"]["servers"]["srv0"]["routes"]
        .as_array()
        .expect("routes");
    for (host, upstream, login) in expected {
        let route = routes
            .iter()
            .find(|r| r["match"][0]["host"][0] == host)
            .unwrap_or_else(|| panic!("no site for {host}"));
        let text = route.to_string();
        assert!(
            text.contains(&format!("\"dial\":\"{upstream}\"")),
            "{host} must forward to {upstream}: {text}"
        );
        assert_eq!(
            text.contains("\"handler\":\"authentication\""),
            login,
            "{host}: a login {}: {text}",
            if login {
                "is required"
            } else {
                "is not wanted"
            }
        );
    }
}
