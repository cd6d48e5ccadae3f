//! The supervisor: starts every role of a profile in dependency order, checks their health,
//! restarts the ones that die (exponential back-off, given up after too many failures in a
//! row), and stops them all, in reverse order, when told to.

use std::{
    fs::OpenOptions,
    future::Future,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use tracing::{error, info, warn};

use crate::{
    health::Checker,
    profile::{Profile, RoleSpec},
    state::{self, Phase, RoleState, RunDir, State},
};

/// How often exits are noticed and due starts made.
const TICK: Duration = Duration::from_millis(200);
/// Roles still starting are checked this often.
const STARTING_CHECK: Duration = Duration::from_millis(500);
/// A role without health checks counts as healthy once it has run this long.
const MIN_UPTIME: Duration = Duration::from_secs(1);
/// Starts each run's lines in a role's log.
pub const START_MARKER: &str = "---- hashpool: start";
/// Time given to a stopped role's ports to close.
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(10);

struct Slot {
    spec: RoleSpec,
    exe: PathBuf,
    log: PathBuf,
    phase: Phase,
    child: Option<Child>,
    started: Option<Instant>,
    started_unix: Option<u64>,
    healthy_since: Option<Instant>,
    spawns: u32,
    failures: u32,
    bad_checks: u32,
    retry_at: Option<Instant>,
    last_check: Option<Instant>,
    message: Option<String>,
}

pub struct Supervisor {
    profile: Profile,
    profile_path: PathBuf,
    workdir: PathBuf,
    run: RunDir,
    slots: Vec<Slot>,
    checker: Checker,
    started_at: u64,
    stopping: bool,
    announced_up: bool,
}

/// Where a role's binary is: a path (relative to the work directory), or a name looked up in
/// the bin directory, then on `PATH`. Only executable files count.
pub fn find_binary(command: &str, bin_dir: &Path, workdir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let p = workdir.join(command);
        return runnable(&p).then_some(p);
    }
    let in_bin = bin_dir.join(command);
    if runnable(&in_bin) {
        return Some(in_bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(command))
            .find(|p| runnable(p))
    })
}

impl Supervisor {
    pub fn new(
        profile: Profile,
        profile_path: PathBuf,
        workdir: PathBuf,
        bin_dir: &Path,
        run: RunDir,
    ) -> anyhow::Result<Self> {
        let mut slots = Vec::new();
        for spec in &profile.roles {
            let exe = find_binary(&spec.command, bin_dir, &workdir).with_context(|| {
                format!(
                    "role {}: binary `{}` not found in {} or on PATH",
                    spec.name,
                    spec.command,
                    bin_dir.display()
                )
            })?;
            slots.push(Slot {
                spec: spec.clone(),
                exe,
                log: run.role_log(&spec.name),
                phase: Phase::Waiting,
                child: None,
                started: None,
                started_unix: None,
                healthy_since: None,
                spawns: 0,
                failures: 0,
                bad_checks: 0,
                retry_at: None,
                last_check: None,
                message: None,
            });
        }
        Ok(Self {
            profile,
            profile_path,
            workdir,
            run,
            slots,
            checker: Checker::new()?,
            started_at: hashpool_role::unix_now(),
            stopping: false,
            announced_up: false,
        })
    }

