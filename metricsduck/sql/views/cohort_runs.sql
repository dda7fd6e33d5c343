-- One row per cohort-run (baseline_key, run_id) with its 1-based ordinal within the key
-- (ordered by run_started_at, then run_id), fingerprints, verdicts and metric count.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW cohort_runs AS
WITH per_run AS (
    SELECT
        baseline_key, run_id,
        any_value(run_started_at) AS run_started_at,
        any_value(written_at) AS written_at,
        any_value(stage) AS stage,
        any_value(view) AS view,
        any_value(target) AS target,
        any_value(symbol) AS symbol,
        any_value(cohort_id) AS cohort_id,
        any_value(git_commit) AS git_commit,
        any_value(config_hash) AS config_hash,
        any_value(data_fingerprint) AS data_fingerprint,
        any_value(seed) AS seed,
        any_value(good) AS good,
        any_value(audit_valid) AS audit_valid,
        count(*) AS n_metrics,
        any_value(source_file) AS source_file
    FROM facts
    GROUP BY baseline_key, run_id
)
SELECT
    stage, view, target, symbol, baseline_key, run_id, run_started_at,
    row_number() OVER (PARTITION BY baseline_key ORDER BY run_started_at, run_id) AS ordinal,
    cohort_id, written_at, git_commit, config_hash, data_fingerprint, seed, good,
    audit_valid, n_metrics, source_file
FROM per_run;
