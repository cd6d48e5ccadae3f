-- Several pool instances may write one ledger (PostgreSQL; the same columns here keep the two
-- schemas alike). Every write that changes what a writer holds in memory bumps `generation`
-- and stamps the accrual rows it wrote with it, so a writer finding the generation moved
-- since its own last write reads just the keys written since (ledger/book.rs, `catch_up`).
ALTER TABLE ledger_meta ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accruals ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
CREATE INDEX accruals_by_gen ON accruals (gen);
