-- The rows of `trends` for the cohort-runs listed in the relation named `scope` (columns
-- baseline_key, run_id); each trend still spans the last trend.window cohort-runs of its
-- series, whatever `scope` holds.
-- r2 and the relative change are compared with their thresholds with a tolerance of four
-- ulps (4 * 2^-52, relatively), as KS D is: a series whose r2 is 1/2 exactly must not be flat
-- or increasing depending on how its values round.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO trends_of(scope) AS TABLE
WITH series AS (
    SELECT
        f.stage, f.view, f.target, f.symbol, f.baseline_key, f.metric, f.run_id,
        f.run_started_at, f.value,
        row_number() OVER (PARTITION BY f.baseline_key, f.metric ORDER BY cr.ordinal) AS position
    FROM facts AS f
    JOIN cohort_runs AS cr ON cr.baseline_key = f.baseline_key AND cr.run_id = f.run_id
    WHERE f.kind = 'number' AND f.value IS NOT NULL
),
windowed AS (
    -- each cohort-run with the points of its window; x counts from the window's start
    SELECT
        cur.baseline_key, cur.metric, cur.run_id, cur.position,
        pt.position - greatest(cur.position - cfg.trend_window + 1, 1) AS x,
        epoch(pt.run_started_at) / 86400.0 AS day,
        pt.value AS y
    FROM series AS cur
    CROSS JOIN settings_wide AS cfg
    JOIN series AS pt
        ON pt.baseline_key = cur.baseline_key AND pt.metric = cur.metric
        AND pt.position BETWEEN cur.position - cfg.trend_window + 1 AND cur.position
    WHERE cur.position >= cfg.trend_min_runs
      AND (cur.baseline_key, cur.run_id) IN (SELECT baseline_key, run_id FROM query_table(scope))
),
fits AS (
    -- ORDER BY fixes the summation order, so the same tree gives the same bits
    SELECT
        baseline_key, metric, run_id,
        count(*) AS n_runs,
        regr_slope(y, x ORDER BY x) AS slope,
        regr_intercept(y, x ORDER BY x) AS intercept,
        regr_r2(y, x ORDER BY x) AS r2,
        regr_slope(y, day ORDER BY x) AS slope_per_day,
        arg_min(y, x) AS first_value,
        arg_max(y, x) AS last_value,
        avg(y ORDER BY x) AS mean
    FROM windowed
    GROUP BY baseline_key, metric, run_id
),
pairwise AS (
    SELECT
        a.baseline_key, a.metric, a.run_id,
        median((b.y - a.y) / (b.x - a.x)) AS theil_sen_slope
    FROM windowed AS a
    JOIN windowed AS b
        ON b.baseline_key = a.baseline_key AND b.metric = a.metric AND b.run_id = a.run_id
        AND b.x > a.x
    GROUP BY a.baseline_key, a.metric, a.run_id
)
SELECT
    s.stage, s.view, s.target, s.symbol, f.baseline_key, f.metric, f.run_id, s.run_started_at,
    f.n_runs, f.slope, f.slope_per_day, f.intercept, f.r2, p.theil_sen_slope,
    f.first_value, f.last_value, f.mean,
    f.direction,
    coalesce(sm.good_direction, 'both') AS good_direction,
    CASE
        WHEN sm.good_direction = 'higher_is_better' AND f.direction = 'increasing' THEN 'improving'
        WHEN sm.good_direction = 'higher_is_better' AND f.direction = 'decreasing' THEN 'degrading'
        WHEN sm.good_direction = 'lower_is_better' AND f.direction = 'decreasing' THEN 'improving'
        WHEN sm.good_direction = 'lower_is_better' AND f.direction = 'increasing' THEN 'degrading'
    END AS assessment
FROM (
    SELECT
        fits.*,
        CASE
            WHEN fits.r2 >= cfg.trend_min_r2 * (1 - 8.881784197001252e-16)
             AND abs(fits.slope) * (fits.n_runs - 1)
                 >= cfg.trend_min_rel_change * abs(fits.mean) * (1 - 8.881784197001252e-16)
            THEN CASE WHEN fits.slope > 0 THEN 'increasing' WHEN fits.slope < 0 THEN 'decreasing' ELSE 'flat' END
            ELSE 'flat'
        END AS direction
    FROM fits, settings_wide AS cfg
) AS f
JOIN series AS s ON s.baseline_key = f.baseline_key AND s.metric = f.metric AND s.run_id = f.run_id
LEFT JOIN pairwise AS p
    ON p.baseline_key = f.baseline_key AND p.metric = f.metric AND p.run_id = f.run_id
LEFT JOIN settings_metrics AS sm ON sm.metric = f.metric;
