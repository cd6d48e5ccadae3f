-- Portable between SQLite and PostgreSQL: BIGINT times (unix seconds), DOUBLE PRECISION work.

-- Work accepted, as reported: one row per subject per snapshot (deltas). Hashrate samples are
-- computed from these.
CREATE TABLE work (
    at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    shares BIGINT NOT NULL,
    work DOUBLE PRECISION NOT NULL
);
CREATE INDEX work_subject_at ON work (subject, at);
CREATE INDEX work_at ON work (at);

CREATE TABLE hashrate_samples (
    at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    hashrate DOUBLE PRECISION NOT NULL
);
CREATE INDEX hashrate_subject_at ON hashrate_samples (subject, at);
CREATE INDEX hashrate_at ON hashrate_samples (at);

-- Channels, downstreams and miners: their current state.
CREATE TABLE subjects (
    id TEXT PRIMARY KEY,
    reporter TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    parent TEXT,
    connected BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    shares_total BIGINT NOT NULL,
    nominal_hashrate DOUBLE PRECISION
);

CREATE TABLE blocks (
    hash TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    reporter TEXT NOT NULL,
    subject TEXT,
    template_id BIGINT
);

CREATE TABLE issuance (
    quote_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    reporter TEXT NOT NULL,
    amount BIGINT NOT NULL,
    locking_key TEXT NOT NULL
);
CREATE INDEX issuance_at ON issuance (at);

-- Reporters and the services they depend on.
CREATE TABLE health (
    name TEXT PRIMARY KEY,
    up BIGINT NOT NULL,
    detail TEXT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE TABLE balance_samples (
    at BIGINT NOT NULL,
    reporter TEXT NOT NULL,
    amount BIGINT NOT NULL
);
CREATE INDEX balance_at ON balance_samples (at);

-- Running totals (shares accepted and rejected since the first report).
CREATE TABLE totals (
    name TEXT PRIMARY KEY,
    value DOUBLE PRECISION NOT NULL
);
