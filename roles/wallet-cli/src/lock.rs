//! One process at a time changes a wallet directory: `serve` holds `<dir>/lock` while it
//! runs, `claim`, `send` and `receive` while they run. Two processes on one database and seed
//! would race for the same proofs and blinded-output counters; the second is refused at once,
//! told which process holds the wallet. Reading (`balance`, `history`, `key`) needs no lock.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::{fs::FileExt, io::AsRawFd},
    path::Path,
};

use anyhow::{bail, Context};

const LOCK: &str = "lock";

/// The directory's lock, held until dropped (or the process ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// Takes `dir`'s lock for `holder` (what the refused process is told, e.g.
    /// "`hashpool-wallet claim` (pid 42)"), or fails naming the process that holds it.
    pub fn acquire(dir: &Path, holder: &str) -> anyhow::Result<Self> {
        crate::create_private_dir(dir)?;
        let path = dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let by = std::fs::read_to_string(&path).unwrap_or_default();
                let by = by.trim();
                let by = if by.is_empty() {
                    "another hashpool-wallet"
                } else {
                    by
                };
                bail!(
                    "the wallet in {} is in use by {by}: wait for it or stop it (while \
                     `hashpool-wallet serve` runs, use its wallet API: balance, history, tokens)",
                    dir.display()
                );
            }
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        let lock = Self { file };
        lock.describe(holder)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(lock)
    }

    /// Replaces what a refused process is told about the holder.
    pub fn describe(&self, holder: &str) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.write_all_at(holder.as_bytes(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "`hashpool-wallet claim` (pid 1)").unwrap();
        let err = DirLock::acquire(dir.path(), "second")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use by `hashpool-wallet claim` (pid 1)"),
            "{err}"
        );
        first
            .describe("`hashpool-wallet serve` (pid 1, on 127.0.0.1:1)")
            .unwrap();
        let err = DirLock::acquire(dir.path(), "second")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in use by `hashpool-wallet serve` (pid 1, on 127.0.0.1:1):"),
            "{err}"
        );
        drop(first);
        let again = DirLock::acquire(dir.path(), "second").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK)).unwrap(),
            "second"
        );
        drop(again);
    }
}
