//! What the ledger's tests share: their keys, their unit and the backends. Each conformance
//! test runs against a SQLite file and,
//! when `HASHPOOL_TEST_POSTGRES_URL` names a server (a role that may create databases;
//! `.ci/run` starts Debian's PostgreSQL), against a PostgreSQL database of its own, dropped
//! afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{any::AnyPoolOptions, Executor as _};

use ext_mint_quote::LockingKey;
use hashpool_ehash::{UnitWork, Work};

use super::LedgerLocation;

/// The key of secret `[n; 32]`.
pub(super) fn key(n: u8) -> LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).expect("a valid secret");
    LockingKey::from_slice(&bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize())
        .expect("a compressed key")
}

/// 1,000 hashes per ehash.
pub(super) fn unit() -> UnitWork {
    UnitWork::from_work(Work::from_hashes(1_000)).expect("a unit work")
}

pub(super) enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub(super) fn sqlite() -> Self {
        TestDb::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A fresh PostgreSQL database, if a server is configured.
    pub(super) async fn postgres() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let Ok(admin_url) = std::env::var("HASHPOOL_TEST_POSTGRES_URL") else {
            eprintln!(
                "HASHPOOL_TEST_POSTGRES_URL is not set: the PostgreSQL ledger is not tested here \
                 (.ci/run sets it up)"
            );
            return None;
        };
        let name = format!(
            "hashpool_ledger_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        Some(TestDb::Postgres { admin_url, name })
    }

    pub(super) fn location(&self) -> LedgerLocation {
        match self {
            TestDb::Sqlite(dir) => LedgerLocation::File(dir.path().join("ledger.sqlite")),
            TestDb::Postgres { admin_url, name } => {
                LedgerLocation::Postgres(database_url(admin_url, name))
            }
        }
    }
}

/// Every backend a conformance test runs on.
pub(super) async fn backends() -> Vec<TestDb> {
    let mut all = vec![TestDb::sqlite()];
    all.extend(TestDb::postgres().await);
    all
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a postgres:// URL with a database");
    format!("{base}/{name}")
}

async fn admin(admin_url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .expect("the test PostgreSQL server");
    pool.execute(sql).await.expect(sql);
    pool.close().await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (url, sql) = (
                admin_url.clone(),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
            // Drop runs inside the test's runtime: the database goes on a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(admin(&url, &sql));
            })
            .join();
        }
    }
}
