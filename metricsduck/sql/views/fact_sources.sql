-- One row per cohort-run of the metric sidecars: the sidecar whose rows count.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW fact_sources AS
SELECT * FROM newest_sidecars('facts_raw');
