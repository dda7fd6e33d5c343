-- category_counts(source): per pair_id x distribution x category of the relation named by
-- `source` (columns pair_id, distribution, side 'current' or 'baseline', value_text, count:
-- how many values of that category a run on that side holds; rows without text are
-- skipped; category_values_of makes them), only where both sides hold some: each side's
-- count and share (count / n, count / m), n, m, and how many categories the pair holds.
-- A category one side lacks has count 0 there.
-- Shard: pair_id.
CREATE OR REPLACE MACRO category_counts(source) AS TABLE
WITH counts AS (
    SELECT
        pair_id, distribution, value_text AS category,
        CAST(coalesce(sum(count) FILTER (WHERE side = 'current'), 0) AS BIGINT) AS current_count,
        CAST(coalesce(sum(count) FILTER (WHERE side = 'baseline'), 0) AS BIGINT) AS baseline_count
    FROM query_table(source)
    WHERE value_text IS NOT NULL
    GROUP BY pair_id, distribution, value_text
),
sized AS (
    SELECT
        *,
        CAST(sum(current_count) OVER t AS BIGINT) AS n,
        CAST(sum(baseline_count) OVER t AS BIGINT) AS m,
        count(*) OVER t AS categories
    FROM counts
    WINDOW t AS (PARTITION BY pair_id, distribution)
)
SELECT *, current_count / n AS current_share, baseline_count / m AS baseline_share
FROM sized
WHERE n > 0 AND m > 0;
