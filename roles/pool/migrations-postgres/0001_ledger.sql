-- The pool's ledger on PostgreSQL: the schema SQLite's migrations 0001-0009 build, in one
-- step (see migrations/ for what each table holds). Work values are unsigned 128-bit
-- integers stored as 16 little-endian bytes, as on SQLite. Several pool instances share it.

CREATE TABLE ledger_meta (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    unit         TEXT NOT NULL,
    unit_work    BYTEA NOT NULL,
    recorded_at  BIGINT NOT NULL,
    generation   BIGINT NOT NULL DEFAULT 0
);

-- Share rows from before the share log; empty here, kept so both schemas read alike.
CREATE TABLE shares (
    share_hash   BYTEA PRIMARY KEY,
    locking_key  BYTEA NOT NULL,
    channel_id   BIGINT NOT NULL,
    work         BYTEA NOT NULL,
    block_found  BIGINT NOT NULL,
    accepted_at  BIGINT NOT NULL,
    batch_id     BIGINT
);

CREATE TABLE accruals (
    locking_key       BYTEA PRIMARY KEY,
    pending_work      BYTEA NOT NULL,
    total_work        BYTEA NOT NULL,
    share_count       BIGINT NOT NULL,
    key_id            BIGINT,
    chain             BYTEA,
    unbatched         BIGINT NOT NULL DEFAULT 0,
    last_share_at     BIGINT,
    batch_from_seq    BIGINT NOT NULL DEFAULT 0,
    batch_from_chain  BYTEA,
    gen               BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX accruals_by_id ON accruals (key_id);
CREATE INDEX accruals_by_gen ON accruals (gen);

CREATE TABLE batches (
    id               BIGSERIAL PRIMARY KEY,
    request_id       BYTEA NOT NULL UNIQUE,
    locking_key      BYTEA NOT NULL,
    amount           BIGINT NOT NULL,
    work             BYTEA NOT NULL,
    share_count      BIGINT NOT NULL,
    share_commitment BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    quote_id         TEXT,
    answered_at      BIGINT,
    refused_code     TEXT,
    refused_at       BIGINT,
    log_from         BIGINT,
    log_until        BIGINT,
    chain_from       BYTEA,
    epoch            BIGINT
);
CREATE INDEX batches_open ON batches (id) WHERE quote_id IS NULL AND refused_code IS NULL;
CREATE INDEX batches_by_key ON batches (locking_key);
CREATE INDEX batches_by_key_epoch ON batches (locking_key, epoch);
CREATE INDEX batches_by_epoch ON batches (epoch, quote_id) WHERE quote_id IS NOT NULL;
CREATE INDEX batches_by_quote ON batches (quote_id) WHERE quote_id IS NOT NULL;

CREATE TABLE share_log (
    first_seq     BIGINT PRIMARY KEY,
    tip           BIGINT NOT NULL,
    committed_at  BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    records       BYTEA NOT NULL
);

CREATE TABLE share_log_pruned (
    through_seq   BIGINT PRIMARY KEY,
    from_seq      BIGINT NOT NULL,
    shares        BIGINT NOT NULL,
    digest        BYTEA NOT NULL,
    pruned_at     BIGINT NOT NULL
);

CREATE TABLE key_minutes (
    key_id   BIGINT NOT NULL,
    minute   BIGINT NOT NULL,
    work     BYTEA NOT NULL,
    shares   BIGINT NOT NULL,
    PRIMARY KEY (key_id, minute)
);
CREATE INDEX key_minutes_by_minute ON key_minutes (minute);

CREATE TABLE found_blocks (
    hash           BYTEA PRIMARY KEY,
    key_id         BIGINT NOT NULL,
    channel_id     BIGINT NOT NULL,
    found_at       BIGINT NOT NULL,
    height         BIGINT,
    value_sats     BIGINT,
    network_work   BYTEA,
    pool_work      BYTEA,
    status         TEXT NOT NULL DEFAULT 'pending',
    confirmations  BIGINT NOT NULL DEFAULT 0,
    status_at      BIGINT
);
CREATE INDEX found_blocks_by_key ON found_blocks (key_id, found_at);
CREATE INDEX found_blocks_by_status ON found_blocks (status, height);

CREATE TABLE epochs (
    idx          BIGINT PRIMARY KEY,
    start_work   BYTEA NOT NULL,
    length       BYTEA NOT NULL,
    network_work BYTEA NOT NULL,
    end_work     BYTEA,
    opened_at    BIGINT NOT NULL,
    closed_at    BIGINT
);

CREATE TABLE payouts (
    quote_id    TEXT PRIMARY KEY,
    sats        BIGINT NOT NULL,
    address     TEXT NOT NULL,
    script      BYTEA NOT NULL,
    recorded_at BIGINT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'queued',
    height      BIGINT,
    block_hash  BYTEA,
    txid        BYTEA,
    vout        BIGINT,
    changed_at  BIGINT NOT NULL
);
CREATE INDEX payouts_by_state ON payouts (state, recorded_at, quote_id);
