-- V007: hierarchical rollups and population drift (DESIGN §7). Needs V001-V005.

-- One row per run x stage x view x population group with the run just before it in that
-- stage x view (NULL for the first). A group is the cohorts compared as one population:
-- per target across symbols where the view has a symbol level, else across all targets
-- of the view (target NULL).
CREATE OR REPLACE VIEW population_pairs AS
WITH view_runs AS (
    SELECT stage, view, run_id, min(run_started_at) AS run_started_at
    FROM cohort_runs
    GROUP BY stage, view, run_id
),
ordered AS (
    SELECT
        *,
        lag(run_id) OVER (PARTITION BY stage, view ORDER BY run_started_at, run_id) AS baseline_run_id
    FROM view_runs
),
groups AS (
    SELECT DISTINCT stage, view, run_id, CASE WHEN symbol IS NOT NULL THEN target END AS target
    FROM cohort_runs
)
SELECT
    row_number() OVER (ORDER BY g.stage, g.view, g.run_id, g.target) AS pair_id,
    g.stage, g.view, g.target, g.run_id, o.run_started_at, o.baseline_run_id
FROM groups AS g
JOIN ordered AS o ON o.stage = g.stage AND o.view = g.view AND o.run_id = g.run_id;

-- The values compared by population drift: for each group, every numeric metric's
-- values across the group's cohorts in its run ('current') and in the previous run of
-- the same stage x view ('baseline'); distribution is the metric name.
CREATE OR REPLACE VIEW population_values AS
WITH numbers AS (
    SELECT
        stage, view, run_id, CASE WHEN symbol IS NOT NULL THEN target END AS target,
        metric, value
    FROM facts
    WHERE kind = 'number'
)
SELECT p.pair_id, f.metric AS distribution, 'current' AS side, f.value
FROM population_pairs AS p
JOIN numbers AS f
    ON f.stage = p.stage AND f.view = p.view AND f.run_id = p.run_id
    AND f.target IS NOT DISTINCT FROM p.target
UNION ALL
SELECT p.pair_id, f.metric, 'baseline', f.value
FROM population_pairs AS p
JOIN numbers AS f
    ON f.stage = p.stage AND f.view = p.view AND f.run_id = p.baseline_run_id
    AND f.target IS NOT DISTINCT FROM p.target;

-- One row per run x stage x view x group x metric: PSI and KS (the definitions of
-- drift_distribution, via two_sample_tests) of the metric's values across symbols
-- (per target) or across targets, against the previous run of the same stage x view.
-- status: COMPARED, NO_DATA (a side has no finite value) or NO_BASELINE (first run).
CREATE OR REPLACE VIEW population_drift AS
WITH sized AS (
    SELECT
        pair_id, distribution,
        count(value) FILTER (WHERE side = 'current') AS n,
        count(value) FILTER (WHERE side = 'baseline') AS m
    FROM population_values
    GROUP BY pair_id, distribution
)
SELECT
    p.run_id, p.run_started_at, p.stage, p.view, p.target, p.baseline_run_id,
    sz.distribution AS metric, sz.n, sz.m,
    t.psi, t.psi_bins, t.psi_critical, t.psi_significant, t.ks_d, t.ks_p,
    t.psi_tier, t.ks_tier, t.tier, t.tier_rank,
    CASE
        WHEN p.baseline_run_id IS NULL THEN 'NO_BASELINE'
        WHEN sz.n > 0 AND sz.m > 0 THEN 'COMPARED'
        ELSE 'NO_DATA'
    END AS status
FROM sized AS sz
JOIN population_pairs AS p ON p.pair_id = sz.pair_id
LEFT JOIN two_sample_tests('population_values') AS t
    ON t.pair_id = sz.pair_id AND t.distribution = sz.distribution;

-- The view-level rollup in long form: one row per run x stage x view x level x key x
-- measure. level 'view' covers every cohort of the view, 'target' one target (across its
-- symbols), 'symbol' one symbol (across its targets; symbol-level views only); every
-- level comes from one GROUPING SETS query. Measures: cohorts, targets, symbols; per
-- numeric or bool metric count, mean, std (sample), min, p10, median, p90, max across
-- cohorts; per baseline kind the drift rows in each tier (tier_OK, tier_WARN,
-- tier_ALERT) and alert_share (ALERT / rows with a tier); at the view level
-- worst_item (value = its place, 1 = worst; metric = item; detail says where and how
-- bad) and population_psi / population_ks_d per metric and group (detail = its tier).
CREATE OR REPLACE VIEW rollup_view AS
WITH leveled_cohorts AS (
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
    FROM drift
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
    FROM drift
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
          FROM population_drift WHERE status = 'COMPARED')
    UNPIVOT (value FOR measure IN (population_psi, population_ks_d)) AS u
)
SELECT
    ms.run_id, rt.run_started_at, ms.stage, ms.view, ms.level, ms.target, ms.symbol,
    ms.measure, CAST(ms.metric AS VARCHAR) AS metric,
    CAST(ms.baseline_kind AS VARCHAR) AS baseline_kind,
    CAST(ms.value AS DOUBLE) AS value, CAST(ms.detail AS VARCHAR) AS detail
FROM measures AS ms
JOIN run_times AS rt ON rt.run_id = ms.run_id;

-- Where each run x stage x view lives in the tree: view_dir is the <VIEW> folder of the
-- run's REPRODUCIBILITY tree (the rollup files go there), with its cohort count.
CREATE OR REPLACE VIEW view_dirs AS
SELECT
    run_id, stage, view,
    count(*) AS cohorts,
    min(source_file[1:strpos(source_file, '/REPRODUCIBILITY/' || stage || '/' || view || '/')
        + length('/REPRODUCIBILITY/' || stage || '/' || view) - 1]) AS view_dir
FROM cohort_runs
GROUP BY run_id, stage, view;

-- The stage-level container: one row per run x stage x view with where that view's
-- rollup lives (view_dir), its cohort count, its drift rows per tier over every baseline
-- kind and its worst tier. It only counts within each view and never combines drift
-- statistics across views.
CREATE OR REPLACE VIEW rollup_stage AS
WITH tiers AS (
    SELECT
        run_id, stage, view,
        count(*) FILTER (WHERE tier = 'OK') AS tier_ok,
        count(*) FILTER (WHERE tier = 'WARN') AS tier_warn,
        count(*) FILTER (WHERE tier = 'ALERT') AS tier_alert,
        max(tier_rank) AS worst_rank
    FROM drift
    GROUP BY run_id, stage, view
)
SELECT
    c.run_id, r.run_started_at, c.stage, c.view, c.view_dir, c.cohorts,
    coalesce(t.tier_ok, 0) AS tier_ok, coalesce(t.tier_warn, 0) AS tier_warn,
    coalesce(t.tier_alert, 0) AS tier_alert,
    CASE t.worst_rank WHEN 0 THEN 'OK' WHEN 1 THEN 'WARN' WHEN 2 THEN 'ALERT' END AS worst_tier
FROM view_dirs AS c
JOIN runs AS r ON r.run_id = c.run_id
LEFT JOIN tiers AS t ON t.run_id = c.run_id AND t.stage = c.stage AND t.view = c.view;
