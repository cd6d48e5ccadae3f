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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::issuer::MintDb;

    /// Pages cached by several connections of a database much larger than their caches stay
    /// under the limit (with the slack of what SQLite cannot free: schemas, statements).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_limit_bounds_what_the_connections_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db: MintDb = Arc::new(
            cdk_sqlite::MintSqliteDatabase::new(dir.path().join("mint.sqlite"))
                .await
                .unwrap(),
        );
        // About 24 MB of rows, written in a few transactions.
        let value = vec![7u8; 4_000];
        for batch in 0..12 {
            let mut tx = db.begin_transaction().await.unwrap();
            for i in 0..500 {
                tx.kv_write("memtest", "rows", &format!("k{batch:02}-{i:04}"), &value)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        set_limit(4 << 20);
        assert_eq!(limit(), 4 << 20);
        // Read it all back from several connections at once: each would cache up to 2 MB.
        let readers: Vec<_> = (0..8)
            .map(|r| {
                let db = db.clone();
                tokio::spawn(async move {
                    // Every value, each reader from its own starting point.
                    for n in 0..6_000 {
                        let n = (n + r * 750) % 6_000;
                        let key = format!("k{:02}-{:04}", n / 500, n % 500);
                        assert!(db.kv_read("memtest", "rows", &key).await.unwrap().is_some());
                    }
                })
            })
            .collect();
        for r in readers {
            r.await.unwrap();
        }
        let used = used();
        set_limit(0);
        assert_eq!(limit(), 0);
        assert!(
            used < 8 << 20,
            "SQLite holds {used} bytes under a 4 MiB limit"
        );
    }
}
