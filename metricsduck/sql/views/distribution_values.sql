-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value is NULL on the placeholder row of a distribution
-- without finite values; statistics skip those rows.
CREATE OR REPLACE VIEW distribution_values AS
SELECT p.pair_id, p.baseline_key, p.run_id, p.baseline_kind, s.distribution, 'current' AS side, s.value
FROM baseline_summary AS p
JOIN samples AS s ON s.baseline_key = p.baseline_key AND s.run_id = p.run_id
UNION ALL
SELECT p.pair_id, b.baseline_key, b.run_id, b.baseline_kind, s.distribution, 'baseline', s.value
FROM baselines AS b
JOIN baseline_summary AS p
    ON p.baseline_key = b.baseline_key AND p.run_id = b.run_id AND p.baseline_kind = b.baseline_kind
JOIN samples AS s ON s.baseline_key = b.baseline_key AND s.run_id = b.baseline_run_id;
