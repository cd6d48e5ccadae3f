//! What the pool shows of itself, read from the other components and never slowing them
//! down: reports to the stats service ([`stats_report`], fed by the pool's events), the
//! monitoring API's view of the miners' channels ([`monitoring`]), the pool's own
//! Prometheus metrics ([`metrics`]) and the public per-key miner API ([`miner_api`], answering
//! with a [`miner_view`]).

pub mod metrics;
pub mod miner_api;
pub mod miner_view;
pub mod monitoring;
pub mod stats_report;
