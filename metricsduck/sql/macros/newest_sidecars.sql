-- One row per cohort-run (baseline_key, run_id) of the sidecars in the table `raw`
-- (schema version 1): the sidecar whose rows count. The newest written_at wins (NULL only
-- when none has one), ties go to the later path (the order the ranking of every row gave, kept as its oracle in sql/history).
-- Shard: baseline_key.
CREATE OR REPLACE MACRO newest_sidecars(raw) AS TABLE
WITH newest AS (
    SELECT baseline_key, run_id, max(written_at) AS written_at
    FROM query_table(raw)
    WHERE schema_version = 1
    GROUP BY baseline_key, run_id
)
SELECT n.baseline_key, n.run_id, n.written_at, max(r.source_file) AS source_file
FROM newest AS n
JOIN query_table(raw) AS r
    ON r.baseline_key IS NOT DISTINCT FROM n.baseline_key
    AND r.run_id IS NOT DISTINCT FROM n.run_id
    AND r.written_at IS NOT DISTINCT FROM n.written_at
WHERE r.schema_version = 1
GROUP BY n.baseline_key, n.run_id, n.written_at;
