-- The share log: accepted shares as compact records, many per row (one row per group commit
-- and chain tip), instead of one B-tree row and index entry per share. Records are numbered
-- by a sequence over the whole log; a row holds `count` records from `first_seq` on.
-- Record layout (see ledger/log.rs): 32-byte share hash, then LEB128 key id, channel id, work.

CREATE TABLE share_log (
    first_seq     INTEGER PRIMARY KEY,
    tip           INTEGER NOT NULL,   -- the chain tip the shares were mined on (8 bytes of it)
    committed_at  INTEGER NOT NULL,   -- unix milliseconds
    count         INTEGER NOT NULL,
    records       BLOB NOT NULL
);

-- What retention pruned from the log: one row per pass, with a digest chained over the pruned
-- rows' records (SHA-256 of the previous digest, the row's first_seq and its records), so an
-- archived copy of the log can be checked against it.
CREATE TABLE share_log_pruned (
    through_seq   INTEGER PRIMARY KEY,  -- first seq after the pruned range
    from_seq      INTEGER NOT NULL,
    shares        INTEGER NOT NULL,
    digest        BLOB NOT NULL,
    pruned_at     INTEGER NOT NULL
);

-- Keys get a small id for the log records. The running commitment over a key's shares (a hash
-- chain: c = SHA-256(c || share hash), in log order, never reset) and the count of shares
-- since its last batch are kept with its accrual, so a batch takes them without reading its
-- shares. `batch_from_seq` and `batch_from_chain` are where the key's next batch starts: the
-- log position and chain value after its last batch.
ALTER TABLE accruals ADD COLUMN key_id INTEGER;
ALTER TABLE accruals ADD COLUMN chain BLOB;
ALTER TABLE accruals ADD COLUMN unbatched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accruals ADD COLUMN last_share_at INTEGER;
ALTER TABLE accruals ADD COLUMN batch_from_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accruals ADD COLUMN batch_from_chain BLOB;
CREATE UNIQUE INDEX accruals_by_id ON accruals (key_id);

-- A batch covers its key's records with seq in [log_from, log_until): folding their hashes
-- into `chain_from` gives `share_commitment`. NULL for batches from before the log (their
-- commitment is SHA-256 over their `shares` rows' hashes).
ALTER TABLE batches ADD COLUMN log_from INTEGER;
ALTER TABLE batches ADD COLUMN log_until INTEGER;
ALTER TABLE batches ADD COLUMN chain_from BLOB;

-- Work per key and minute, for the hashrate windows of the miner API (kept for a day).
CREATE TABLE key_minutes (
    key_id   INTEGER NOT NULL,
    minute   INTEGER NOT NULL,   -- unix minutes
    work     BLOB NOT NULL,      -- 16 little-endian bytes
    shares   INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute)
) WITHOUT ROWID;

-- Shares that met the network target (rare; never pruned).
CREATE TABLE found_blocks (
    hash        BLOB PRIMARY KEY,
    key_id      INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    found_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX found_blocks_by_key ON found_blocks (key_id, found_at);

-- Minutes older than a day are pruned by range.
CREATE INDEX key_minutes_by_minute ON key_minutes (minute);
