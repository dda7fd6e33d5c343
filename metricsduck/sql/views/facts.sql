-- One row per metric of each cohort-run (schema version 1): the rows of its winning
-- sidecar (`fact_sources`) that carry the winning written_at..
-- Shard: baseline_key.
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
