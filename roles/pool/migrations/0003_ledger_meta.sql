-- What the ledger's work is priced in. Pending work becomes ehash at `unit_work` hashes per
-- unit; opening the ledger with other values would silently reprice it, so the pool refuses.
-- A ledger from before this table adopts the configured values on its first open.

CREATE TABLE ledger_meta (
    id           INTEGER PRIMARY KEY CHECK (id = 1),   -- one row
    unit         TEXT NOT NULL,                        -- currency unit of ehash (`hash`)
    unit_work    BLOB NOT NULL,                        -- hashes per unit, 16 little-endian bytes
    recorded_at  INTEGER NOT NULL                      -- unix milliseconds
);

-- A batch the mint refused for good: its work went back to pending when it was refused.
ALTER TABLE batches ADD COLUMN refused_at INTEGER;
