//! glibc's malloc gives a thread that finds its arena locked an arena of its own (up to eight
//! per core) and keeps each arena's freed memory for reuse. The mint allocates in bursts from
//! many threads (tokio's workers, blocking tasks, sqlx's SQLite threads), so under steady quotes
//! the arenas multiply and its RSS grew for an hour while its live heap stayed flat (heaptrack
//! over 30 minutes); at most two arenas keep the RSS flat at the same rate (docs/benchmarks.md,
//! "Soak"). mimalloc, tried instead, grew faster.

use std::sync::atomic::{AtomicBool, Ordering};

/// Arenas the mint's malloc may use, unless `MALLOC_ARENA_MAX` says otherwise.
pub const MALLOC_ARENAS: i32 = 2;

static CAPPED: AtomicBool = AtomicBool::new(false);

/// Whether [`limit`] set the cap (for the start-up log).
pub fn capped() -> bool {
    CAPPED.load(Ordering::Relaxed)
}

/// Caps glibc malloc's arenas at [`MALLOC_ARENAS`], before the runtime starts its threads. An
/// operator's `MALLOC_ARENA_MAX` is left to glibc. Returns whether the cap was set here
/// (false elsewhere than Linux with glibc).
pub fn limit() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    let capped = set(MALLOC_ARENAS);
    CAPPED.store(capped, Ordering::Relaxed);
    capped
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(arenas: i32) -> bool {
    // SAFETY: mallopt only sets a malloc parameter; M_ARENA_MAX takes any positive count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_arenas: i32) -> bool {
    false
}
