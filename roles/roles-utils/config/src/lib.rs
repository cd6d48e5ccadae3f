//! Typed configuration for every Hashpool role.
//!
//! One loader ([`load`]) reads a TOML file into a typed struct, applies environment overrides
//! (`HASHPOOL__SECTION__KEY`), and names the file and the key when anything is missing,
//! malformed or unknown (a key in the file that the struct has no field for; environment
//! variables are never refused, since one environment serves several files and roles). The
//! shared topology lives in [`PoolGlobalConfig`] and [`ProxyGlobalConfig`].

pub mod database_url;
mod global;
mod host_port;
mod loader;
pub mod secret_file;

pub use global::{
    EhashConfig, JdServerTopology, MintTopology, PoolGlobalConfig, PoolTopology, ProxyGlobalConfig,
    StatsTopology, TranslatorTopology, WalletTopology, WebTopology,
};
pub use host_port::{HostPort, HostPortError};
pub use loader::{load, load_with_env, ConfigError, ENV_PREFIX, ENV_SEPARATOR};