    /// Runs until `shutdown` completes, then stops every role.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        info!(
            profile = %self.profile_path.display(),
            roles = self.slots.len(),
            "supervisor started"
        );
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Polled first, so its signal handlers are in place before any role starts.
                biased;
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            self.reap();
            self.start_due();
            self.check_health().await;
            self.announce();
            self.save();
        }
        self.stop_all().await;
        Ok(())
    }

    fn settings(&self) -> &crate::profile::SupervisorSettings {
        &self.profile.supervisor
    }

    /// Notices roles that exited.
    fn reap(&mut self) {
        let settings = self.profile.supervisor.clone();
        for slot in &mut self.slots {
            let Some(child) = slot.child.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    // Whatever the role started in its group goes with it.
                    state::signal_group(child.id(), libc::SIGKILL);
                    slot.child = None;
                    let uptime = slot.started.map(|s| s.elapsed()).unwrap_or_default();
                    let what = format!(
                        "exited ({}) after {:.1} s",
                        describe_exit(status),
                        uptime.as_secs_f64()
                    );
                    fail(slot, &settings, what);
                }
                Ok(None) => {}
                Err(e) => warn!(role = %slot.spec.name, "cannot wait for the process: {e}"),
            }
        }
    }

    /// Starts roles whose dependencies are healthy, and restarts those whose delay is over.
    fn start_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].phase == Phase::Waiting {
                let message = self.waiting_for(i);
                self.slots[i].message = message;
            }
            let due = match self.slots[i].phase {
                Phase::Waiting => self.slots[i].spec.after.iter().all(|dep| {
                    self.slots
                        .iter()
                        .any(|s| &s.spec.name == dep && s.phase == Phase::Healthy)
                }),
                Phase::Backoff => self.slots[i].retry_at.is_some_and(|t| now >= t),
                _ => false,
            };
            if due {
                self.spawn(i);
            }
        }
    }

    /// What a waiting role waits for (and whether that was given up).
    fn waiting_for(&self, i: usize) -> Option<String> {
        let pending: Vec<String> = self.slots[i]
            .spec
            .after
            .iter()
            .filter_map(|dep| self.slots.iter().find(|s| &s.spec.name == dep))
            .filter(|s| s.phase != Phase::Healthy)
            .map(|s| match s.phase {
                Phase::Failed => format!("{} (given up)", s.spec.name),
                _ => s.spec.name.clone(),
            })
            .collect();
        (!pending.is_empty()).then(|| format!("waiting for {}", pending.join(", ")))
    }

    fn spawn(&mut self, i: usize) {
        let settings = self.profile.supervisor.clone();
        let env = self.profile.env.clone();
        let workdir = self.workdir.clone();
        let slot = &mut self.slots[i];
        slot.spawns += 1;
        let attempt = slot.spawns;
        match start_process(slot, &env, &workdir) {
            Ok(child) => {
                info!(role = %slot.spec.name, pid = child.id(), attempt, "started");
                slot.message = None;
                slot.child = Some(child);
                slot.phase = Phase::Starting;
                slot.started = Some(Instant::now());
                slot.started_unix = Some(hashpool_role::unix_now());
                slot.healthy_since = None;
                slot.bad_checks = 0;
                slot.last_check = None;
                slot.retry_at = None;
            }
            Err(e) => fail(slot, &settings, format!("cannot start: {e:#}")),
        }
    }

    async fn check_health(&mut self) {
        let now = Instant::now();
        let interval = Duration::from_millis(self.settings().health_interval_ms);
        let due: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                let every = match s.phase {
                    Phase::Starting => STARTING_CHECK,
                    Phase::Healthy | Phase::Unhealthy => interval,
                    _ => return false,
                };
                s.child.is_some() && s.last_check.is_none_or(|t| now.duration_since(t) >= every)
            })
            .map(|(i, _)| i)
            .collect();
        if due.is_empty() {
            return;
        }
        let checker = &self.checker;
        let results = {
            let checks = due.iter().map(|&i| checker.check(&self.slots[i].spec));
            futures::future::join_all(checks).await
        };
        for (i, result) in due.into_iter().zip(results) {
            self.judge(i, result).await;
        }
    }

    async fn judge(&mut self, i: usize, result: Result<(), String>) {
        let settings = self.profile.supervisor.clone();
        let slot = &mut self.slots[i];
        slot.last_check = Some(Instant::now());
        let uptime = slot.started.map(|s| s.elapsed()).unwrap_or_default();
        let no_checks = slot.spec.ports.is_empty() && slot.spec.health_http.is_empty();
        let ok = result.is_ok() && (!no_checks || uptime >= MIN_UPTIME);
        match (slot.phase, ok) {
            (Phase::Starting, true) | (Phase::Unhealthy, true) => {
                info!(role = %slot.spec.name, after_secs = uptime.as_secs_f64(), "healthy");
                slot.phase = Phase::Healthy;
                slot.healthy_since = Some(Instant::now());
                slot.bad_checks = 0;
                slot.message = None;
            }
            (Phase::Healthy, true) => {
                let stable = Duration::from_secs(settings.stable_after_secs);
                if slot.failures > 0 && slot.healthy_since.is_some_and(|t| t.elapsed() >= stable) {
                    slot.failures = 0;
                }
            }
            (Phase::Starting, false) => {
                if uptime >= Duration::from_secs(settings.start_timeout_secs) {
                    let reason = result.err().unwrap_or_default();
                    terminate(slot, &settings).await;
                    fail(
                        slot,
                        &settings,
                        format!(
                            "not healthy {} s after start ({reason})",
                            settings.start_timeout_secs
                        ),
                    );
                } else if let Err(reason) = result {
                    slot.message = Some(format!("starting: {reason}"));
                }
            }
            (Phase::Healthy, false) | (Phase::Unhealthy, false) => {
                let reason = result.err().unwrap_or_default();
                slot.bad_checks += 1;
                slot.phase = Phase::Unhealthy;
                warn!(role = %slot.spec.name, checks = slot.bad_checks, "health check failed: {reason}");
                if slot.bad_checks >= settings.unhealthy_limit {
                    terminate(slot, &settings).await;
                    fail(
                        slot,
                        &settings,
                        format!(
                            "failed {} health checks in a row ({reason})",
                            slot.bad_checks
                        ),
                    );
                } else {
                    slot.message = Some(reason);
                }
            }
            _ => {}
        }
    }

    /// Logs once when every role is healthy for the first time.
    fn announce(&mut self) {
        if !self.announced_up && self.slots.iter().all(|s| s.phase == Phase::Healthy) {
            self.announced_up = true;
            info!("every role is healthy");
            for page in &self.profile.pages {
                info!("{}: {}", page.name, page.url);
            }
        }
    }

    fn snapshot(&self) -> State {
        State {
            supervisor_pid: std::process::id(),
            profile: self.profile_path.clone(),
            started_at: self.started_at,
            updated_at: hashpool_role::unix_now(),
            stopping: self.stopping,
            roles: self
                .slots
                .iter()
                .map(|s| RoleState {
                    name: s.spec.name.clone(),
                    phase: s.phase,
                    pid: s.child.as_ref().map(|c| c.id()),
                    restarts: s.spawns.saturating_sub(1),
                    failures: s.failures,
                    started_at: s.child.as_ref().and(s.started_unix),
                    message: s.message.clone(),
                    ports: s.spec.ports.clone(),
                    log: s.log.clone(),
                    exe: s.exe.clone(),
                })
                .collect(),
            pages: self.profile.pages.clone(),
        }
    }

    fn save(&self) {
        if let Err(e) = self.run.write_state(&self.snapshot()) {
            warn!("cannot write {}: {e}", self.run.state_file().display());
        }
    }

    /// Stops every role, last started first, and waits until their ports are free.
    async fn stop_all(&mut self) {
        info!("stopping every role");
        self.stopping = true;
        self.save();
        let settings = self.profile.supervisor.clone();
        for i in (0..self.slots.len()).rev() {
            let slot = &mut self.slots[i];
            if slot.child.is_some() {
                terminate(slot, &settings).await;
                info!(role = %slot.spec.name, "stopped");
            }
            slot.phase = Phase::Stopped;
            slot.message = None;
            self.save();
        }
        let deadline = Instant::now() + PORTS_FREE_TIMEOUT;
        for slot in &self.slots {
            for port in &slot.spec.ports {
                while state::port_in_use(*port) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if state::port_in_use(*port) {
                    warn!(role = %slot.spec.name, port, "port still in use after the role stopped");
                }
            }
        }
        self.save();
        info!("every role stopped");
    }
}

