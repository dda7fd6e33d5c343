-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value holds a number, value_text a text value (categorical
-- samples); both are NULL on the placeholder row of a distribution without any value, which
-- the statistics skip.
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW distribution_values AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs'))
SELECT * FROM distribution_values_of('tree_pairs', 'tree_summary', 'samples');
