//! The operator's commands: `up` (check, start the supervisor, wait for health), `status`,
//! `stop`, `logs`.

use std::{
    fmt::Write as _,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{
    profile::{self, Profile},
    state::{self, Phase, RunDir, State},
    supervisor::{find_binary, START_MARKER},
};

/// Failures in a row after which `up` reports a role instead of waiting for it.
const FAILURES_TO_REPORT: u32 = 3;

/// Everything `up` needs to know.
pub struct UpOptions {
    pub profile: String,
    pub run_dir: PathBuf,
    pub bin_dir: Option<PathBuf>,
    pub timeout: Duration,
}

/// A profile checked and ready to run: absolute paths, binaries found, ports free.
pub struct Prepared {
    pub profile: Profile,
    pub profile_path: PathBuf,
    pub workdir: PathBuf,
    pub bin_dir: PathBuf,
    pub run: RunDir,
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// The directory the `hashpool` binary is in: the other roles are built beside it.
fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the hashpool binary")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// Checks what would make a start fail, with what to do about it.
pub fn prepare(options: &UpOptions) -> anyhow::Result<Prepared> {
    let profile_path = absolute(&profile::resolve(&options.profile)?)?;
    let profile = Profile::load(&profile_path)?;
    if let Some(cycle) = profile.cycle() {
        bail!("profile {}: {cycle}", profile_path.display());
    }
    let run = RunDir::new(absolute(&options.run_dir)?);
    if run.supervisor_running()? {
        let pid = run
            .read_state()
            .ok()
            .flatten()
            .map(|s| format!(" (pid {})", s.supervisor_pid))
            .unwrap_or_default();
        bail!(
            "hashpool is already running from {}{pid}: `hashpool status` shows it, `hashpool stop` stops it",
            run.root.display()
        );
    }
    let workdir = absolute(&profile.workdir)?;
    if !workdir.is_dir() {
        bail!(
            "profile {}: workdir {} is not a directory",
            profile_path.display(),
            workdir.display()
        );
    }
    let bin_dir = match &options.bin_dir {
        Some(d) => absolute(d)?,
        None => default_bin_dir()?,
    };
    for role in &profile.roles {
        if find_binary(&role.command, &bin_dir, &workdir).is_none() {
            bail!(
                "role {}: binary `{}` not found in {} or on PATH: build the workspace first \
                 (`cargo build --workspace`), or pass --bin-dir",
                role.name,
                role.command,
                bin_dir.display()
            );
        }
    }
    for role in &profile.roles {
        for port in &role.ports {
            if state::port_in_use(*port) {
                bail!(
                    "port {port} (role {}) is already in use: another run or program listens there. \
                     Find it with `ss -ltnp 'sport = :{port}'` and stop it, or change the port in \
                     the role's config and profile",
                    role.name
                );
            }
        }
    }
    run.create()
        .with_context(|| format!("creating {}", run.root.display()))?;
    Ok(Prepared {
        profile,
        profile_path,
        workdir,
        bin_dir,
        run,
    })
}

/// Starts the supervisor in the background (its own session, its log in the run directory) and
/// waits until every role is healthy, one has been given up, or the timeout passes.
pub fn up(options: &UpOptions) -> anyhow::Result<()> {
    let prepared = prepare(options)?;
    let exe = std::env::current_exe().context("locating the hashpool binary")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(prepared.run.supervisor_log())
        .with_context(|| format!("opening {}", prepared.run.supervisor_log().display()))?;
    let mut command = Command::new(exe);
    command
        .arg("supervise")
        .arg("--profile")
        .arg(&prepared.profile_path)
        .arg("--run-dir")
        .arg(&prepared.run.root)
        .arg("--bin-dir")
        .arg(&prepared.bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    // SAFETY: setsid is async-signal-safe; it detaches the supervisor from this terminal so it
    // outlives the shell that ran `hashpool up`.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut supervisor = command.spawn().context("starting the supervisor")?;
    println!(
        "==> starting {} roles from {} (logs in {})",
        prepared.profile.roles.len(),
        prepared.profile_path.display(),
        prepared.run.logs().display()
    );

    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(status) = supervisor.try_wait()? {
            let tail = tail_lines(&prepared.run.supervisor_log(), 20).unwrap_or_default();
            bail!("the supervisor exited at start ({status}):\n{tail}");
        }
        let timed_out = started.elapsed() >= options.timeout;
        // The supervisor's own state only (the file may still be the last run's).
        let state = prepared
            .run
            .read_state()
            .ok()
            .flatten()
            .filter(|s| s.supervisor_pid == supervisor.id());
        let Some(state) = state else {
            if timed_out {
                bail!(
                    "the supervisor wrote no state in {} s: see {}",
                    options.timeout.as_secs(),
                    prepared.run.supervisor_log().display()
                );
            }
            continue;
        };
        // A role given up, or failing at start again and again (the supervisor keeps retrying
        // it until it gives up, which with the default back-off takes minutes): say why now.
        let failing = state
            .roles
            .iter()
            .find(|r| r.phase == Phase::Failed)
            .or_else(|| {
                state
                    .roles
                    .iter()
                    .find(|r| r.failures >= FAILURES_TO_REPORT && r.phase != Phase::Healthy)
            });
        if let Some(failed) = failing {
            print!("{}", render_status(&state, true));
            let output = last_run_output(&failed.log, 15).unwrap_or_default();
            let what = if failed.phase == Phase::Failed {
                "could not be started"
            } else {
                "keeps failing at start (the supervisor retries it with back-off and gives up after the profile's max_failures)"
            };
            bail!(
                "role {} {what}: {}\nits last run said ({}):\n{output}\n\
                 The other roles keep running: `hashpool stop` stops them.",
                failed.name,
                failed.message.as_deref().unwrap_or("failed"),
                failed.log.display()
            );
        }
        if state.roles.iter().all(|r| r.phase == Phase::Healthy) {
            print!("{}", render_status(&state, true));
            println!("==> every role is healthy");
            for page in &state.pages {
                println!("    {:<22} {}", page.name, page.url);
            }
            println!(
                "`hashpool status`, `hashpool logs [ROLE] --follow`, `hashpool stop` (same directory)"
            );
            return Ok(());
        }
        if timed_out {
            print!("{}", render_status(&state, true));
            let slow: Vec<_> = state
                .roles
                .iter()
                .filter(|r| r.phase != Phase::Healthy)
                .map(|r| r.name.as_str())
                .collect();
            bail!(
                "not every role is healthy after {} s ({}); the supervisor keeps trying: \
                 `hashpool logs ROLE` shows why, `hashpool stop` stops everything",
                options.timeout.as_secs(),
                slow.join(", ")
            );
        }
    }
}

/// `hashpool status`: the table, or JSON for scripts.
pub fn status(run_dir: &Path, json: bool) -> anyhow::Result<bool> {
    let run = RunDir::new(absolute(run_dir)?);
    let running = run.supervisor_running()?;
    let state = run.read_state()?;
    if json {
        let value = serde_json::json!({ "running": running, "state": state });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(running);
    }
    match (&state, running) {
        (Some(state), true) => print!("{}", render_status(state, true)),
        (Some(state), false) => {
            println!("hashpool is not running in {}", run.root.display());
            let orphans = alive_roles(state);
            if !orphans.is_empty() {
                println!(
                    "but these roles of the last run are still alive: {}; `hashpool stop` ends them",
                    orphans.join(", ")
                );
            }
        }
        (None, _) => println!("hashpool is not running in {}", run.root.display()),
    }
    Ok(running)
}

fn alive_roles(state: &State) -> Vec<String> {
    state
        .roles
        .iter()
        .filter(|r| r.pid.is_some_and(|p| is_our_role(p, r)))
        .map(|r| format!("{} (pid {})", r.name, r.pid.unwrap_or_default()))
        .collect()
}

/// A pid from an old state file is ours only if it still leads its own process group and runs
/// the program the role ran (pids are reused).
fn is_our_role(pid: u32, role: &state::RoleState) -> bool {
    if !state::process_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let leads_its_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // After the command name (which may hold spaces): state ppid pgrp ...
            let rest = stat.rsplit_once(") ")?.1;
            rest.split_whitespace().nth(2)?.parse::<u32>().ok()
        })
        .is_some_and(|pgrp| pgrp == pid);
    leads_its_group && Path::new(std::ffi::OsStr::from_bytes(argv0)) == role.exe
}

