-- Accepted shares and the work they accrued, per locking key. Work values are unsigned
-- 128-bit integers stored as 16 little-endian bytes (SQLite integers are 64-bit).

CREATE TABLE shares (
    share_hash   BLOB PRIMARY KEY,      -- 32-byte header hash: a share is paid once
    locking_key  BLOB NOT NULL,         -- 33-byte compressed public key
    channel_id   INTEGER NOT NULL,
    work         BLOB NOT NULL,         -- exact work of the share
    block_found  INTEGER NOT NULL,
    accepted_at  INTEGER NOT NULL       -- unix milliseconds
) WITHOUT ROWID;

CREATE INDEX shares_by_key ON shares (locking_key, accepted_at);

CREATE TABLE accruals (
    locking_key   BLOB PRIMARY KEY,
    pending_work  BLOB NOT NULL,        -- accrued, not yet turned into a quote
    total_work    BLOB NOT NULL,        -- everything ever accrued
    share_count   INTEGER NOT NULL
) WITHOUT ROWID;
