-- Epochs (docs/settlement.md): ranges of the pool's cumulative accepted work, each paid one
-- rate. An epoch opens where the last one closed, sized from the network's work per block; it
-- closes at the first share that starts at or past its planned end (`end_work` is where its
-- last share ended). Every key's whole units are batched at the close, so every batch, and so
-- every quote, belongs to one epoch.
CREATE TABLE epochs (
    idx          INTEGER PRIMARY KEY,
    start_work   BLOB NOT NULL,     -- 16 little-endian bytes, as all work here
    length       BLOB NOT NULL,     -- planned
    network_work BLOB NOT NULL,     -- the network's work per block it was sized with
    end_work     BLOB,              -- NULL while open
    opened_at    INTEGER NOT NULL,  -- unix ms
    closed_at    INTEGER
);

-- The epoch a batch's ehash belongs to (NULL: work from before the first epoch).
ALTER TABLE batches ADD COLUMN epoch INTEGER;
-- A key's ehash of its newest epochs (the miner API) without reading its older batches.
CREATE INDEX batches_by_key_epoch ON batches (locking_key, epoch);
-- An epoch's quotes in quote id order: the leaves of its Merkle-sum commitment.
CREATE INDEX batches_by_epoch ON batches (epoch, quote_id) WHERE quote_id IS NOT NULL;
-- A quote's epoch (a wallet auditing its quotes knows their ids).
CREATE INDEX batches_by_quote ON batches (quote_id) WHERE quote_id IS NOT NULL;
