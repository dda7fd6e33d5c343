-- One row per retained sample value of each cohort-run and distribution: the rows of its
-- winning sidecar (`sample_sources`).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW samples AS
SELECT * FROM samples_of('samples_raw', 'sample_sources');
