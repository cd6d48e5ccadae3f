//! Stats for Hashpool: what the pool and the translator report, and the service that keeps it.
//!
//! - [`protocol`]: the stats protocol. SV2 frames (extension type [`protocol::EXTENSION_TYPE`])
//!   over Noise; the service is the Noise responder (its key pinned by reporters); a reporter
//!   proves its key by signing the service's challenge; payloads are versioned JSON.
//! - [`reporter`]: the reporting side, for the pool and the translator. It never blocks its
//!   role: reports wait in a bounded buffer that drops the oldest (and counts them) while the
//!   service is away.
//! - [`store`], [`ingest`], [`http`], [`service`]: the stats service (`stats-pool`,
//!   `stats-proxy`): sqlx storage (SQLite by default, PostgreSQL by URL), hashrate sampling
//!   from accepted work, retention, and the HTTP JSON API.

pub mod http;
pub mod ingest;
pub mod protocol;
pub mod reporter;
pub mod role;
pub mod service;
pub mod store;

pub use protocol::{Block, Issuance, Network, Report, Role, ServiceHealth, Snapshot, Subject};
pub use reporter::{ReporterConfig, ReporterStats, StatsReporter};
pub use service::{start, RunningStats, StatsServiceConfig};
