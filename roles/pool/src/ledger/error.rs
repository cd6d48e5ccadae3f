//! What can go wrong in the ledger.

use hashpool_ehash::Work;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Database(String),
    #[error("the ledger writer has stopped")]
    Stopped,
    #[error("stored work value is corrupt")]
    CorruptWork,
    /// This share alone is refused; the rest of its group is credited.
    #[error(
        "share refused: its work ({work} hashes) would overflow the 128-bit work accrued to \
         locking key {key}"
    )]
    AccrualOverflow { key: String, work: u128 },
    #[error(
        "the ledger was written with unit `{stored_unit}` and unit_work {}, but the \
         configuration says unit `{configured_unit}` and unit_work {}; opening it would reprice \
         every key's pending work. Either set `ehash.unit` and `ehash.unit_work` in the shared \
         config back to the stored values, or migrate: run the pool with the stored values until \
         every batch is answered by the mint (work below one unit per key stays pending in this \
         file), then start it with the new values and a new `pool.ledger_path`, keeping this \
         file",
        describe_unit_work(*stored_unit_work),
        describe_unit_work(*configured_unit_work)
    )]
    UnitMismatch {
        stored_unit: String,
        /// Hashes per unit.
        stored_unit_work: u128,
        configured_unit: String,
        configured_unit_work: u128,
    },
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Database(e.to_string())
    }
}

/// Exact, and in the config's terms (difficulty-1 shares, rounded: the hashes are exact).
pub(super) fn describe_unit_work(hashes: u128) -> String {
    format!(
        "{hashes} hashes (about {:.4e} difficulty-1 shares)",
        Work::from_hashes(hashes).as_difficulty()
    )
}
