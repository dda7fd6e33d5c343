-- One row per current cohort-run x enabled baseline kind x baseline cohort-run it uses:
-- previous_run (the cohort-run just before), rolling (up to baselines.rolling_window_k
-- cohort-runs just before) and last_good_run (the latest earlier cohort-run whose effective
-- verdict is good). Joined on baseline_key alone, so a baseline never crosses views, and
-- only on earlier ordinals, so a cohort-run is never its own baseline.
-- fingerprint_diff lists the fingerprints that are set on both sides and differ.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW baselines AS
SELECT * FROM baselines_of('cohort_runs');
