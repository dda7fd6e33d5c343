-- drift_fdr_of(tested): the rows of `tested` (rows of drift_tested_of) with the false-
-- discovery step applied. A distribution row's q_value is its Benjamini-Hochberg adjusted p
-- (KS's, or the chi-square's for a categorical one) over the family of the distribution
-- rows with a p of its run x stage x baseline kind (scipy.stats.false_discovery_control):
-- q_(i) = min over j >= i of p_(j) * N / j, at most 1. With drift.fdr_q above 0, a row whose
-- q exceeds it cannot be worse than OK (status INCONCLUSIVE). Metric rows pass unchanged.
-- Shard: run_id, stage. A family spans the baseline keys of its run's stage, so this step
-- runs over whole families: whole runs, or a run's stage (docs/design.md §13).
CREATE OR REPLACE MACRO drift_fdr_of(tested) AS TABLE
WITH tested AS (
    SELECT
        *,
        CASE WHEN item_kind = 'distribution' THEN
            CASE WHEN kind = 'categorical' THEN chi2_p ELSE ks_p END
        END AS p
    FROM query_table(tested)
),
ranked AS (
    SELECT
        *,
        count(p) OVER family AS family_size,
        row_number() OVER (family ORDER BY p NULLS LAST, baseline_key, item) AS p_rank
    FROM tested
    WINDOW family AS (PARTITION BY run_id, stage, baseline_kind, item_kind)
),
adjusted AS (
    SELECT
        *,
        CASE WHEN p IS NOT NULL THEN least(1.0, min(p * family_size / p_rank) OVER (
            PARTITION BY run_id, stage, baseline_kind, item_kind ORDER BY p_rank DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
        END AS adjusted_q
    FROM ranked
)
SELECT
    a.* EXCLUDE (p, family_size, p_rank, adjusted_q, fdr_gated) REPLACE (
        a.adjusted_q AS q_value,
        CASE WHEN a.fdr_gated THEN 'OK' ELSE a.tier END AS tier,
        CASE WHEN a.fdr_gated THEN 0 ELSE a.tier_rank END AS tier_rank,
        CASE WHEN a.fdr_gated THEN 'INCONCLUSIVE' ELSE a.status END AS status
    )
FROM (
    SELECT adjusted.*, cfg.fdr_q > 0 AND adjusted.adjusted_q > cfg.fdr_q AND adjusted.tier_rank > 0 AS fdr_gated
    FROM adjusted, settings_wide AS cfg
) AS a;
