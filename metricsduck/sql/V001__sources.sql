-- V001: the source views every later version builds on.
-- Needs facts_raw, samples_raw (bound by metricsduck to the sidecar Parquet files)
-- and the settings table (filled from the YAML config).

-- setting('drift.psi_bins'): one numeric setting by name; views never hard-code thresholds.
CREATE OR REPLACE MACRO setting(setting_key) AS (
    SELECT value FROM settings WHERE key = setting_key
);

-- One row per metric of each cohort-run (schema version 1). When two sidecars claim the
-- same cohort-run (baseline_key, run_id), the one with the newest written_at wins
-- (ties: the later path), and all of its rows are kept together.
CREATE OR REPLACE VIEW facts AS
WITH ranked AS (
    SELECT
        *,
        dense_rank() OVER (
            PARTITION BY baseline_key, run_id
            ORDER BY written_at DESC, source_file DESC
        ) AS sidecar_rank
    FROM facts_raw
    WHERE schema_version = 1
)
SELECT
    run_id, run_started_at, written_at, stage, view, target, symbol, cohort_id,
    baseline_key, git_commit, config_hash, data_fingerprint, seed, good, audit_valid,
    metric, kind, value, value_text, source_file
FROM ranked
WHERE sidecar_rank = 1;

-- One row per retained sample value of each cohort-run and distribution; duplicates
-- resolved like facts. value is NULL only on the single placeholder row of a
-- distribution that had no finite value (its counts are kept there).
CREATE OR REPLACE VIEW samples AS
WITH ranked AS (
    SELECT
        *,
        dense_rank() OVER (
            PARTITION BY baseline_key, run_id
            ORDER BY written_at DESC, source_file DESC
        ) AS sidecar_rank
    FROM samples_raw
    WHERE schema_version = 1
)
SELECT
    run_id, run_started_at, written_at, stage, view, target, symbol, cohort_id,
    baseline_key, distribution, n_total, n_missing, value, source_file
FROM ranked
WHERE sidecar_rank = 1;

-- One row per cohort-run (baseline_key, run_id) with its 1-based ordinal within the key
-- (ordered by run_started_at, then run_id), fingerprints, verdicts and metric count.
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

-- One row per pipeline run: when it started and how many cohort-runs it holds, ordered
-- like baselines order runs (run_started_at, then run_id); ordinal 1 is the oldest.
CREATE OR REPLACE VIEW runs AS
SELECT
    run_id,
    min(run_started_at) AS run_started_at,
    count(*) AS cohort_runs,
    count(DISTINCT stage) AS stages,
    row_number() OVER (ORDER BY min(run_started_at), run_id) AS ordinal
FROM cohort_runs
GROUP BY run_id;
