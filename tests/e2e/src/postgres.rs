//! Databases of their own on the test PostgreSQL server: `HASHPOOL_TEST_POSTGRES_URL` names a
//! role allowed to create databases (.ci/run starts Debian's PostgreSQL and sets it). A test
//! creates what it needs and drops it at the end.

/// The server's URL, or `None` (said on stderr: the test is not run here).
pub fn server_url() -> Option<String> {
    match std::env::var("HASHPOOL_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!(
                "HASHPOOL_TEST_POSTGRES_URL is not set: not run here (.ci/run sets it up and \
                 runs it)"
            );
            None
        }
    }
}

/// A database created for one test.
pub struct TestDatabase {
    admin: sqlx::PgPool,
    pub name: String,
    /// Its URL (the server's, with this database).
    pub url: String,
}

impl TestDatabase {
    /// Creates `hashpool_<what>_<pid>_<time>` on the server at `server_url`.
    pub async fn create(server_url: &str, what: &str) -> anyhow::Result<Self> {
        let admin = sqlx::PgPool::connect(server_url).await?;
        let name = format!(
            "hashpool_{what}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        let (base, _) = server_url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("a URL with a database"))?;
        let url = format!("{base}/{name}");
        Ok(Self { admin, name, url })
    }

    /// Sessions open on it now, and how many of them are encrypted (TLS).
    pub async fn sessions(&self) -> anyhow::Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await?)
    }

    /// Drops it, ending the sessions still on it.
    pub async fn drop(self) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await?;
        Ok(())
    }
}