pub fn render_status(state: &State, with_header: bool) -> String {
    let now = hashpool_role::unix_now();
    let mut out = String::new();
    if with_header {
        let _ = writeln!(
            out,
            "hashpool supervisor pid {}, up {}, profile {}{}",
            state.supervisor_pid,
            human_duration(now.saturating_sub(state.started_at)),
            state.profile.display(),
            if state.stopping { " (stopping)" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>8} {:>8} {:>9}  NOTE",
        "ROLE", "STATE", "PID", "RESTARTS", "UPTIME"
    );
    for role in &state.roles {
        let pid = role
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let uptime = role
            .started_at
            .filter(|_| role.pid.is_some())
            .map(|t| human_duration(now.saturating_sub(t)))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>8} {:>8} {:>9}  {}",
            role.name,
            role.phase.as_str(),
            pid,
            role.restarts,
            uptime,
            role.message.as_deref().unwrap_or("")
        );
    }
    out
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `hashpool stop`: the supervisor stops every role; whatever a killed supervisor left behind
/// is ended here; returns once every process is gone and every port is free.
pub fn stop(run_dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let run = RunDir::new(absolute(run_dir)?);
    if run.supervisor_running()? {
        // The pid comes from the lock file the supervisor wrote after taking the lock (the state
        // file may still be the last run's), and must still be a `hashpool supervise`.
        let pid = run
            .supervisor_pid()
            .filter(|p| is_supervisor(*p))
            .with_context(|| {
                format!(
                    "a supervisor holds {} but its pid is not recorded yet; try again in a moment",
                    run.root.display()
                )
            })?;
        let pid = libc::pid_t::try_from(pid).context("supervisor pid")?;
        // SAFETY: kill(2) on the pid checked above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while run.supervisor_running()? {
            if started.elapsed() >= timeout {
                eprintln!(
                    "the supervisor did not stop in {} s; killing it",
                    timeout.as_secs()
                );
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Read after the supervisor is gone: its last word on which roles ran where.
    let last = match run.read_state() {
        Ok(Some(state)) => state,
        Ok(None) => {
            println!("hashpool is not running in {}", run.root.display());
            return Ok(());
        }
        Err(e) => bail!("{e}: the supervisor has stopped, but which roles ran is unknown"),
    };
    // Roles a killed supervisor could not stop.
    for role in &last.roles {
        if let Some(pid) = role.pid.filter(|p| is_our_role(*p, role)) {
            eprintln!(
                "{} (pid {pid}) outlived its supervisor; killing it",
                role.name
            );
            state::signal_group(pid, libc::SIGKILL);
        }
    }
    let started = Instant::now();
    let mut busy = Vec::new();
    for role in &last.roles {
        for port in &role.ports {
            while state::port_in_use(*port) && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if state::port_in_use(*port) {
                busy.push(format!("{port} ({})", role.name));
            }
        }
    }
    if !busy.is_empty() {
        bail!(
            "stopped, but ports still in use: {}; `ss -ltnp` shows who holds them",
            busy.join(", ")
        );
    }
    println!("==> stopped {} roles; every port is free", last.roles.len());
    Ok(())
}

/// Whether `pid` is a `hashpool supervise` process.
fn is_supervisor(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"supervise"))
        .unwrap_or(false)
}

