-- One row per cohort-run x baseline kind x distribution, with the statistics of
-- two_sample_tests over the cohort-run's values (n) and its baseline's (m, pooled for
-- rolling). status: COMPARED, LOW_N or INCONCLUSIVE (tier OK; two_sample_tests says
-- when), NO_DATA (a side has no finite value: psi, ks and tier are NULL) or NO_BASELINE
-- (no baseline of that kind yet; tier NULL).
-- drift_distribution_of(pairs, summary, missing, sample_rows): the same for the pairs of
-- `pairs` (rows of baselines), `summary` (of baseline_summary) and `missing` (of
-- missing_baselines), from the rows of samples in `sample_rows`.
CREATE OR REPLACE MACRO drift_distribution_of(pairs, summary, missing, sample_rows) AS TABLE
WITH dv AS (
    SELECT * FROM distribution_values_of(pairs, summary, sample_rows)
),
sample_counts AS (
    SELECT baseline_key, run_id, distribution, count(value) AS finite
    FROM query_table(sample_rows)
    GROUP BY baseline_key, run_id, distribution
),
sized AS (
    -- n and m from per-run counts, so pairs without values on a side still get a row
    SELECT
        pair_id, baseline_key, run_id, baseline_kind, distribution,
        CAST(sum(n) AS BIGINT) AS n, CAST(sum(m) AS BIGINT) AS m
    FROM (
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution,
               c.finite AS n, 0 AS m
        FROM query_table(summary) AS ps
        JOIN sample_counts AS c ON c.baseline_key = ps.baseline_key AND c.run_id = ps.run_id
        UNION ALL
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution, 0, c.finite
        FROM query_table(pairs) AS b
        JOIN query_table(summary) AS ps
            ON ps.baseline_key = b.baseline_key AND ps.run_id = b.run_id
            AND ps.baseline_kind = b.baseline_kind
        JOIN sample_counts AS c ON c.baseline_key = b.baseline_key AND c.run_id = b.baseline_run_id
    )
    GROUP BY pair_id, baseline_key, run_id, baseline_kind, distribution
),
compared AS (
    SELECT
        sz.baseline_key, sz.run_id, sz.baseline_kind, sz.distribution, sz.n, sz.m,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.sanity_status,
        ps.fingerprint_diff,
        t.psi, t.psi_bins, t.psi_critical, t.psi_significant, t.chi2, t.chi2_p,
        t.ks_d, t.ks_p, t.ks_method, t.wasserstein, t.js_distance, t.psi_tier, t.ks_tier,
        t.distance_tier, t.tier, t.tier_rank,
        CASE WHEN sz.n > 0 AND sz.m > 0 THEN t.status ELSE 'NO_DATA' END AS status
    FROM sized AS sz
    JOIN query_table(summary) AS ps ON ps.pair_id = sz.pair_id
    LEFT JOIN two_sample_tests('dv') AS t
        ON t.pair_id = sz.pair_id AND t.distribution = sz.distribution
    UNION ALL
    -- Cohort-runs without a baseline of a kind: each of their distributions, NO_BASELINE.
    SELECT
        s.baseline_key, s.run_id, mb.baseline_kind, s.distribution, count(s.value), 0,
        NULL, 0, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL,
        'NO_BASELINE'
    FROM query_table(sample_rows) AS s
    JOIN query_table(missing) AS mb ON mb.baseline_key = s.baseline_key AND mb.run_id = s.run_id
    GROUP BY s.baseline_key, s.run_id, mb.baseline_kind, s.distribution
)
SELECT
    cr.stage, cr.view, cr.target, cr.symbol, c.baseline_key, c.run_id, cr.run_started_at,
    cr.cohort_id, c.baseline_kind, c.baseline_run_id, c.baseline_runs,
    c.distribution, c.n, c.m, c.psi, c.psi_bins, c.psi_critical, c.psi_significant,
    c.chi2, c.chi2_p, c.ks_d, c.ks_p, c.ks_method, c.wasserstein, c.js_distance, c.psi_tier,
    c.ks_tier, c.distance_tier, c.tier, c.tier_rank,
    c.status,
    cr.view AS current_view, c.baseline_view, c.sanity_status, c.fingerprint_diff
FROM compared AS c
JOIN cohort_runs AS cr ON cr.baseline_key = c.baseline_key AND cr.run_id = c.run_id;
