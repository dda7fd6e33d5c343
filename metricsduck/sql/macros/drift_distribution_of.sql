-- One row per cohort-run x baseline kind x distribution, with the statistics of
-- two_sample_tests over the cohort-run's values (n) and its baseline's (m, pooled for
-- rolling), or of categorical_tests where the cohort-run's values are text (kind
-- 'categorical'; 'distribution' for numbers). status: COMPARED, LOW_N or INCONCLUSIVE
-- (tier OK; the tests say when), NO_DATA (a side has no value of the kind compared:
-- statistics and tier are NULL) or NO_BASELINE (no baseline of that kind yet; tier NULL).
-- drift_distribution_of(pairs, summary, missing, sample_rows): the same for the pairs of
-- `pairs` (rows of baselines), `summary` (of baseline_summary) and `missing` (of
-- missing_baselines), from the rows of samples in `sample_rows`.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO drift_distribution_of(pairs, summary, missing, sample_rows) AS TABLE
WITH dv AS (
    SELECT * FROM distribution_values_of(pairs, summary, sample_rows)
),
categories AS (
    -- one pass over the rows: per run and distribution its numbers, and its count of each
    -- category (a numeric distribution is one row, value_text NULL)
    SELECT baseline_key, run_id, distribution, value_text, count(value) AS numbers,
           count(value_text) AS count
    FROM query_table(sample_rows)
    GROUP BY baseline_key, run_id, distribution, value_text
),
sample_counts AS (
    SELECT baseline_key, run_id, distribution, sum(numbers) AS numbers, sum(count) AS texts
    FROM categories
    GROUP BY baseline_key, run_id, distribution
),
category_values AS (
    SELECT * FROM category_values_of(pairs, summary, 'categories')
),
sized AS (
    -- n and m from per-run counts, so pairs without values on a side still get a row; the
    -- cohort-run's own values decide the kind (the baseline's when it has none)
    SELECT
        pair_id, baseline_key, run_id, baseline_kind, distribution,
        CASE WHEN sum(n_texts) > 0 OR (sum(n_numbers) = 0 AND sum(m_texts) > 0)
             THEN 'categorical' ELSE 'distribution' END AS kind,
        CAST(CASE WHEN kind = 'categorical' THEN sum(n_texts) ELSE sum(n_numbers) END AS BIGINT) AS n,
        CAST(CASE WHEN kind = 'categorical' THEN sum(m_texts) ELSE sum(m_numbers) END AS BIGINT) AS m
    FROM (
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution,
               c.numbers AS n_numbers, c.texts AS n_texts, 0 AS m_numbers, 0 AS m_texts
        FROM query_table(summary) AS ps
        JOIN sample_counts AS c ON c.baseline_key = ps.baseline_key AND c.run_id = ps.run_id
        UNION ALL
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution, 0, 0,
               c.numbers, c.texts
        FROM query_table(pairs) AS b
        JOIN query_table(summary) AS ps
            ON ps.baseline_key = b.baseline_key AND ps.run_id = b.run_id
            AND ps.baseline_kind = b.baseline_kind
        JOIN sample_counts AS c ON c.baseline_key = b.baseline_key AND c.run_id = b.baseline_run_id
    )
    GROUP BY pair_id, baseline_key, run_id, baseline_kind, distribution
),
tested AS (
    -- a cohort-run's values are numbers or text, so a pair gets at most one of the two
    SELECT * FROM two_sample_tests('dv')
    UNION ALL BY NAME
    SELECT * FROM categorical_tests('category_values')
),
compared AS (
    SELECT
        sz.baseline_key, sz.run_id, sz.baseline_kind, sz.distribution, sz.kind, sz.n, sz.m,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.sanity_status,
        ps.fingerprint_diff,
        t.psi, t.psi_bins, t.psi_critical, t.psi_significant, t.chi2, t.chi2_p,
        t.ks_d, t.ks_p, t.ks_method, t.wasserstein, t.js_distance, t.linf, t.categories_new,
        t.categories_gone, t.psi_tier, t.ks_tier, t.distance_tier, t.tier, t.tier_rank,
        CASE WHEN sz.n > 0 AND sz.m > 0 THEN t.status ELSE 'NO_DATA' END AS status
    FROM sized AS sz
    JOIN query_table(summary) AS ps ON ps.pair_id = sz.pair_id
    LEFT JOIN tested AS t ON t.pair_id = sz.pair_id AND t.distribution = sz.distribution
    UNION ALL
    -- Cohort-runs without a baseline of a kind: each of their distributions, NO_BASELINE.
    SELECT
        c.baseline_key, c.run_id, mb.baseline_kind, c.distribution,
        CASE WHEN c.texts > 0 THEN 'categorical' ELSE 'distribution' END,
        CAST(CASE WHEN c.texts > 0 THEN c.texts ELSE c.numbers END AS BIGINT), 0,
        NULL, 0, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL,
        'NO_BASELINE'
    FROM sample_counts AS c
    JOIN query_table(missing) AS mb ON mb.baseline_key = c.baseline_key AND mb.run_id = c.run_id
)
SELECT
    cr.stage, cr.view, cr.target, cr.symbol, c.baseline_key, c.run_id, cr.run_started_at,
    cr.cohort_id, c.baseline_kind, c.baseline_run_id, c.baseline_runs,
    c.distribution, c.kind, c.n, c.m, c.psi, c.psi_bins, c.psi_critical, c.psi_significant,
    c.chi2, c.chi2_p, c.ks_d, c.ks_p, c.ks_method, c.wasserstein, c.js_distance, c.linf,
    c.categories_new, c.categories_gone, c.psi_tier, c.ks_tier, c.distance_tier, c.tier, c.tier_rank,
    c.status,
    cr.view AS current_view, c.baseline_view, c.sanity_status, c.fingerprint_diff
FROM compared AS c
JOIN cohort_runs AS cr ON cr.baseline_key = c.baseline_key AND cr.run_id = c.run_id;
