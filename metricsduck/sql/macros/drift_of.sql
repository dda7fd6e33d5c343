-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
-- drift_of(pairs, summary, missing, scalars, sample_rows): the same for the pairs of
-- `pairs` (rows of baselines), `summary` (of baseline_summary) and `missing` (of
-- missing_baselines), from the rows of scalar_facts in `scalars` and of samples in
-- `sample_rows`: metricsduck/compute.py computes a batch of runs so, from their own rows.
-- Two steps: each row from its own baseline key's rows (`drift_tested_of`), then the
-- false-discovery step over each run x stage x baseline kind (`drift_fdr_of`). A batch
-- always holds whole families (a run, or a run's stage), and its cache key covers them
-- (compute.py).
-- Shard: run_id, stage.
CREATE OR REPLACE MACRO drift_of(pairs, summary, missing, scalars, sample_rows) AS TABLE
WITH tested AS (FROM drift_tested_of(pairs, summary, missing, scalars, sample_rows))
SELECT * FROM drift_fdr_of('tested');
