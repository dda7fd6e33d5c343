-- V008: the newest sidecar of each cohort-run found by aggregation instead of ranking.
-- Needs V001. `facts` and `samples` keep exactly the rows they kept in V001; they no longer
-- sort every row of the tree to find them (a window over tens of millions of sample rows
-- took seconds and gigabytes), and a query that needs a few cohort-runs can narrow the
-- small `*_sources` views instead.

-- One row per cohort-run (baseline_key, run_id) of the sidecars in the table `raw`
-- (schema version 1): the sidecar whose rows count. The newest written_at wins (NULL only
-- when none has one), ties go to the later path, as in V001's ranking.
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

-- One row per cohort-run of the metric sidecars: the sidecar whose rows count.
CREATE OR REPLACE VIEW fact_sources AS
SELECT * FROM newest_sidecars('facts_raw');

-- One row per metric of each cohort-run (schema version 1): the rows of its winning
-- sidecar (`fact_sources`) that carry the winning written_at. Same rows as V001.
CREATE OR REPLACE VIEW facts AS
SELECT
    f.run_id, f.run_started_at, f.written_at, f.stage, f.view, f.target, f.symbol, f.cohort_id,
    f.baseline_key, f.git_commit, f.config_hash, f.data_fingerprint, f.seed, f.good, f.audit_valid,
    f.metric, f.kind, f.value, f.value_text, f.source_file
FROM facts_raw AS f
SEMI JOIN fact_sources AS s
    ON f.baseline_key IS NOT DISTINCT FROM s.baseline_key
    AND f.run_id IS NOT DISTINCT FROM s.run_id
    AND f.written_at IS NOT DISTINCT FROM s.written_at
    AND f.source_file IS NOT DISTINCT FROM s.source_file
WHERE f.schema_version = 1;

-- One row per cohort-run of the sample sidecars: the sidecar whose rows count.
CREATE OR REPLACE VIEW sample_sources AS
SELECT * FROM newest_sidecars('samples_raw');

-- One row per retained sample value of each cohort-run and distribution: the rows of its
-- winning sidecar (`sample_sources`). Same rows as V001.
CREATE OR REPLACE VIEW samples AS
SELECT
    s.run_id, s.run_started_at, s.written_at, s.stage, s.view, s.target, s.symbol, s.cohort_id,
    s.baseline_key, s.distribution, s.n_total, s.n_missing, s.value, s.source_file
FROM samples_raw AS s
SEMI JOIN sample_sources AS w
    ON s.baseline_key IS NOT DISTINCT FROM w.baseline_key
    AND s.run_id IS NOT DISTINCT FROM w.run_id
    AND s.written_at IS NOT DISTINCT FROM w.written_at
    AND s.source_file IS NOT DISTINCT FROM w.source_file
WHERE s.schema_version = 1;
