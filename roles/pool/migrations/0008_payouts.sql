-- Withdrawals the pool pays in its coinbases (docs/settlement.md, "Withdrawals in the
-- coinbase"), copied from the mint's signed list, one row per withdrawal melt. A row is
-- 'queued', then 'offered' at `height` (in the coinbase of the pool's templates there, written
-- before any miner gets such a job), then 'in_block' (the chain's block at that height pays it
-- at `txid`:`vout`) or back to 'queued' (it does not), then 'matured' at 100 confirmations.
-- A block that leaves the best chain puts its payouts back to 'queued'.
CREATE TABLE payouts (
    quote_id    TEXT PRIMARY KEY,
    sats        INTEGER NOT NULL,
    address     TEXT NOT NULL,
    script      BLOB NOT NULL,
    recorded_at INTEGER NOT NULL,  -- unix s, the mint's: payouts go out oldest first
    state       TEXT NOT NULL DEFAULT 'queued',
    height      INTEGER,
    block_hash  BLOB,
    txid        BLOB,
    vout        INTEGER,
    changed_at  INTEGER NOT NULL   -- unix ms
);

CREATE INDEX payouts_by_state ON payouts (state, recorded_at, quote_id);
