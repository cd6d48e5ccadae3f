//! `hashpool up/status/stop` on the real role binaries (built beside this test binary by
//! `cargo build --workspace --bins`, which scripts/test.sh runs first), each role on ports the
//! OS picked: every role healthy, a SIGKILLed role restarted, a role that cannot start given up
//! after ten failures in a row, and nothing left running or listening after `stop`.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use hashpool_e2e::{ports_outside_ephemeral_range, workspace_bin_dir, AUTHORITY_PUBLIC_KEY};
use serde_json::Value;

mod give_up;

fn bin_dir() -> PathBuf {
    workspace_bin_dir(&[
        "hashpool",
        "pool",
        "jd-server",
        "mint",
        "translator",
        "template-provider",
        "stats-pool",
        "stats-proxy",
        "web-pool",
        "web-proxy",
        "mining-device",
        "mining-device-sv1",
    ])
}

fn repo_config(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(file)
        .display()
        .to_string()
}

/// One run directory and its profile; `stop` runs when it is dropped, so a failing test leaves
/// nothing behind.
struct Run {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Run {
    fn new(profile: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("profile.toml"), profile).expect("write profile");
        Self {
            dir,
            bin: bin_dir(),
        }
    }

    fn hashpool(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("hashpool"))
            .arg("--run-dir")
            .arg(self.dir.path().join("run"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run hashpool")
    }

    fn up(&self) -> Output {
        self.hashpool(&["up", "--profile", "profile.toml", "--timeout-secs", "120"])
    }

    fn status(&self) -> Value {
        let out = self.hashpool(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    fn stop(&self) -> Output {
        self.hashpool(&["stop"])
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status();
            if ok(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}: last status {status:#}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn roles(status: &Value) -> Vec<Value> {
    status["state"]["roles"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn role<'a>(roles: &'a [Value], name: &str) -> &'a Value {
    roles
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("role {name} in status"))
}

fn all_healthy(status: &Value) -> bool {
    status["running"] == true && roles(status).iter().all(|r| r["phase"] == "healthy")
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Every role of a local run, on ports picked now; addresses set through the roles'
/// `HASHPOOL__SECTION__KEY` overrides on top of the local configs in config/.
fn full_profile() -> (String, Vec<u16>) {
    let names = [
        "tp",
        "tp_http",
        "pool",
        "mint_link",
        "monitoring",
        "mint",
        "stats_pool_ingest",
        "stats_pool_http",
        "stats_proxy_ingest",
        "stats_proxy_http",
        "web_pool",
        "web_proxy",
        "sv1",
        "translator_monitoring",
        "wallet",
        "jd_server",
        "pool_metrics",
        "mint_metrics",
        "jd_server_metrics",
    ];
    // Ten rounds stop and start on these ports: keep them out of the ephemeral range, where the
    // other tests' sockets could take one in between.
    let ports: HashMap<&str, u16> = names
        .iter()
        .copied()
        .zip(ports_outside_ephemeral_range(names.len()))
        .collect();
    let p = |n: &str| ports[n];
    let a = |n: &str| format!("127.0.0.1:{}", ports[n]);
    let pool_side = format!(
        r#"HASHPOOL__POOL__LISTEN_ADDRESS = "{}"
HASHPOOL__POOL__MINT_LINK_ADDRESS = "{}"
HASHPOOL__POOL__MONITORING_ADDRESS = "{}"
HASHPOOL__POOL__METRICS_ADDRESS = "{}"
HASHPOOL__MINT__HTTP_ADDRESS = "{}"
HASHPOOL__MINT__MONITORING_ADDRESS = "{}"
HASHPOOL__STATS__INGEST_ADDRESS = "{}"
HASHPOOL__STATS__HTTP_ADDRESS = "{}"
HASHPOOL__WEB__ADDRESS = "{}"
HASHPOOL__TEMPLATE_PROVIDER__ADDRESS = "{}"
"#,
        a("pool"),
        a("mint_link"),
        a("monitoring"),
        a("pool_metrics"),
        a("mint"),
        a("mint_metrics"),
        a("stats_pool_ingest"),
        a("stats_pool_http"),
        a("web_pool"),
        a("tp"),
    );
    let proxy_side = format!(
        r#"HASHPOOL__TRANSLATOR__DOWNSTREAM_ADDRESS = "{}"
HASHPOOL__TRANSLATOR__UPSTREAM_ADDRESS = "{}"
HASHPOOL__TRANSLATOR__MONITORING_ADDRESS = "{}"
HASHPOOL__WALLET__API_ADDRESS = "{}"
HASHPOOL__WALLET__MINT_URL = "http://{}"
HASHPOOL__STATS__INGEST_ADDRESS = "{}"
HASHPOOL__STATS__HTTP_ADDRESS = "{}"
HASHPOOL__WEB__ADDRESS = "{}"
"#,
        a("sv1"),
        a("pool"),
        a("translator_monitoring"),
        a("wallet"),
        a("mint"),
        a("stats_proxy_ingest"),
        a("stats_proxy_http"),
        a("web_proxy"),
    );
    let mut profile = String::from(
        r#"[supervisor]
health_interval_ms = 500
start_timeout_secs = 60
restart_initial_ms = 200
restart_max_ms = 2000
max_failures = 10
# A loaded test machine may answer a check late; only an exit counts here.
unhealthy_limit = 10
stop_timeout_secs = 10

[env]
RUST_LOG = "info"
"#,
    );
    let mut role = |name: &str,
                    command: &str,
                    args: Vec<String>,
                    after: &[&str],
                    role_ports: &[u16],
                    health: Option<String>,
                    env: &str| {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let after: Vec<String> = after.iter().map(|a| format!("{a:?}")).collect();
        let health: Vec<String> = health.into_iter().map(|h| format!("{h:?}")).collect();
        let _ = write!(
            profile,
            "\n[[role]]\nname = {name:?}\ncommand = {command:?}\nargs = [{}]\nafter = [{}]\nports = {role_ports:?}\nhealth_http = [{}]\n[role.env]\n{env}",
            args.join(", "),
            after.join(", "),
            health.join(", "),
        );
    };
    let cfg = |role: &str, shared: &str| {
        vec![
            "-c".to_string(),
            repo_config(&format!("{role}.config.toml")),
            "-g".to_string(),
            repo_config(&format!("shared/{shared}.toml")),
        ]
    };
    role(
        "template-provider",
        "template-provider",
        vec!["-c".into(), repo_config("template-provider.config.toml")],
        &[],
        &[p("tp"), p("tp_http")],
        Some(format!("http://{}/status", a("tp_http"))),
        &format!(
            "HASHPOOL__TEMPLATE_PROVIDER__LISTEN_ADDRESS = \"{}\"\nHASHPOOL__TEMPLATE_PROVIDER__HTTP_ADDRESS = \"{}\"\n",
            a("tp"),
            a("tp_http")
        ),
    );
    role(
        "stats-pool",
        "stats-pool",
        cfg("stats-pool", "pool"),
        &[],
        &[p("stats_pool_ingest"), p("stats_pool_http")],
        Some(format!("http://{}/api/v1/health", a("stats_pool_http"))),
        &pool_side,
    );
    role(
        "stats-proxy",
        "stats-proxy",
        cfg("stats-proxy", "proxy"),
        &[],
        &[p("stats_proxy_ingest"), p("stats_proxy_http")],
        Some(format!("http://{}/api/v1/health", a("stats_proxy_http"))),
        &proxy_side,
    );
    role(
        "pool",
        "pool",
        cfg("pool", "pool"),
        &["template-provider", "stats-pool"],
        &[p("pool"), p("mint_link"), p("monitoring")],
        Some(format!("http://{}/api/v1/health", a("monitoring"))),
        &pool_side,
    );
    role(
        "jd-server",
        "jd-server",
        cfg("jd-server", "pool"),
        &["template-provider"],
        &[p("jd_server"), p("jd_server_metrics")],
        Some(format!(
            "http://{}/api/v1/health",
            a("jd_server_metrics")
        )),
        &format!(
            "HASHPOOL__JD_SERVER__LISTEN_ADDRESS = \"{}\"\nHASHPOOL__BITCOIN_RPC__URL = \"http://{}\"\nHASHPOOL__JD_SERVER__METRICS_ADDRESS = \"{}\"\n",
            a("jd_server"),
            a("tp_http"),
            a("jd_server_metrics")
        ),
    );
    role(
        "mint",
        "mint",
        cfg("mint", "pool"),
        &["pool"],
        &[p("mint"), p("mint_metrics")],
        Some(format!("http://{}/v1/info", a("mint"))),
        &pool_side,
    );
    role(
        "translator",
        "translator",
        cfg("translator", "proxy"),
        &["pool", "mint", "stats-proxy"],
        &[p("sv1"), p("translator_monitoring"), p("wallet")],
        Some(format!(
            "http://{}/api/v1/status",
            a("translator_monitoring")
        )),
        &proxy_side,
    );
    role(
        "web-pool",
        "web-pool",
        cfg("web-pool", "pool"),
        &["stats-pool"],
        &[p("web_pool")],
        Some(format!("http://{}/", a("web_pool"))),
        &pool_side,
    );
    role(
        "web-proxy",
        "web-proxy",
        cfg("web-proxy", "proxy"),
        &["stats-proxy"],
        &[p("web_proxy")],
        Some(format!("http://{}/", a("web_proxy"))),
        &proxy_side,
    );
    role(
        "mining-device",
        "mining-device",
        [
            "--pool",
            &a("pool"),
            "--pool-pubkey",
            AUTHORITY_PUBLIC_KEY,
            "--user-identity",
            "supervised-miner",
            "--nominal-hashrate",
            "20000",
            "--limit-hashrate",
            "--wallet-mint-url",
            &format!("http://{}", a("mint")),
            "--wallet-db",
            ".hashpool/data/mining-device/wallet.sqlite",
            "--wallet-mnemonic-file",
            ".hashpool/data/mining-device/mnemonic",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        &["pool", "mint"],
        &[],
        None,
        "",
    );
    role(
        "mining-device-sv1",
        "mining-device-sv1",
        [
            "--address",
            &a("sv1"),
            "--user",
            "supervised.sv1",
            "--limit-hashrate",
            "20000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        &["translator"],
        &[],
        None,
        "",
    );
    (profile, ports.values().copied().collect())
}

/// `stop` returned: no role process is left and every port is free.
fn assert_stopped(run: &Run, pids: &[u64], ports: &[u16]) {
    let out = run.stop();
    assert!(out.status.success(), "stop failed: {}", text(&out));
    for pid in pids {
        assert!(!alive(*pid), "pid {pid} still running after stop");
    }
    for port in ports {
        assert!(port_free(*port), "port {port} still taken after stop");
    }
    let status = run.status();
    assert_eq!(status["running"], false, "{status:#}");
}

fn pids(status: &Value) -> Vec<u64> {
    let mut pids: Vec<u64> = roles(status)
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    if let Some(p) = status["state"]["supervisor_pid"].as_u64() {
        pids.push(p);
    }
    pids
}

#[test]
fn supervised_run_is_healthy_restarts_a_killed_role_and_stops_cleanly_ten_times() {
    let (profile, ports) = full_profile();
    let run = Run::new(&profile);

    let out = run.up();
    assert!(out.status.success(), "up failed: {}", text(&out));
    assert!(
        text(&out).contains("every role is healthy"),
        "{}",
        text(&out)
    );
    let status = run.status();
    assert!(all_healthy(&status), "{status:#}");
    assert_eq!(roles(&status).len(), 11);

    // A second `up` on the same run directory is refused, with what to do.
    let again = run.up();
    assert!(!again.status.success());
    assert!(text(&again).contains("already running"), "{}", text(&again));

    // SIGKILL the pool: the supervisor notices, restarts it, and it is healthy again.
    let before = role(&roles(&status), "pool")["pid"]
        .as_u64()
        .expect("pool pid");
    Command::new("kill")
        .args(["-KILL", &before.to_string()])
        .status()
        .expect("kill");
    let status = run.wait_for("the killed pool restarted and healthy", |s| {
        let r = roles(s);
        let pool = role(&r, "pool");
        pool["phase"] == "healthy"
            && pool["pid"].as_u64().is_some_and(|p| p != before)
            && pool["restarts"] == 1
    });
    assert!(!alive(before));
    // The others were left alone.
    for r in roles(&status) {
        if r["name"] != "pool" {
            assert_eq!(r["restarts"], 0, "{r:#}");
        }
    }
    let supervisor_log =
        std::fs::read_to_string(run.dir.path().join("run/logs/hashpool.log")).expect("log");
    assert!(
        supervisor_log.contains("exited (signal 9)"),
        "{supervisor_log}"
    );
    let logs = run.hashpool(&["logs", "pool", "-n", "500"]);
    assert!(text(&logs).contains("start #2 of pool"), "{}", text(&logs));

    assert_stopped(&run, &pids(&status), &ports);

    // Nine more times: up, every role healthy, stop, nothing left.
    for round in 2..=10 {
        let out = run.up();
        assert!(
            out.status.success(),
            "round {round}: up failed: {}",
            text(&out)
        );
        let status = run.status();
        assert!(all_healthy(&status), "round {round}: {status:#}");
        assert_stopped(&run, &pids(&status), &ports);
    }
}
