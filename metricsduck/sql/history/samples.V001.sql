-- samples as released in V001__sources.sql, superseded since; kept as a test oracle, never loaded.
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
