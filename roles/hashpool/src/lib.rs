//! `hashpool`: the operator's command. It starts every role of a local run in dependency order,
//! watches and restarts them, reports their state and logs and stops them all
//! (`up`/`status`/`logs`/`stop`); and it makes a deployment's keys (`keys`, run by
//! `scripts/install.sh`) and reads a deployment's logs from the journal (`logs`).

pub mod control;
pub mod health;
pub mod journal;
pub mod keys;
pub mod profile;
pub mod state;
pub mod supervisor;
