//! `stats-pool`: the stats service of the pool side. Takes reports from the pool only
//! (keys in the shared config's `[stats]`), keeps them (SQLite or PostgreSQL) and serves
//! them over HTTP. All but the side it serves is shared with `stats-proxy`, in
//! [`hashpool_stats::role`].

use hashpool_stats::Role;

/// Parses the command line and runs until SIGINT/SIGTERM.
pub async fn main() -> anyhow::Result<()> {
    hashpool_stats::role::main(Role::Pool).await
}
