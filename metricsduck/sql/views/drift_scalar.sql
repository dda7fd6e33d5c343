-- One row per cohort-run x baseline kind x metric. status: COMPARED (tiered by rel_delta,
-- or by delta where rel_delta is undefined; text compared for equality), NEW (OK),
-- MISSING (present in the baseline, not now: WARN), KIND_CHANGED (WARN, ALERT if
-- critical), NON_FINITE (a side is NaN/inf/None: OK if both are the same, else WARN or
-- ALERT if critical), NO_BASELINE (no baseline of that kind yet; tier NULL), IMPROVED (a
-- number moved in its good_direction, drift.direction.<metric>, by as much as would be
-- WARN or ALERT the other way: tier OK, the numbers kept).
-- Thresholds per metric: drift.overrides.<metric> first, then the critical tiers for
-- drift.critical_metrics, then the default tiers. rolling pools up to k runs:
-- baseline_value is their mean, baseline_std their sample std, baseline_n how many values
-- were pooled; z is set for rolling when n >= 2 and std > 0.
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW drift_scalar AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_missing AS MATERIALIZED (FROM missing_baselines_of('cohort_runs', 'tree_summary')),
    tree_samples AS MATERIALIZED (FROM samples),
    tree_scalars AS MATERIALIZED (FROM scalar_facts_of('facts', 'tree_samples'))
SELECT * FROM drift_scalar_of('tree_pairs', 'tree_summary', 'tree_missing', 'tree_scalars');
