-- One row per cohort-run x baseline kind x distribution, with the statistics of
-- two_sample_tests over the cohort-run's values (n) and its baseline's (m, pooled for
-- rolling). status: COMPARED, LOW_N or INCONCLUSIVE (tier OK; two_sample_tests says
-- when), NO_DATA (a side has no finite value: psi, ks and tier are NULL) or NO_BASELINE
-- (no baseline of that kind yet; tier NULL).
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW drift_distribution AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_missing AS MATERIALIZED (FROM missing_baselines_of('cohort_runs', 'tree_summary')),
    tree_samples AS MATERIALIZED (FROM samples)
SELECT * FROM drift_distribution_of('tree_pairs', 'tree_summary', 'tree_missing', 'tree_samples');
