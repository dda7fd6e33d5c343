-- One row per cohort-run x baseline kind x distribution, with the statistics of
-- two_sample_tests over the cohort-run's values (n) and its baseline's (m, pooled for
-- rolling). status: COMPARED, NO_DATA (a side has no finite value: psi, ks and tier are
-- NULL) or NO_BASELINE (no baseline of that kind yet; tier NULL).
CREATE OR REPLACE VIEW drift_distribution AS
SELECT * FROM drift_distribution_of('baselines', 'baseline_summary', 'missing_baselines', 'samples');
