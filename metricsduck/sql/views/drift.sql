-- The drift rows that queries, rollups and outputs read: one row per cohort-run x baseline
-- kind x item, the columns of drift_computed. Over a store with the compacted cache,
-- metricsduck/compute.py replaces this view with the cached rows still valid for their
-- inputs, the rows computed since, and drift_computed for the rest.
-- Shard: run_id, stage.
CREATE OR REPLACE VIEW drift AS
SELECT * FROM drift_computed;
