-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
-- It is `drift_tested` with the false-discovery step (`drift_fdr_of`) over each run x stage.
-- Shard: run_id, stage.
CREATE OR REPLACE VIEW drift_computed AS
SELECT * FROM drift_fdr_of('drift_tested');
