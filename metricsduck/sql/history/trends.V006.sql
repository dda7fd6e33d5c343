-- trends as released in V006__trends.sql, superseded since; kept as a test oracle, never loaded.
-- One row per baseline key x metric x cohort-run, once trend.min_runs cohort-runs with a
-- finite value exist up to and including it: the trend over the last trend.window of
-- them. x is the run's position in that window (0, 1, 2, ...): slope and intercept are
-- the OLS fit of value on x, r2 its coefficient of determination, slope_per_day the OLS
-- slope against run_started_at in days, theil_sen_slope the median of all pairwise
-- slopes. direction is 'flat' unless r2 >= trend.min_r2 and |slope| * (n_runs - 1) >=
-- trend.min_rel_change * |mean|; then the sign of the OLS slope decides.
CREATE OR REPLACE VIEW trends AS
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
    CASE
        WHEN f.r2 >= cfg.trend_min_r2
         AND abs(f.slope) * (f.n_runs - 1) >= cfg.trend_min_rel_change * abs(f.mean)
         AND f.slope > 0 THEN 'increasing'
        WHEN f.r2 >= cfg.trend_min_r2
         AND abs(f.slope) * (f.n_runs - 1) >= cfg.trend_min_rel_change * abs(f.mean)
         AND f.slope < 0 THEN 'decreasing'
        ELSE 'flat'
    END AS direction
FROM fits AS f
JOIN series AS s ON s.baseline_key = f.baseline_key AND s.metric = f.metric AND s.run_id = f.run_id
LEFT JOIN pairwise AS p
    ON p.baseline_key = f.baseline_key AND p.metric = f.metric AND p.run_id = f.run_id
CROSS JOIN settings_wide AS cfg;
