//! SQLite's soft heap limit, in a process of its own: SQLite's memory counter is process-wide,
//! so the mint's other tests (in-memory databases among them) must not run beside it.

use std::sync::Arc;

use mint::db::MintDb;
use mint::sqlite_memory::{limit, set_limit, used};

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
