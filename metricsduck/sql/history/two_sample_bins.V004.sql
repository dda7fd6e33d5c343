-- two_sample_bins as released in V004__drift_distribution.sql, superseded since; kept as a test oracle, never loaded.
-- two_sample_bins(source): the PSI bins and the KS statistic of every comparison in a
-- relation named by `source` with columns pair_id, distribution, side ('current' or
-- 'baseline') and value (NULL values are skipped), from one sorted walk over the values
-- and the edges. Edges are the distinct linear quantiles of the baseline at i/B,
-- i = 1..B-1 (B = drift.psi_bins), computed exactly as numpy's default np.quantile does.
-- Bins are right-closed and open at both ends: a value's bin is the number of edges
-- below it (an edge equal to a value sorts after it). The same walk counts each side's
-- values up to every distinct value: the ECDFs for KS. One row per pair_id x
-- distribution x bin, only where both sides have values; shares are count / n (m), and
-- contribution = (p_cur - p_base) * ln(p_cur / p_base) with both shares floored at
-- drift.psi_epsilon (not renormalised). Drift and population drift both use it.
CREATE OR REPLACE MACRO two_sample_bins(source) AS TABLE
WITH finite AS (
    SELECT pair_id, distribution, side, value FROM query_table(source) WHERE value IS NOT NULL
),
sizes AS (
    SELECT
        pair_id, distribution,
        count(*) FILTER (WHERE side = 'current') AS n,
        count(*) FILTER (WHERE side = 'baseline') AS m,
        any_value(cfg.psi_bins) AS psi_bins
    FROM finite, settings_wide AS cfg
    GROUP BY pair_id, distribution
    HAVING count(*) FILTER (WHERE side = 'current') > 0
       AND count(*) FILTER (WHERE side = 'baseline') > 0
),
base_sorted AS (
    SELECT
        pair_id, distribution, value,
        row_number() OVER (
            PARTITION BY pair_id, distribution ORDER BY value
        ) - 1 AS idx
    FROM finite
    WHERE side = 'baseline'
),
positions AS (
    SELECT
        s.pair_id, s.distribution, s.m,
        (q.generate_series / s.psi_bins) * (s.m - 1) AS h
    FROM sizes AS s,
        generate_series(1, s.psi_bins - 1) AS q
),
quantiles AS (
    SELECT
        p.pair_id, p.distribution,
        p.h - floor(p.h) AS t, lo.value AS a, hi.value AS b
    FROM positions AS p
    JOIN base_sorted AS lo
        ON lo.pair_id = p.pair_id AND lo.distribution = p.distribution
        AND lo.idx = CAST(floor(p.h) AS BIGINT)
    JOIN base_sorted AS hi
        ON hi.pair_id = p.pair_id AND hi.distribution = p.distribution
        AND hi.idx = least(CAST(floor(p.h) AS BIGINT) + 1, p.m - 1)
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
bins AS (
    SELECT
        pair_id, distribution,
        edge_index - 1 AS bin,
        lag(edge) OVER (
            PARTITION BY pair_id, distribution ORDER BY edge_index
        ) AS lower_edge,
        edge AS upper_edge
    FROM edges
    UNION ALL
    SELECT pair_id, distribution, max(edge_index), max(edge), NULL
    FROM edges
    GROUP BY pair_id, distribution
),
walk AS (
    SELECT
        *,
        sum(is_edge) OVER w AS bin,
        sum(CASE WHEN side = 'current' THEN 1 ELSE 0 END) OVER w AS current_below,
        sum(CASE WHEN side = 'baseline' THEN 1 ELSE 0 END) OVER w AS baseline_below,
        lead(x) OVER w AS next_x,
        lead(is_edge) OVER w AS next_is_edge
    FROM (
        SELECT pair_id, distribution, side, value AS x, 0 AS is_edge
        FROM finite
        UNION ALL
        SELECT pair_id, distribution, NULL, edge, 1
        FROM edges
    )
    WINDOW w AS (
        PARTITION BY pair_id, distribution
        ORDER BY x, is_edge ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    )
),
ks AS (
    -- ECDFs compared after the last of each run of equal values (right-continuous), as
    -- n*m*|F_cur - F_base| in integers divided once: D is then the correctly rounded
    -- fraction, never 1 - 0.9 = 0.09999999999999998 at a threshold
    SELECT
        w.pair_id, w.distribution,
        CAST(max(abs(w.current_below * s.m - w.baseline_below * s.n)) AS DOUBLE)
            / any_value(s.n * s.m) AS ks_d
    FROM walk AS w
    JOIN sizes AS s
        ON s.pair_id = w.pair_id AND s.distribution = w.distribution
    WHERE w.is_edge = 0 AND (w.next_x IS DISTINCT FROM w.x OR w.next_is_edge = 1)
    GROUP BY w.pair_id, w.distribution
),
counts AS (
    SELECT
        pair_id, distribution, bin,
        count(*) FILTER (WHERE side = 'current') AS current_count,
        count(*) FILTER (WHERE side = 'baseline') AS baseline_count
    FROM walk
    WHERE is_edge = 0
    GROUP BY pair_id, distribution, bin
),
shares AS (
    SELECT
        bins.pair_id, bins.distribution, bins.bin,
        bins.lower_edge, bins.upper_edge, s.n, s.m, ks.ks_d,
        coalesce(c.baseline_count, 0) AS baseline_count,
        coalesce(c.current_count, 0) AS current_count,
        coalesce(c.baseline_count, 0) / s.m AS baseline_share,
        coalesce(c.current_count, 0) / s.n AS current_share
    FROM bins
    JOIN sizes AS s
        ON s.pair_id = bins.pair_id AND s.distribution = bins.distribution
    JOIN ks
        ON ks.pair_id = bins.pair_id AND ks.distribution = bins.distribution
    LEFT JOIN counts AS c
        ON c.pair_id = bins.pair_id AND c.distribution = bins.distribution AND c.bin = bins.bin
)
SELECT
    sh.*,
    (greatest(sh.current_share, cfg.psi_epsilon) - greatest(sh.baseline_share, cfg.psi_epsilon))
    * ln(greatest(sh.current_share, cfg.psi_epsilon) / greatest(sh.baseline_share, cfg.psi_epsilon))
        AS contribution
FROM shares AS sh, settings_wide AS cfg;
