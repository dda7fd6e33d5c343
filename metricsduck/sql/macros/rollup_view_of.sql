-- The view-level rollup in long form: one row per run x stage x view x level x key x
-- measure. level 'view' covers every cohort of the view, 'target' one target (across its
-- symbols), 'symbol' one symbol (across its targets; symbol-level views only); every
-- level comes from one GROUPING SETS query. Measures: cohorts, targets, symbols; per
-- numeric or bool metric count, mean, std (sample), min, p10, median, p90, max across
-- cohorts; per baseline kind the drift rows in each tier (tier_OK, tier_WARN,
-- tier_ALERT) and alert_share (ALERT / rows with a tier); at the view level
-- worst_item (value = its place, 1 = worst; metric = item; detail says where and how
-- bad) and population_psi / population_ks_d per metric and group (detail = its tier).
-- The drift rows that the tier counts and the worst items both read are one
-- materialised CTE, so the drift of a query is planned and computed once.
-- rollup_view_of(drift_rows): the same, counting the drift rows of the relation named
-- `drift_rows` (rows of drift); refresh hands it the drift of the runs it writes.
-- Shard: run_id, stage.
CREATE OR REPLACE MACRO rollup_view_of(drift_rows) AS TABLE
WITH drift_rows AS MATERIALIZED (
    -- the drift rows both leveled_tiers and worst read, computed once
    SELECT
        run_id, stage, view, target, symbol, baseline_key, baseline_kind, item_kind, item,
        tier, tier_rank, psi, rel_delta
    FROM query_table(drift_rows)
),
leveled_cohorts AS (
    SELECT
        run_id, stage, view, target, symbol,
        CASE WHEN grouping(target) = 0 THEN 'target' WHEN grouping(symbol) = 0 THEN 'symbol'
             ELSE 'view' END AS level,
        count(DISTINCT baseline_key) AS cohorts,
        count(DISTINCT target) AS targets,
        count(DISTINCT symbol) AS symbols
    FROM cohort_runs
    GROUP BY GROUPING SETS ((run_id, stage, view), (run_id, stage, view, target),
                            (run_id, stage, view, symbol))
),
leveled_metrics AS (
    SELECT
        run_id, stage, view, target, symbol, metric,
        CASE WHEN grouping(target) = 0 THEN 'target' WHEN grouping(symbol) = 0 THEN 'symbol'
             ELSE 'view' END AS level,
        count(value) AS "count",
        avg(value ORDER BY baseline_key) AS mean,
        stddev_samp(value ORDER BY baseline_key) AS std,
        min(value) AS "min",
        quantile_cont(value, 0.1) AS p10,
        quantile_cont(value, 0.5) AS median,
        quantile_cont(value, 0.9) AS p90,
        max(value) AS "max"
    FROM facts
    WHERE kind IN ('number', 'bool')
    GROUP BY GROUPING SETS ((run_id, stage, view, metric), (run_id, stage, view, target, metric),
                            (run_id, stage, view, symbol, metric))
),
leveled_tiers AS (
    SELECT
        run_id, stage, view, target, symbol, baseline_kind,
        CASE WHEN grouping(target) = 0 THEN 'target' WHEN grouping(symbol) = 0 THEN 'symbol'
             ELSE 'view' END AS level,
        count(*) FILTER (WHERE tier = 'OK') AS tier_ok,
        count(*) FILTER (WHERE tier = 'WARN') AS tier_warn,
        count(*) FILTER (WHERE tier = 'ALERT') AS tier_alert,
        count(tier) AS tiered
    FROM drift_rows
    GROUP BY GROUPING SETS ((run_id, stage, view, baseline_kind),
                            (run_id, stage, view, target, baseline_kind),
                            (run_id, stage, view, symbol, baseline_kind))
),
worst AS (
    SELECT
        run_id, stage, view, item, baseline_kind,
        row_number() OVER (
            PARTITION BY run_id, stage, view
            ORDER BY tier_rank DESC, coalesce(psi, abs(rel_delta)) DESC NULLS LAST,
                     baseline_key, baseline_kind, item_kind, item
        ) AS place,
        tier || ' ' || item || ' (' || baseline_kind || ') at ' || target
            || coalesce('/' || symbol, '') AS detail
    FROM drift_rows
    WHERE tier_rank >= 1
),
run_times AS (
    SELECT run_id, run_started_at FROM runs
),
measures AS (
    SELECT run_id, stage, view, level, target, symbol, m.measure, NULL AS metric,
           NULL AS baseline_kind, m.value, NULL AS detail
    FROM leveled_cohorts,
        (VALUES ('cohorts'), ('targets'), ('symbols')) AS names(measure),
        LATERAL (SELECT names.measure AS measure,
                        CASE names.measure WHEN 'cohorts' THEN cohorts WHEN 'targets' THEN targets
                             ELSE symbols END AS value) AS m
    WHERE level <> 'symbol' OR symbol IS NOT NULL
    UNION ALL
    SELECT run_id, stage, view, level, target, symbol, u.measure, metric, NULL, u.value, NULL
    FROM leveled_metrics
    UNPIVOT (value FOR measure IN ("count", mean, std, "min", p10, median, p90, "max")) AS u
    WHERE level <> 'symbol' OR symbol IS NOT NULL
    UNION ALL
    SELECT run_id, stage, view, level, target, symbol, u.measure, NULL, baseline_kind, u.value, NULL
    FROM (
        SELECT
            run_id, stage, view, level, target, symbol, baseline_kind,
            CAST(tier_ok AS DOUBLE) AS tier_OK, CAST(tier_warn AS DOUBLE) AS tier_WARN,
            CAST(tier_alert AS DOUBLE) AS tier_ALERT,
            CASE WHEN tiered > 0 THEN tier_alert / tiered END AS alert_share
        FROM leveled_tiers
        WHERE level <> 'symbol' OR symbol IS NOT NULL
    ) UNPIVOT INCLUDE NULLS (value FOR measure IN (tier_OK, tier_WARN, tier_ALERT, alert_share)) AS u
    UNION ALL
    SELECT run_id, stage, view, 'view', NULL, NULL, 'worst_item', item, baseline_kind, place, detail
    FROM worst
    WHERE place <= 10
    UNION ALL
    SELECT run_id, stage, view, CASE WHEN target IS NULL THEN 'view' ELSE 'target' END, target,
           NULL, u.measure, metric, NULL, u.value, tier
    FROM (SELECT run_id, stage, view, target, metric, tier, psi AS population_psi,
                 ks_d AS population_ks_d
          FROM population_drift WHERE psi IS NOT NULL)
    UNPIVOT (value FOR measure IN (population_psi, population_ks_d)) AS u
)
SELECT
    ms.run_id, rt.run_started_at, ms.stage, ms.view, ms.level, ms.target, ms.symbol,
    ms.measure, CAST(ms.metric AS VARCHAR) AS metric,
    CAST(ms.baseline_kind AS VARCHAR) AS baseline_kind,
    CAST(ms.value AS DOUBLE) AS value, CAST(ms.detail AS VARCHAR) AS detail
FROM measures AS ms
JOIN run_times AS rt ON rt.run_id = ms.run_id;
