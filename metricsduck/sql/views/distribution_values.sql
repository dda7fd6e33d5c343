-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value is NULL on the placeholder row of a distribution
-- without finite values; statistics skip those rows.
CREATE OR REPLACE VIEW distribution_values AS
SELECT * FROM distribution_values_of('baselines', 'baseline_summary', 'samples');
