-- One row per cohort-run of the sample sidecars: the sidecar whose rows count.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW sample_sources AS
SELECT * FROM newest_sidecars('samples_raw');
