-- drift_tested_of(pairs, summary, missing, scalars, sample_rows): the rows of drift_of
-- before the false-discovery step (`drift_fdr_of`): every metric row as drift_of gives it,
-- every distribution row with its tier and status from its own test and q_value NULL.
-- Shard: baseline_key. A row depends only on the rows of its own baseline key, so the
-- tree may be cut by key and the parts computed apart (docs/design.md §13).
CREATE OR REPLACE MACRO drift_tested_of(pairs, summary, missing, scalars, sample_rows) AS TABLE
SELECT
    stage, view, target, symbol, baseline_key, run_id, run_started_at, cohort_id,
    baseline_kind, baseline_run_id, baseline_runs,
    'metric' AS item_kind, metric AS item, kind,
    tier, tier_rank, status, is_critical, good_direction,
    current_value, baseline_value, baseline_std, delta, rel_delta, rel_delta_status, z,
    current_text, baseline_text,
    CAST(NULL AS BIGINT) AS n, CAST(NULL AS BIGINT) AS m,
    CAST(NULL AS DOUBLE) AS psi, CAST(NULL AS DOUBLE) AS psi_critical,
    CAST(NULL AS BOOLEAN) AS psi_significant,
    CAST(NULL AS DOUBLE) AS chi2, CAST(NULL AS DOUBLE) AS chi2_p,
    CAST(NULL AS DOUBLE) AS ks_d, CAST(NULL AS DOUBLE) AS ks_p, CAST(NULL AS VARCHAR) AS ks_method,
    CAST(NULL AS DOUBLE) AS q_value, CAST(NULL AS DOUBLE) AS wasserstein, CAST(NULL AS DOUBLE) AS js_distance,
    CAST(NULL AS DOUBLE) AS linf, CAST(NULL AS VARCHAR[]) AS categories_new,
    CAST(NULL AS VARCHAR[]) AS categories_gone,
    CAST(NULL AS VARCHAR) AS psi_tier, CAST(NULL AS VARCHAR) AS ks_tier, CAST(NULL AS VARCHAR) AS distance_tier,
    current_view, baseline_view, sanity_status, fingerprint_diff
FROM drift_scalar_of(pairs, summary, missing, scalars)
UNION ALL
SELECT
    d.stage, d.view, d.target, d.symbol, d.baseline_key, d.run_id, d.run_started_at, d.cohort_id,
    d.baseline_kind, d.baseline_run_id, d.baseline_runs,
    'distribution', d.distribution, d.kind,
    d.tier, d.tier_rank, d.status, false, CAST(NULL AS VARCHAR),
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL,
    d.n, d.m, d.psi, d.psi_critical, d.psi_significant, d.chi2, d.chi2_p, d.ks_d, d.ks_p,
    d.ks_method, NULL, d.wasserstein, d.js_distance, d.linf, d.categories_new, d.categories_gone,
    d.psi_tier, d.ks_tier, d.distance_tier,
    d.current_view, d.baseline_view, d.sanity_status, d.fingerprint_diff
FROM drift_distribution_of(pairs, summary, missing, sample_rows) AS d;
