-- The category counts compared by a cohort-run x baseline kind, from per-run counts: side
-- 'current' is the cohort-run's count of each category of a text distribution, side
-- 'baseline' the counts of every baseline cohort-run it uses (one row per run; pooled for
-- rolling by whoever sums them). Counting per run first keeps the pairing to one row per
-- category, not per value.
-- category_values_of(pairs, summary, categories): the same for the compared pairs of
-- `pairs` (rows of baselines) and `summary` (of baseline_summary), from `categories`
-- (baseline_key, run_id, distribution, value_text, count; rows without text are skipped).
-- Shard: baseline_key.
CREATE OR REPLACE MACRO category_values_of(pairs, summary, categories) AS TABLE
SELECT p.pair_id, c.distribution, 'current' AS side, c.value_text, c.count
FROM query_table(summary) AS p
JOIN query_table(categories) AS c ON c.baseline_key = p.baseline_key AND c.run_id = p.run_id
WHERE c.value_text IS NOT NULL
UNION ALL
SELECT p.pair_id, c.distribution, 'baseline', c.value_text, c.count
FROM query_table(pairs) AS b
JOIN query_table(summary) AS p
    ON p.baseline_key = b.baseline_key AND p.run_id = b.run_id AND p.baseline_kind = b.baseline_kind
JOIN query_table(categories) AS c ON c.baseline_key = b.baseline_key AND c.run_id = b.baseline_run_id
WHERE c.value_text IS NOT NULL;
