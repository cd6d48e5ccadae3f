//! A role that cannot start: given up after ten failures in a row, and the errors say what
//! to do.

use super::*;

#[test]
fn a_role_that_cannot_start_is_given_up_after_ten_failures_and_errors_say_what_to_do() {
    let quiet = ports_outside_ephemeral_range(3);
    let [tp, tp_http, monitoring] =
        [quiet[0], quiet[1], quiet[2]].map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
    let profile = format!(
        r#"[supervisor]
health_interval_ms = 200
restart_initial_ms = 20
restart_max_ms = 200
max_failures = 10
unhealthy_limit = 10

[[role]]
name = "template-provider"
command = "template-provider"
args = ["-c", {tp_config:?}]
ports = [{tp_port}, {tp_http_port}]
health_http = ["http://{tp_http}/status"]
[role.env]
HASHPOOL__TEMPLATE_PROVIDER__LISTEN_ADDRESS = "{tp}"
HASHPOOL__TEMPLATE_PROVIDER__HTTP_ADDRESS = "{tp_http}"

# A bad config value: the pool refuses to start, every time.
[[role]]
name = "pool"
command = "pool"
args = ["-c", {pool_config:?}, "-g", {shared:?}]
after = ["template-provider"]
ports = [{monitoring_port}]
[role.env]
HASHPOOL__POOL__MONITORING_ADDRESS = "{monitoring}"
HASHPOOL__POOL__SHARES_PER_MINUTE = "lots"
"#,
        tp_config = repo_config("template-provider.config.toml"),
        pool_config = repo_config("pool.config.toml"),
        shared = repo_config("shared/pool.toml"),
        tp_port = tp.port(),
        tp_http_port = tp_http.port(),
        monitoring_port = monitoring.port(),
    );
    let run = Run::new(&profile);

    // A port in use: refused before anything starts, naming the port and the role.
    {
        let _busy = std::net::TcpListener::bind(tp).expect("hold the port");
        let out = run.up();
        assert!(!out.status.success());
        let t = text(&out);
        assert!(
            t.contains(&format!(
                "port {} (role template-provider) is already in use",
                tp.port()
            )),
            "{t}"
        );
        assert_eq!(run.status()["running"], false);
    }

    let out = run.up();
    assert!(!out.status.success(), "up must report the failing role");
    let t = text(&out);
    // Reported as soon as it fails a third time, or once given up.
    assert!(
        t.contains("role pool keeps failing at start")
            || t.contains("role pool could not be started"),
        "{t}"
    );
    // The pool's own reason, from its log.
    assert!(t.contains("shares_per_minute"), "{t}");

    let status = run.wait_for("the pool given up", |s| {
        let r = roles(s);
        role(&r, "pool")["phase"] == "failed"
    });
    assert!(role(&roles(&status), "pool")["message"]
        .as_str()
        .is_some_and(|m| m.contains("gave up after 10 failures in a row")));
    let r = roles(&status);
    let pool = role(&r, "pool");
    assert_eq!(pool["phase"], "failed", "{status:#}");
    assert_eq!(pool["failures"], 10);
    assert_eq!(
        pool["restarts"], 9,
        "ten starts: the first and nine restarts"
    );
    assert!(pool["pid"].is_null());
    assert_eq!(role(&r, "template-provider")["phase"], "healthy");
    let human = text(&run.hashpool(&["status"]));
    assert!(
        human.contains("failed") && human.contains("gave up"),
        "{human}"
    );
    let supervisor_log = text(&run.hashpool(&["logs", "-n", "1000"]));
    let pool_restarts = supervisor_log
        .lines()
        .filter(|l| l.contains("restart in") && l.contains("role=pool"))
        .count();
    assert_eq!(
        pool_restarts, 9,
        "nine restarts with back-off before giving up: {supervisor_log}"
    );

    assert_stopped(
        &run,
        &pids(&status),
        &[tp.port(), tp_http.port(), monitoring.port()],
    );

    // A binary that does not exist: refused with what to do.
    let missing = Run::new("[[role]]\nname = \"ghost\"\ncommand = \"no-such-hashpool-role\"\n");
    let out = missing.up();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("binary `no-such-hashpool-role` not found") && t.contains("cargo build"),
        "{t}"
    );
}
