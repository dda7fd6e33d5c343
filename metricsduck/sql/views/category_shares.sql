-- Category shares behind every categorical drift (docs/design.md §5.7): per compared
-- cohort-run x baseline kind x distribution of text values, one row per category either
-- side holds, with each side's count and share (count / n, m); a category one side lacks
-- has count 0 there. Only pairs where both sides have text values.
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW category_shares AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_categories AS MATERIALIZED (
        SELECT baseline_key, run_id, distribution, value_text, count(*) AS count
        FROM samples WHERE value_text IS NOT NULL
        GROUP BY baseline_key, run_id, distribution, value_text),
    tree_values AS MATERIALIZED (FROM category_values_of('tree_pairs', 'tree_summary', 'tree_categories'))
SELECT
    p.baseline_key, p.run_id, p.baseline_kind, c.distribution, c.category, c.baseline_count,
    c.current_count, c.baseline_share, c.current_share
FROM category_counts('tree_values') AS c
JOIN tree_summary AS p ON p.pair_id = c.pair_id;
