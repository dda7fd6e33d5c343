-- One row per current cohort-run x enabled baseline kind x baseline cohort-run it uses:
-- previous_run (the cohort-run just before), rolling (up to baselines.rolling_window_k
-- cohort-runs just before) and last_good_run (the latest earlier cohort-run whose effective
-- verdict is good). Joined on baseline_key alone, so a baseline never crosses views, and
-- only on earlier ordinals, so a cohort-run is never its own baseline.
-- fingerprint_diff lists the fingerprints that are set on both sides and differ.
-- baselines_of(scope): these rows for the current cohort-runs listed in the relation named
-- `scope` (columns baseline_key, run_id) only; their baselines may lie outside it.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO baselines_of(scope) AS TABLE
WITH current_runs AS (
    SELECT
        *,
        max(CASE WHEN effective_good THEN ordinal END) OVER (
            PARTITION BY baseline_key ORDER BY ordinal
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS last_good_ordinal,
        (baseline_key, run_id) IN (SELECT baseline_key, run_id FROM query_table(scope)) AS in_scope
    FROM cohort_status
),
pairs AS (
    SELECT c.baseline_key, c.run_id, 'previous_run' AS baseline_kind, c.ordinal - 1 AS baseline_ordinal
    FROM current_runs AS c, settings_wide AS cfg
    WHERE cfg.previous_run AND c.ordinal > 1 AND c.in_scope
    UNION ALL
    SELECT c.baseline_key, c.run_id, 'rolling', w.generate_series
    FROM current_runs AS c, settings_wide AS cfg,
        generate_series(greatest(c.ordinal - cfg.rolling_window_k, 1), c.ordinal - 1) AS w
    WHERE c.in_scope
    UNION ALL
    SELECT c.baseline_key, c.run_id, 'last_good_run', c.last_good_ordinal
    FROM current_runs AS c, settings_wide AS cfg
    WHERE cfg.last_good_run AND c.last_good_ordinal IS NOT NULL AND c.in_scope
)
SELECT
    c.stage, c.view, c.target, c.symbol, c.baseline_key, c.run_id, c.run_started_at,
    c.ordinal, c.cohort_id,
    p.baseline_kind,
    b.run_id AS baseline_run_id,
    b.run_started_at AS baseline_run_started_at,
    b.ordinal AS baseline_ordinal,
    b.cohort_id AS baseline_cohort_id,
    c.view AS current_view,
    b.view AS baseline_view,
    b.effective_good AS baseline_good,
    nullif(concat_ws(',',
        CASE WHEN c.git_commit <> b.git_commit THEN 'git_commit' END,
        CASE WHEN c.config_hash <> b.config_hash THEN 'config_hash' END,
        CASE WHEN c.data_fingerprint <> b.data_fingerprint THEN 'data_fingerprint' END,
        CASE WHEN c.seed <> b.seed THEN 'seed' END
    ), '') AS fingerprint_diff
FROM pairs AS p
JOIN current_runs AS c ON c.baseline_key = p.baseline_key AND c.run_id = p.run_id
JOIN current_runs AS b ON b.baseline_key = p.baseline_key AND b.ordinal = p.baseline_ordinal;
