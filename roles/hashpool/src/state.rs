//! What the supervisor tells the other commands: its state file (JSON, replaced atomically), its
//! lock (held while it runs), and where the logs are.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::io::AsRawFd,
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::profile::Page;

/// The files of one run directory (`.hashpool` by default).
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn role_log(&self, role: &str) -> PathBuf {
        self.logs().join(format!("{role}.log"))
    }
    /// The supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.logs().join("hashpool.log")
    }
    fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn state_file(&self) -> PathBuf {
        self.run().join("state.json")
    }
    fn lock_file(&self) -> PathBuf {
        self.run().join("supervisor.lock")
    }
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(self.logs())?;
        fs::create_dir_all(self.run())
    }

    /// Takes the supervisor lock; `None` if another supervisor holds it. The lock lasts as long
    /// as the returned file is open (and ends with the process, however it ends).
    pub fn try_lock(&self) -> io::Result<Option<File>> {
        self.create().map_err(|e| with_path(e, &self.root))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_file())
            .map_err(|e| with_path(e, &self.lock_file()))?;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(Some(file))
        } else {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }

    /// Takes the supervisor lock for this process and records its pid in the lock file (where
    /// `stop` finds it: the state file may still be the last run's). Retries for a moment, since
    /// a `status` probing the lock holds it briefly.
    pub fn lock_supervisor(&self) -> io::Result<Option<File>> {
        for _ in 0..20 {
            if let Some(mut file) = self.try_lock()? {
                use std::io::Write;
                file.set_len(0)?;
                write!(file, "{}", std::process::id())?;
                file.sync_all()?;
                return Ok(Some(file));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(None)
    }

    /// The pid the running supervisor wrote into its lock file.
    pub fn supervisor_pid(&self) -> Option<u32> {
        fs::read_to_string(self.lock_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether a supervisor is running for this directory.
    pub fn supervisor_running(&self) -> io::Result<bool> {
        if !self.lock_file().exists() {
            return Ok(false);
        }
        Ok(self.try_lock()?.is_none())
    }

    pub fn read_state(&self) -> io::Result<Option<State>> {
        match fs::read(self.state_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                with_path(
                    io::Error::new(io::ErrorKind::InvalidData, e),
                    &self.state_file(),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(e, &self.state_file())),
        }
    }

    /// Replaces the state file in one step (readers never see half a file).
    pub fn write_state(&self, state: &State) -> io::Result<()> {
        let tmp = self.run().join("state.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
        fs::rename(tmp, self.state_file())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the roles it starts after.
    Waiting,
    /// Running, not yet healthy.
    Starting,
    Healthy,
    /// Running, failing health checks.
    Unhealthy,
    /// Exited; restarts after a delay.
    Backoff,
    /// Failed too many times in a row; not restarted.
    Failed,
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Starting => "starting",
            Phase::Healthy => "healthy",
            Phase::Unhealthy => "unhealthy",
            Phase::Backoff => "backoff",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleState {
    pub name: String,
    pub phase: Phase,
    pub pid: Option<u32>,
    /// Times the role was started again after its first start.
    pub restarts: u32,
    /// Failures in a row (reset once the role has been healthy for a while).
    pub failures: u32,
    /// Unix seconds the current process started.
    pub started_at: Option<u64>,
    /// The last thing worth telling the operator (an exit, a failed check, giving up).
    pub message: Option<String>,
    pub ports: Vec<u16>,
    pub log: PathBuf,
    /// The program run (how `stop` recognises a role a killed supervisor left behind).
    pub exe: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub supervisor_pid: u32,
    pub profile: PathBuf,
    pub started_at: u64,
    pub updated_at: u64,
    /// Set once the supervisor has begun stopping every role.
    pub stopping: bool,
    pub roles: Vec<RoleState>,
    pub pages: Vec<Page>,
}

impl State {
    pub fn role(&self, name: &str) -> Option<&RoleState> {
        self.roles.iter().find(|r| r.name == name)
    }
}

/// An I/O error that names its file (a bare "Permission denied" says nothing).
fn with_path(e: io::Error, path: &std::path::Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Whether a process with this id exists.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends `signal` to a process group (roles run in their own group, so their children get it
/// too).
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: plain kill(2) on a negative id, i.e. a process group.
            unsafe { libc::kill(-pgid, signal) };
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_millis(300),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_supervisor_per_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(!run.supervisor_running().unwrap());
        let held = run.try_lock().unwrap().expect("first lock");
        assert!(run.try_lock().unwrap().is_none(), "second lock refused");
        assert!(run.supervisor_running().unwrap());
        drop(held);
        assert!(!run.supervisor_running().unwrap());
        let held = run.lock_supervisor().unwrap().expect("supervisor lock");
        assert_eq!(run.supervisor_pid(), Some(std::process::id()));
        assert!(run.supervisor_running().unwrap());
        drop(held);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run.create().unwrap();
        assert!(run.read_state().unwrap().is_none());
        let state = State {
            supervisor_pid: 7,
            profile: "p.toml".into(),
            started_at: 1,
            updated_at: 2,
            stopping: false,
            roles: vec![RoleState {
                name: "pool".into(),
                phase: Phase::Healthy,
                pid: Some(9),
                restarts: 1,
                failures: 0,
                started_at: Some(1),
                message: None,
                ports: vec![34254],
                log: run.role_log("pool"),
                exe: "/bin/pool".into(),
            }],
            pages: vec![],
        };
        run.write_state(&state).unwrap();
        let back = run.read_state().unwrap().unwrap();
        assert_eq!(back.role("pool").unwrap().phase, Phase::Healthy);
        assert_eq!(back.role("pool").unwrap().restarts, 1);
    }
}
