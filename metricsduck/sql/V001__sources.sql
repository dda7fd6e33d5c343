-- V001: the source views every later version builds on.
-- Needs facts_raw, samples_raw (bound by metricsduck to the sidecar Parquet files)
-- and the settings table (filled from the YAML config).

-- The numeric settings as one row (cross-joined by views as cfg), so that no view
-- hard-codes a threshold the config owns. Booleans are true/false, counts BIGINT.
CREATE OR REPLACE VIEW settings_wide AS
SELECT
    max(value) FILTER (WHERE key = 'baselines.previous_run') = 1 AS previous_run,
    CAST(max(value) FILTER (WHERE key = 'baselines.rolling_window_k') AS BIGINT) AS rolling_window_k,
    max(value) FILTER (WHERE key = 'baselines.last_good_run') = 1 AS last_good_run,
    max(value) FILTER (WHERE key = 'baselines.last_good_uses_audit') = 1 AS last_good_uses_audit,
    max(value) FILTER (WHERE key = 'drift.psi_threshold') AS psi_threshold,
    max(value) FILTER (WHERE key = 'drift.psi_warn') AS psi_warn,
    max(value) FILTER (WHERE key = 'drift.ks_threshold') AS ks_threshold,
    max(value) FILTER (WHERE key = 'drift.ks_warn') AS ks_warn,
    max(value) FILTER (WHERE key = 'drift.ks_alpha') AS ks_alpha,
    CAST(max(value) FILTER (WHERE key = 'drift.psi_bins') AS BIGINT) AS psi_bins,
    max(value) FILTER (WHERE key = 'drift.psi_epsilon') AS psi_epsilon,
    max(value) FILTER (WHERE key = 'drift.tiers.relative.warn') AS relative_warn,
    max(value) FILTER (WHERE key = 'drift.tiers.relative.alert') AS relative_alert,
    max(value) FILTER (WHERE key = 'drift.tiers.absolute.warn') AS absolute_warn,
    max(value) FILTER (WHERE key = 'drift.tiers.absolute.alert') AS absolute_alert,
    max(value) FILTER (WHERE key = 'drift.tiers.critical_relative.warn') AS critical_relative_warn,
    max(value) FILTER (WHERE key = 'drift.tiers.critical_relative.alert') AS critical_relative_alert,
    max(value) FILTER (WHERE key = 'drift.tiers.critical_absolute.warn') AS critical_absolute_warn,
    max(value) FILTER (WHERE key = 'drift.tiers.critical_absolute.alert') AS critical_absolute_alert,
    CAST(max(value) FILTER (WHERE key = 'trend.window') AS BIGINT) AS trend_window,
    CAST(max(value) FILTER (WHERE key = 'trend.min_runs') AS BIGINT) AS trend_min_runs,
    max(value) FILTER (WHERE key = 'trend.min_r2') AS trend_min_r2,
    max(value) FILTER (WHERE key = 'trend.min_rel_change') AS trend_min_rel_change
FROM settings;

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
