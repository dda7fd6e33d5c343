-- One row per retained sample value of each cohort-run and distribution: the rows of its
-- winning sidecar (`sample_sources`).
-- samples_of(raw, sources): the same from the sample sidecar rows in `raw` (rows of
-- samples_raw) and the winning sidecars in `sources` (rows of newest_sidecars).
-- Shard: baseline_key.
CREATE OR REPLACE MACRO samples_of(raw, sources) AS TABLE
SELECT
    s.run_id, s.run_started_at, s.written_at, s.stage, s.view, s.target, s.symbol, s.cohort_id,
    s.baseline_key, s.distribution, s.n_total, s.n_missing, s.value, s.value_text, s.source_file
FROM query_table(raw) AS s
SEMI JOIN query_table(sources) AS w
    ON s.baseline_key IS NOT DISTINCT FROM w.baseline_key
    AND s.run_id IS NOT DISTINCT FROM w.run_id
    AND s.written_at IS NOT DISTINCT FROM w.written_at
    AND s.source_file IS NOT DISTINCT FROM w.source_file
WHERE s.schema_version = 1;