/// A failure in a row: back off and restart, or give up.
fn fail(slot: &mut Slot, settings: &crate::profile::SupervisorSettings, what: String) {
    slot.child = None;
    slot.failures += 1;
    if slot.failures >= settings.max_failures {
        slot.phase = Phase::Failed;
        slot.retry_at = None;
        let message = format!(
            "gave up after {} failures in a row; last: {what}; see {}",
            slot.failures,
            slot.log.display()
        );
        error!(role = %slot.spec.name, "{message}");
        slot.message = Some(message);
    } else {
        let delay = settings.backoff(slot.failures);
        slot.phase = Phase::Backoff;
        slot.retry_at = Some(Instant::now() + delay);
        let message = format!("{what}; restart in {:.1} s", delay.as_secs_f64());
        warn!(role = %slot.spec.name, failures = slot.failures, "{message}");
        slot.message = Some(message);
    }
}

/// SIGTERM to the role's process group, SIGKILL if it has not exited in time.
async fn terminate(slot: &mut Slot, settings: &crate::profile::SupervisorSettings) {
    let Some(mut child) = slot.child.take() else {
        return;
    };
    let pid = child.id();
    state::signal_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(settings.stop_timeout_secs);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => {
                warn!(role = %slot.spec.name, pid, "did not stop after SIGTERM; sending SIGKILL");
                state::signal_group(pid, libc::SIGKILL);
                let _ = child.wait();
                break;
            }
        }
    }
    // Anything the role started itself, in its group, goes with it.
    state::signal_group(pid, libc::SIGKILL);
}

fn start_process(
    slot: &Slot,
    env: &std::collections::BTreeMap<String, String>,
    workdir: &Path,
) -> anyhow::Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&slot.log)
        .with_context(|| format!("opening {}", slot.log.display()))?;
    writeln!(
        log,
        "{START_MARKER} #{} of {} at unix time {}: {} {} ----",
        slot.spawns,
        slot.spec.name,
        hashpool_role::unix_now(),
        slot.exe.display(),
        slot.spec.args.join(" ")
    )?;
    let supervisor = std::process::id();
    let mut command = Command::new(&slot.exe);
    command
        .args(&slot.spec.args)
        .envs(env)
        .envs(&slot.spec.env)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        // Its own process group: stopping a role stops what it started, and a Ctrl-C on the
        // supervisor's terminal reaches the supervisor only, which stops roles in order.
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // If the supervisor dies (even by SIGKILL), its roles are told to stop: none is
            // left orphaned.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != supervisor {
                return Err(std::io::Error::other("the supervisor has exited"));
            }
            Ok(())
        });
    }
    command
        .spawn()
        .with_context(|| format!("running {}", slot.exe.display()))
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}
