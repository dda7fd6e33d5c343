-- One row per cohort-run x baseline kind that has a baseline: the baseline run (NULL for
-- rolling, which pools baseline_runs runs), its view, the fingerprints that differ from
-- any pooled run, and the sanity verdict: SELF_COMPARISON (must never happen),
-- FINGERPRINT_MISMATCH (labels, does not silence) or OK.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW baseline_summary AS
SELECT * FROM baseline_summary_of('baselines');
