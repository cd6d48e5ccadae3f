-- Quote batches: whole units of ehash taken from a key's pending work, one mint-quote request
-- each. The request id is the idempotency key at the mint; a batch stays open (resent) until
-- the mint answers with a quote or refuses it for good.

CREATE TABLE batches (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id       BLOB NOT NULL UNIQUE,   -- 32 random bytes
    locking_key      BLOB NOT NULL,
    amount           INTEGER NOT NULL,       -- ehash
    work             BLOB NOT NULL,          -- amount x unit work, taken from pending
    share_count      INTEGER NOT NULL,
    share_commitment BLOB NOT NULL,          -- SHA-256 over the batch's share hashes
    created_at       INTEGER NOT NULL,
    quote_id         TEXT,                   -- the mint's answer
    answered_at      INTEGER,
    refused_code     TEXT                    -- a refusal retrying cannot fix
);

CREATE INDEX batches_open ON batches (id) WHERE quote_id IS NULL AND refused_code IS NULL;
CREATE INDEX batches_by_key ON batches (locking_key);

-- Shares are assigned to the batch that followed them (audit).
ALTER TABLE shares ADD COLUMN batch_id INTEGER REFERENCES batches (id);
CREATE INDEX shares_unbatched ON shares (locking_key) WHERE batch_id IS NULL;
