-- V002: marks, effective verdicts and the baselines every drift row is measured against.
-- Needs V001 and marks_raw (bound by metricsduck to ROOT/.metricsduck/marks/*.parquet).

-- The latest mark of each run made with `metricsduck mark` (marks are append-only files;
-- the newest marked_at wins, ties broken by file name).
CREATE OR REPLACE VIEW marks AS
SELECT run_id, good, reason, marked_at, source_file
FROM (
    SELECT
        *,
        row_number() OVER (PARTITION BY run_id ORDER BY marked_at DESC, source_file DESC) AS mark_rank
    FROM marks_raw
)
WHERE mark_rank = 1;

-- cohort_runs with its effective verdict: the latest mark, else the pipeline's good
-- column, else audit_valid when baselines.last_good_uses_audit is on (DESIGN §4).
-- good_source says which one decided ('mark', 'good', 'audit', or NULL when unknown).
CREATE OR REPLACE VIEW cohort_status AS
SELECT
    cr.*,
    CASE
        WHEN m.good IS NOT NULL THEN m.good
        WHEN cr.good IS NOT NULL THEN cr.good
        WHEN cfg.last_good_uses_audit THEN cr.audit_valid
    END AS effective_good,
    CASE
        WHEN m.good IS NOT NULL THEN 'mark'
        WHEN cr.good IS NOT NULL THEN 'good'
        WHEN cfg.last_good_uses_audit AND cr.audit_valid IS NOT NULL THEN 'audit'
    END AS good_source
FROM cohort_runs AS cr
CROSS JOIN settings_wide AS cfg
LEFT JOIN marks AS m USING (run_id);

-- One row per current cohort-run x enabled baseline kind x baseline cohort-run it uses:
-- previous_run (the cohort-run just before), rolling (up to baselines.rolling_window_k
-- cohort-runs just before) and last_good_run (the latest earlier cohort-run whose effective
-- verdict is good). Joined on baseline_key alone, so a baseline never crosses views, and
-- only on earlier ordinals, so a cohort-run is never its own baseline.
-- fingerprint_diff lists the fingerprints that are set on both sides and differ.
CREATE OR REPLACE VIEW baselines AS
WITH current_runs AS (
    SELECT
        *,
        max(CASE WHEN effective_good THEN ordinal END) OVER (
            PARTITION BY baseline_key ORDER BY ordinal
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS last_good_ordinal
    FROM cohort_status
),
pairs AS (
    SELECT c.baseline_key, c.run_id, 'previous_run' AS baseline_kind, c.ordinal - 1 AS baseline_ordinal
    FROM current_runs AS c, settings_wide AS cfg
    WHERE cfg.previous_run AND c.ordinal > 1
    UNION ALL
    SELECT c.baseline_key, c.run_id, 'rolling', w.generate_series
    FROM current_runs AS c, settings_wide AS cfg,
        generate_series(greatest(c.ordinal - cfg.rolling_window_k, 1), c.ordinal - 1) AS w
    UNION ALL
    SELECT c.baseline_key, c.run_id, 'last_good_run', c.last_good_ordinal
    FROM current_runs AS c, settings_wide AS cfg
    WHERE cfg.last_good_run AND c.last_good_ordinal IS NOT NULL
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

-- The baseline kinds enabled in the config, one row each (rolling is always on; its
-- window is baselines.rolling_window_k).
CREATE OR REPLACE VIEW baseline_kinds AS
SELECT k.baseline_kind
FROM settings_wide AS cfg,
    (VALUES ('previous_run'), ('rolling'), ('last_good_run')) AS k(baseline_kind)
WHERE (k.baseline_kind <> 'previous_run' OR cfg.previous_run)
  AND (k.baseline_kind <> 'last_good_run' OR cfg.last_good_run);

-- One row per cohort-run x baseline kind that has a baseline: the baseline run (NULL for
-- rolling, which pools baseline_runs runs), its view, the fingerprints that differ from
-- any pooled run, and the sanity verdict: SELF_COMPARISON (must never happen),
-- FINGERPRINT_MISMATCH (labels, does not silence) or OK.
CREATE OR REPLACE VIEW baseline_summary AS
SELECT
    baseline_key, run_id, baseline_kind,
    row_number() OVER (ORDER BY baseline_key, run_id, baseline_kind) AS pair_id,
    CASE WHEN baseline_kind <> 'rolling' THEN any_value(baseline_run_id) END AS baseline_run_id,
    count(*) AS baseline_runs,
    min(baseline_run_id) AS first_baseline_run_id,
    max(baseline_run_id) AS last_baseline_run_id,
    any_value(baseline_view) AS baseline_view,
    nullif(concat_ws(',',
        CASE WHEN bool_or(contains(fingerprint_diff, 'git_commit')) THEN 'git_commit' END,
        CASE WHEN bool_or(contains(fingerprint_diff, 'config_hash')) THEN 'config_hash' END,
        CASE WHEN bool_or(contains(fingerprint_diff, 'data_fingerprint')) THEN 'data_fingerprint' END,
        CASE WHEN bool_or(contains(fingerprint_diff, 'seed')) THEN 'seed' END
    ), '') AS fingerprint_diff,
    CASE
        WHEN bool_or(baseline_run_id = run_id) THEN 'SELF_COMPARISON'
        WHEN bool_or(fingerprint_diff IS NOT NULL) THEN 'FINGERPRINT_MISMATCH'
        ELSE 'OK'
    END AS sanity_status
FROM baselines
GROUP BY baseline_key, run_id, baseline_kind;

-- Every cohort-run x enabled baseline kind without a baseline yet (its key's first
-- runs, or no earlier good run): drift gives these NO_BASELINE rows, never silence.
CREATE OR REPLACE VIEW missing_baselines AS
SELECT cr.baseline_key, cr.run_id, k.baseline_kind
FROM cohort_runs AS cr
CROSS JOIN baseline_kinds AS k
WHERE NOT EXISTS (
    SELECT 1 FROM baseline_summary AS ps
    WHERE ps.baseline_key = cr.baseline_key AND ps.run_id = cr.run_id
      AND ps.baseline_kind = k.baseline_kind
);

-- The scalar inputs of drift: every fact, plus each distribution's missing share as its
-- own number '<distribution>.missing_rate' (n_missing / n_total), so missingness drifts
-- like any metric.
CREATE OR REPLACE VIEW scalar_facts AS
SELECT
    stage, view, target, symbol, baseline_key, run_id, run_started_at, cohort_id,
    metric, kind, value, value_text
FROM facts
UNION ALL
SELECT
    any_value(stage), any_value(view), any_value(target), any_value(symbol), baseline_key,
    run_id, any_value(run_started_at), any_value(cohort_id),
    distribution || '.missing_rate', 'number',
    CASE WHEN any_value(n_total) > 0 THEN any_value(n_missing) / any_value(n_total) END,
    CASE WHEN any_value(n_total) = 0 THEN 'nan' END
FROM samples
GROUP BY baseline_key, run_id, distribution;
