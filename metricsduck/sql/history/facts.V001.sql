-- facts as released in V001__sources.sql, superseded since; kept as a test oracle, never loaded.
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
