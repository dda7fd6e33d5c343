-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
CREATE OR REPLACE VIEW drift_computed AS
SELECT * FROM drift_of('baselines', 'baseline_summary', 'missing_baselines', 'scalar_facts', 'samples');
