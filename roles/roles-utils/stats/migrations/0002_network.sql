-- Blocks: height and reward from the coinbase, the difficulty they were mined at, and the
-- service's running total of accepted work when the block arrived (a block's effort is the work
-- between it and the block before, over its difficulty).
ALTER TABLE blocks ADD COLUMN height BIGINT;
ALTER TABLE blocks ADD COLUMN reward_sats BIGINT;
ALTER TABLE blocks ADD COLUMN difficulty DOUBLE PRECISION;
ALTER TABLE blocks ADD COLUMN work_total DOUBLE PRECISION;

-- The chain each reporter mines on, from its latest snapshot.
CREATE TABLE network (
    reporter TEXT PRIMARY KEY,
    height BIGINT NOT NULL,
    difficulty DOUBLE PRECISION NOT NULL,
    tip_seen_at BIGINT NOT NULL,
    reported_at BIGINT NOT NULL
);
