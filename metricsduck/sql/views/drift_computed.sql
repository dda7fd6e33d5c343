-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
CREATE OR REPLACE VIEW drift_computed AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_missing AS MATERIALIZED (FROM missing_baselines_of('cohort_runs', 'tree_summary')),
    tree_samples AS MATERIALIZED (FROM samples),
    tree_scalars AS MATERIALIZED (FROM scalar_facts_of('facts', 'tree_samples'))
SELECT * FROM drift_of('tree_pairs', 'tree_summary', 'tree_missing', 'tree_scalars', 'tree_samples');