/// The last `n` lines of a file, reading at most its last MiB.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<String> {
    tail_until(path, n, None)
}

/// The last `n` lines before byte `end` (the file's end if `None`).
fn tail_until(path: &Path, n: usize, end: Option<u64>) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = end.unwrap_or(file.metadata()?.len());
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(len - start).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line is cut.
        lines.remove(0);
    }
    let from = lines.len().saturating_sub(n);
    Ok(lines[from..].join("\n"))
}

const TAIL_WINDOW: u64 = 1 << 20;

/// The first `n` lines a role wrote in its last run that wrote anything (runs start at the
/// supervisor's start markers): where a failed start explains itself, before any backtrace. A
/// run just started and still silent is skipped.
pub fn last_run_output(path: &Path, n: usize) -> std::io::Result<String> {
    let text = tail_lines(path, 10_000)?;
    let runs: Vec<&str> = text
        .split(START_MARKER)
        .map(|run| run.split_once('\n').map(|(_, rest)| rest).unwrap_or(""))
        .collect();
    let run = runs
        .into_iter()
        .rev()
        .find(|output| !output.trim().is_empty())
        .unwrap_or("");
    Ok(run.lines().take(n).collect::<Vec<_>>().join("\n"))
}

/// `hashpool logs [ROLE] [-n N] [--follow]`: a role's log, or the supervisor's without a role.
pub fn logs(run_dir: &Path, role: Option<&str>, lines: usize, follow: bool) -> anyhow::Result<()> {
    let run = RunDir::new(absolute(run_dir)?);
    let path = match role {
        None => run.supervisor_log(),
        Some(name) => {
            let path = run.role_log(name);
            if !path.exists() {
                let known: Vec<String> = run
                    .read_state()
                    .ok()
                    .flatten()
                    .map(|s| s.roles.into_iter().map(|r| r.name).collect())
                    .unwrap_or_default();
                bail!(
                    "no log for role {name:?} in {}{}",
                    run.logs().display(),
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (roles: {})", known.join(", "))
                    }
                );
            }
            path
        }
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    // Where the file ends now: the tail is printed up to here and following starts here, so no
    // line written in between is lost.
    let mut pos = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let tail = tail_until(&path, lines, Some(pos))
        .with_context(|| format!("reading {}", path.display()))?;
    if !tail.is_empty() {
        writeln!(out, "{tail}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut buf = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Truncated or replaced (rotation): read the new file from its start.
            pos = 0;
        }
        if len == pos {
            continue;
        }
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(pos))?;
        buf.clear();
        let read = file.read_to_end(&mut buf)?;
        pos += read as u64;
        out.write_all(&buf)?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m05s");
        assert_eq!(human_duration(7_260), "2h01m");
        assert_eq!(human_duration(90_000), "1d01h");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&p, 2).unwrap(), "c\nd");
        assert_eq!(tail_lines(&p, 10).unwrap(), "a\nb\nc\nd");
    }

    #[test]
    fn a_failed_start_is_explained_by_its_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.log");
        let log = format!(
            "{START_MARKER} #1 ----\nError: old\n{START_MARKER} #2 ----\nError: bad key\nStack backtrace:\n  0: x\n{START_MARKER} #3 ----\n"
        );
        std::fs::write(&p, log).unwrap();
        assert_eq!(
            last_run_output(&p, 2).unwrap(),
            "Error: bad key\nStack backtrace:"
        );
    }

    #[test]
    fn a_missing_profile_says_where_it_looked() {
        let options = UpOptions {
            profile: "no-such-profile".into(),
            run_dir: PathBuf::from("/nonexistent"),
            bin_dir: None,
            timeout: Duration::from_secs(1),
        };
        let err = prepare(&options).err().unwrap().to_string();
        assert!(
            err.contains("config/profiles/no-such-profile.toml"),
            "{err}"
        );
    }
}
