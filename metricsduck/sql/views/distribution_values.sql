-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value is NULL on the placeholder row of a distribution
-- without finite values; statistics skip those rows.
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
CREATE OR REPLACE VIEW distribution_values AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs'))
SELECT * FROM distribution_values_of('tree_pairs', 'tree_summary', 'samples');
