-- The blocks a key found, newest first, without reading its other shares (the per-key miner
-- API lists them). Blocks are rare: the index is small.
CREATE INDEX shares_blocks_by_key ON shares (locking_key, accepted_at) WHERE block_found = 1;
