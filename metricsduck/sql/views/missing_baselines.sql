-- Every cohort-run x enabled baseline kind without a baseline yet (its key's first
-- runs, or no earlier good run): drift gives these NO_BASELINE rows, never silence.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW missing_baselines AS
SELECT * FROM missing_baselines_of('cohort_runs', 'baseline_summary');
