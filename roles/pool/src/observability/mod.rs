//! What the pool shows of itself, read from the other components and never slowing them
//! down: reports to the stats service ([`stats_report`], fed by the pool's events), the
//! monitoring API's view of the miners' channels ([`monitoring`]) and the pool's own
//! Prometheus metrics ([`metrics`]).

pub mod metrics;
pub mod monitoring;
pub mod stats_report;
