-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
CREATE OR REPLACE VIEW drift_computed AS
SELECT
    stage, view, target, symbol, baseline_key, run_id, run_started_at, cohort_id,
    baseline_kind, baseline_run_id, baseline_runs,
    'metric' AS item_kind, metric AS item, kind,
    tier, tier_rank, status, is_critical,
    current_value, baseline_value, baseline_std, delta, rel_delta, rel_delta_status, z,
    current_text, baseline_text,
    CAST(NULL AS BIGINT) AS n, CAST(NULL AS BIGINT) AS m,
    CAST(NULL AS DOUBLE) AS psi, CAST(NULL AS DOUBLE) AS psi_critical,
    CAST(NULL AS BOOLEAN) AS psi_significant,
    CAST(NULL AS DOUBLE) AS ks_d, CAST(NULL AS DOUBLE) AS ks_p,
    CAST(NULL AS VARCHAR) AS psi_tier, CAST(NULL AS VARCHAR) AS ks_tier,
    current_view, baseline_view, sanity_status, fingerprint_diff
FROM drift_scalar
UNION ALL
SELECT
    d.stage, d.view, d.target, d.symbol, d.baseline_key, d.run_id, d.run_started_at, d.cohort_id,
    d.baseline_kind, d.baseline_run_id, d.baseline_runs,
    'distribution', d.distribution, 'distribution',
    d.tier, d.tier_rank, d.status, false,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL,
    d.n, d.m, d.psi, d.psi_critical, d.psi_significant, d.ks_d, d.ks_p, d.psi_tier, d.ks_tier,
    d.current_view, d.baseline_view, d.sanity_status, d.fingerprint_diff
FROM drift_distribution AS d;
