-- What settlement needs of each found block (docs/settlement.md), written with the share that
-- found it: its height and coinbase value, the network's work per block at its nBits (sizes
-- its window), and the pool's cumulative accepted work including that share (where its window
-- ends). Blocks found before this migration have none of these: settlement cannot pay them.
ALTER TABLE found_blocks ADD COLUMN height INTEGER;
ALTER TABLE found_blocks ADD COLUMN value_sats INTEGER;
ALTER TABLE found_blocks ADD COLUMN network_work BLOB;  -- 16 little-endian bytes
ALTER TABLE found_blocks ADD COLUMN pool_work BLOB;     -- 16 little-endian bytes

-- Where the block stands in the node's best chain, as the chain follower last saw it:
-- 'pending' (in the best chain or not yet seen, under 100 confirmations), 'matured' (100
-- confirmations: final) or 'orphaned' (off the best chain; checked again until the tip is 100
-- blocks past its height, since a reorg can bring it back).
ALTER TABLE found_blocks ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE found_blocks ADD COLUMN confirmations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE found_blocks ADD COLUMN status_at INTEGER;  -- unix ms of the last change

CREATE INDEX found_blocks_by_status ON found_blocks (status, height);
