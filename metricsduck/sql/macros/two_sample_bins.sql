-- two_sample_bins(source): the PSI bins and the KS statistic of every comparison in the
-- relation named by `source` (columns pair_id, distribution, side 'current' or
-- 'baseline', value; NULL values are skipped). Each comparison's values are sorted once,
-- into a list, and the quantiles, the ECDFs and each side's count up to every edge are
-- read off that list. Edges are the distinct linear quantiles of the baseline at i/B,
-- i = 1..B-1 (B = drift.psi_bins), computed exactly as numpy's default np.quantile does
-- (its lerp included). Bins are right-closed and open at both ends: a value's bin is the
-- number of edges below it (an edge equal to a value sorts after it). KS compares the
-- right-continuous ECDFs after the last of each run of equal values. One row per
-- pair_id x distribution x bin, only where both sides have values; shares are count / n
-- (m), and contribution = (p_cur - p_base) * ln(p_cur / p_base) with both shares floored
-- at drift.psi_epsilon (not renormalised). Drift and population drift both use it.
-- wasserstein is the Wasserstein-1 distance between the two samples (the area between the
-- ECDFs: the sum over the walk of |F_cur - F_base| times the gap to the next value), divided
-- by the baseline's population standard deviation (NULL when that is 0):
-- scipy.stats.wasserstein_distance(cur, base) / numpy.std(base).
-- Shard: pair_id.
CREATE OR REPLACE MACRO two_sample_bins(source) AS TABLE
WITH walks AS (
    -- per comparison with finite values on both sides: all its values in one sorted list
    SELECT
        pair_id, distribution,
        -- equal values in a fixed order (the side breaks the tie): W1 sums its terms per side,
        -- so the side holding the last of a run of ties must not vary from query to query
        list({'value': value, 'current': side = 'current'} ORDER BY value, side) AS walk,
        count(*) FILTER (WHERE side = 'current') AS n,
        count(*) FILTER (WHERE side = 'baseline') AS m
    FROM query_table(source)
    WHERE value IS NOT NULL
    GROUP BY pair_id, distribution
    HAVING count(*) FILTER (WHERE side = 'current') > 0
       AND count(*) FILTER (WHERE side = 'baseline') > 0
),
sides AS (
    -- each side's values in order, and where each stands in the walk
    SELECT
        pair_id, distribution, n, m, walk,
        [x.value FOR x IN walk IF x.current] AS current_values,
        [x.value FOR x IN walk IF NOT x.current] AS baseline_values,
        list_filter(range(1, n + m + 1), lambda i: walk[i].current) AS current_at,
        list_filter(range(1, n + m + 1), lambda i: NOT walk[i].current) AS baseline_at
    FROM walks
),
ecdfs AS (
    -- the ECDFs, read off the walk: the k-th value of a side, at walk position i, has k
    -- values of its side and i - k of the other at or below it. KS compares them where a
    -- run of equal values ends (whichever side holds its last value), n*m*|F_cur - F_base|
    -- in integers, divided once; W1 adds |F_cur - F_base| times the gap to the next value
    -- at every position (inside a run of equal values the gap is 0).
    SELECT
        pair_id, distribution,
        CAST(greatest(
            list_max(list_transform(range(1, n + 1), lambda k:
                CASE WHEN current_at[k] = n + m OR walk[current_at[k] + 1].value <> walk[current_at[k]].value
                     THEN abs(k * m - (current_at[k] - k) * n) ELSE 0 END)),
            list_max(list_transform(range(1, m + 1), lambda k:
                CASE WHEN baseline_at[k] = n + m OR walk[baseline_at[k] + 1].value <> walk[baseline_at[k]].value
                     THEN abs((baseline_at[k] - k) * m - k * n) ELSE 0 END))
        ) AS DOUBLE) / (n * m) AS ks_d,
        (list_sum(list_transform(range(1, n + 1), lambda k:
            CASE WHEN current_at[k] < n + m
                 THEN abs(k / n - (current_at[k] - k) / m)
                      * (walk[current_at[k] + 1].value - walk[current_at[k]].value)
                 ELSE 0 END))
         + list_sum(list_transform(range(1, m + 1), lambda k:
            CASE WHEN baseline_at[k] < n + m
                 THEN abs((baseline_at[k] - k) / n - k / m)
                      * (walk[baseline_at[k] + 1].value - walk[baseline_at[k]].value)
                 ELSE 0 END)))
        / nullif(list_aggregate(baseline_values, 'stddev_pop'), 0) AS wasserstein
    FROM sides
),
quantiles AS (
    SELECT
        pair_id, distribution,
        h - floor(h) AS t,
        baseline_values[CAST(floor(h) AS BIGINT) + 1] AS a,
        baseline_values[least(CAST(floor(h) AS BIGINT) + 1, m - 1) + 1] AS b
    FROM (
        SELECT s.pair_id, s.distribution, s.m, s.baseline_values,
               (q.generate_series / cfg.psi_bins) * (s.m - 1) AS h
        FROM sides AS s, settings_wide AS cfg, generate_series(1, cfg.psi_bins - 1) AS q
    )
),
edges AS (
    SELECT
        pair_id, distribution, edge,
        row_number() OVER (
            PARTITION BY pair_id, distribution ORDER BY edge
        ) AS edge_index
    FROM (
        -- numpy's lerp: a + (b - a) * t, or b - (b - a) * (1 - t) when t >= 0.5
        SELECT DISTINCT
            pair_id, distribution,
            CASE WHEN t >= 0.5 THEN b - (b - a) * (1 - t) ELSE a + (b - a) * t END AS edge
        FROM quantiles
    )
),
at_edges AS (
    -- each side's count of values <= every edge (an edge equal to a value sorts after it)
    SELECT
        e.pair_id, e.distribution, e.edge, e.edge_index,
        len(list_filter(s.current_values, lambda v: v <= e.edge)) AS current_below,
        len(list_filter(s.baseline_values, lambda v: v <= e.edge)) AS baseline_below
    FROM edges AS e
    JOIN sides AS s ON s.pair_id = e.pair_id AND s.distribution = e.distribution
),
bins AS (
    SELECT
        pair_id, distribution,
        edge_index - 1 AS bin,
        lag(edge) OVER w AS lower_edge,
        edge AS upper_edge,
        current_below - coalesce(lag(current_below) OVER w, 0) AS current_count,
        baseline_below - coalesce(lag(baseline_below) OVER w, 0) AS baseline_count
    FROM at_edges
    WINDOW w AS (PARTITION BY pair_id, distribution ORDER BY edge_index)
    UNION ALL
    SELECT
        e.pair_id, e.distribution, max(e.edge_index), max(e.edge), NULL,
        any_value(s.n) - max(e.current_below), any_value(s.m) - max(e.baseline_below)
    FROM at_edges AS e
    JOIN sides AS s ON s.pair_id = e.pair_id AND s.distribution = e.distribution
    GROUP BY e.pair_id, e.distribution
),
shares AS (
    SELECT
        bins.pair_id, bins.distribution, bins.bin,
        bins.lower_edge, bins.upper_edge, s.n, s.m, e.ks_d, e.wasserstein,
        bins.baseline_count, bins.current_count,
        bins.baseline_count / s.m AS baseline_share,
        bins.current_count / s.n AS current_share
    FROM bins
    JOIN sides AS s
        ON s.pair_id = bins.pair_id AND s.distribution = bins.distribution
    JOIN ecdfs AS e
        ON e.pair_id = bins.pair_id AND e.distribution = bins.distribution
)
SELECT
    sh.*,
    (greatest(sh.current_share, cfg.psi_epsilon) - greatest(sh.baseline_share, cfg.psi_epsilon))
    * ln(greatest(sh.current_share, cfg.psi_epsilon) / greatest(sh.baseline_share, cfg.psi_epsilon))
        AS contribution
FROM shares AS sh, settings_wide AS cfg;
