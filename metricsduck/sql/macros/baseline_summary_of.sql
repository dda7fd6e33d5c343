-- One row per cohort-run x baseline kind that has a baseline: the baseline run (NULL for
-- rolling, which pools baseline_runs runs), its view, the fingerprints that differ from
-- any pooled run, and the sanity verdict: SELF_COMPARISON (must never happen),
-- FINGERPRINT_MISMATCH (labels, does not silence) or OK.
-- baseline_summary_of(pairs): the same over the rows of `baselines` in the relation named
-- `pairs`; pair_id identifies a pair by its key columns (`checked_id`).
-- Shard: baseline_key.
CREATE OR REPLACE MACRO baseline_summary_of(pairs) AS TABLE
SELECT
    baseline_key, run_id, baseline_kind,
    checked_id(hash(baseline_key, run_id, baseline_kind),
               count(*) OVER (PARTITION BY hash(baseline_key, run_id, baseline_kind))) AS pair_id,
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
FROM query_table(pairs)
GROUP BY baseline_key, run_id, baseline_kind;
