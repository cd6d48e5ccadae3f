//! `stats-proxy`: the stats service of the proxy side. Takes reports from the translator only
//! (keys in the shared config's `[stats]`), keeps them (SQLite or PostgreSQL) and serves
//! them over HTTP. All but the side it serves is shared with `stats-pool`, in
//! [`hashpool_stats::role`].

use hashpool_stats::Role;

/// Parses the command line and runs until SIGINT/SIGTERM.
pub async fn main() -> anyhow::Result<()> {
    hashpool_stats::role::main(Role::Translator).await
}
