-- The drift of every cohort-run, computed: one row per cohort-run x baseline kind x item,
-- item_kind 'metric' (from drift_scalar) or 'distribution' (from drift_distribution),
-- with the tier, status and main numbers of each; columns that do not apply to an item
-- kind are NULL. Queries read `drift`, which serves these rows from the compacted cache
-- where it holds them (metricsduck/compute.py).
-- drift_of(pairs, summary, missing, scalars, sample_rows): the same for the pairs of
-- `pairs` (rows of baselines), `summary` (of baseline_summary) and `missing` (of
-- missing_baselines), from the rows of scalar_facts in `scalars` and of samples in
-- `sample_rows`: metricsduck/compute.py computes a batch of runs so, from their own rows.
-- A distribution row's q_value is its Benjamini-Hochberg adjusted p (KS's, or the
-- chi-square's for a categorical one) over the family of the rows with a p of its run x
-- stage x baseline kind (scipy.stats.false_discovery_control):
-- q_(i) = min over j >= i of p_(j) * N / j, at most 1. With drift.fdr_q above 0, a row whose
-- q exceeds it cannot be worse than OK (status INCONCLUSIVE). A batch always holds whole
-- families (a run, or a run's stage), and its cache key covers them (compute.py).
CREATE OR REPLACE MACRO drift_of(pairs, summary, missing, scalars, sample_rows) AS TABLE
WITH tested AS (
    SELECT *, CASE WHEN kind = 'categorical' THEN chi2_p ELSE ks_p END AS p
    FROM drift_distribution_of(pairs, summary, missing, sample_rows)
),
distributions AS (
    SELECT
        *,
        count(p) OVER family AS family_size,
        row_number() OVER (family ORDER BY p NULLS LAST, baseline_key, distribution) AS p_rank
    FROM tested
    WINDOW family AS (PARTITION BY run_id, stage, baseline_kind)
),
adjusted AS (
    SELECT
        *,
        CASE WHEN p IS NOT NULL THEN least(1.0, min(p * family_size / p_rank) OVER (
            PARTITION BY run_id, stage, baseline_kind ORDER BY p_rank DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
        END AS q_value
    FROM distributions
),
discovered AS (
    SELECT
        a.* REPLACE (
            CASE WHEN a.fdr_gated THEN 'OK' ELSE a.tier END AS tier,
            CASE WHEN a.fdr_gated THEN 0 ELSE a.tier_rank END AS tier_rank,
            CASE WHEN a.fdr_gated THEN 'INCONCLUSIVE' ELSE a.status END AS status
        )
    FROM (
        SELECT adjusted.*, cfg.fdr_q > 0 AND adjusted.q_value > cfg.fdr_q AND adjusted.tier_rank > 0 AS fdr_gated
        FROM adjusted, settings_wide AS cfg
    ) AS a
)
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
    d.ks_method, d.q_value, d.wasserstein, d.js_distance, d.linf, d.categories_new, d.categories_gone,
    d.psi_tier, d.ks_tier, d.distance_tier,
    d.current_view, d.baseline_view, d.sanity_status, d.fingerprint_diff
FROM discovered AS d;
