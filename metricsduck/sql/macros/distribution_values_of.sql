-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value holds a number, value_text a text value (categorical
-- samples); both are NULL on the placeholder row of a distribution without any value, which
-- the statistics skip.
-- distribution_values_of(pairs, summary, sample_rows): the same for the compared pairs of
-- `pairs` (rows of baselines) and `summary` (of baseline_summary), from `sample_rows`.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO distribution_values_of(pairs, summary, sample_rows) AS TABLE
SELECT p.pair_id, p.baseline_key, p.run_id, p.baseline_kind, s.distribution, 'current' AS side, s.value, s.value_text
FROM query_table(summary) AS p
JOIN query_table(sample_rows) AS s ON s.baseline_key = p.baseline_key AND s.run_id = p.run_id
UNION ALL
SELECT p.pair_id, b.baseline_key, b.run_id, b.baseline_kind, s.distribution, 'baseline', s.value, s.value_text
FROM query_table(pairs) AS b
JOIN query_table(summary) AS p
    ON p.baseline_key = b.baseline_key AND p.run_id = b.run_id AND p.baseline_kind = b.baseline_kind
JOIN query_table(sample_rows) AS s ON s.baseline_key = b.baseline_key AND s.run_id = b.baseline_run_id;
