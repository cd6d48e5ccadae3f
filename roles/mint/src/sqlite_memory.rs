//! SQLite's heap in the mint process. CDK opens up to 20 connections to the mint database, each
//! with its own page cache (SQLite's default, up to 2 MB); as the database grows past what the
//! caches hold, each one fills, so the mint's memory creeps up for as long as connections keep
//! touching new pages. A soft heap limit makes SQLite recycle cached pages instead of growing
//! past it (the bundled SQLite is built with memory management and memory statistics on).

/// Sets SQLite's soft heap limit for the whole process; 0 removes it.
pub fn set_limit(bytes: u64) {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    // SAFETY: sqlite3_soft_heap_limit64 takes a plain integer, may be called from any thread at
    // any time, and initializes SQLite itself if needed.
    unsafe {
        libsqlite3_sys::sqlite3_soft_heap_limit64(bytes);
    }
}

/// The soft heap limit in force (0: none).
pub fn limit() -> u64 {
    // SAFETY: a negative argument only reads the limit.
    let current = unsafe { libsqlite3_sys::sqlite3_soft_heap_limit64(-1) };
    u64::try_from(current).unwrap_or(0)
}

/// Bytes SQLite has allocated in this process right now.
pub fn used() -> u64 {
    // SAFETY: reads a counter; thread-safe.
    let used = unsafe { libsqlite3_sys::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}
