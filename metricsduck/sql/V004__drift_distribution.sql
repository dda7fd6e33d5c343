-- V004: distribution drift (PSI with its per-bin detail, two-sample KS) against every
-- baseline kind (DESIGN §5). Needs V002 and V003. Thresholds come from settings.

-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value is NULL on the placeholder row of a distribution
-- without finite values; statistics skip those rows.
CREATE OR REPLACE VIEW distribution_values AS
SELECT p.pair_id, p.baseline_key, p.run_id, p.baseline_kind, s.distribution, 'current' AS side, s.value
FROM baseline_summary AS p
JOIN samples AS s ON s.baseline_key = p.baseline_key AND s.run_id = p.run_id
UNION ALL
SELECT p.pair_id, b.baseline_key, b.run_id, b.baseline_kind, s.distribution, 'baseline', s.value
FROM baselines AS b
JOIN baseline_summary AS p
    ON p.baseline_key = b.baseline_key AND p.run_id = b.run_id AND p.baseline_kind = b.baseline_kind
JOIN samples AS s ON s.baseline_key = b.baseline_key AND s.run_id = b.baseline_run_id;

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

-- PSI bins behind every PSI: bin index, lower_edge (NULL for the first bin) and
-- upper_edge (NULL for the last), each side's count and share (count / n, m), and the
-- contribution (p_cur - p_base) * ln(p_cur / p_base) with both shares floored at
-- drift.psi_epsilon (not renormalised). Only pairs where both sides have values.
CREATE OR REPLACE VIEW psi_bins AS
SELECT
    p.baseline_key, p.run_id, p.baseline_kind, b.distribution, b.bin, b.lower_edge,
    b.upper_edge, b.baseline_count, b.current_count, b.baseline_share, b.current_share,
    b.contribution
FROM two_sample_bins('distribution_values') AS b
JOIN baseline_summary AS p ON p.pair_id = b.pair_id;

-- two_sample_tests(source): per pair_id x distribution of two_sample_bins(source): n and
-- m, psi = the sum of the bins' contributions, psi_critical = chi2(0.95, bins - 1) *
-- (1/n + 1/m) with the Wilson-Hilferty chi2 quantile, ks_d = sup |F_cur - F_base| over all
-- values with right-continuous ECDFs (scipy's ks_2samp statistic), ks_p = Q(lambda) with
-- lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) * D, ne = n*m/(n+m), Q = 2 sum_{j=1..100}
-- (-1)^(j-1) exp(-2 j^2 lambda^2) clamped to [0, 1] and 1 when lambda < 0.2; tiers from
-- drift.psi_warn / psi_threshold and drift.ks_warn / ks_threshold with ks_alpha, and tier
-- the worse of the two.
CREATE OR REPLACE MACRO two_sample_tests(source) AS TABLE
WITH psi AS (
    SELECT
        pair_id, distribution,
        sum(contribution ORDER BY bin) AS psi,  -- fixed order: same bits every time
        count(*) AS bins,
        any_value(n) AS n,
        any_value(m) AS m,
        any_value(ks_d) AS ks_d
    FROM two_sample_bins(source)
    GROUP BY pair_id, distribution
),
ks_lambda AS (
    SELECT
        *,
        (sqrt(n * m / (n + m)) + 0.12 + 0.11 / sqrt(n * m / (n + m))) * ks_d AS lambda
    FROM psi
),
measured AS (
    SELECT
        k.pair_id, k.distribution, k.n, k.m, k.psi, k.bins, k.ks_d,
        CASE
            WHEN any_value(k.lambda) < 0.2 THEN 1.0
            ELSE least(greatest(
                2 * sum(CASE WHEN j.generate_series % 2 = 1 THEN 1 ELSE -1 END
                        * exp(-2 * j.generate_series * j.generate_series * k.lambda * k.lambda)
                        ORDER BY j.generate_series),
                0.0), 1.0)
        END AS ks_p
    FROM ks_lambda AS k, generate_series(1, 100) AS j
    GROUP BY k.pair_id, k.distribution, k.n, k.m, k.psi, k.bins, k.ks_d
),
tiered AS (
    SELECT
        me.*,
        (me.bins - 1)
            * pow(1 - 2 / (9 * (me.bins - 1)) + 1.6448536269514722 * sqrt(2 / (9 * (me.bins - 1))), 3)
            * (1 / me.n + 1 / me.m) AS psi_critical,
        CASE
            WHEN me.psi >= cfg.psi_threshold THEN 'ALERT'
            WHEN me.psi >= cfg.psi_warn THEN 'WARN'
            ELSE 'OK'
        END AS psi_tier,
        CASE
            WHEN me.ks_d >= cfg.ks_threshold AND me.ks_p < cfg.ks_alpha THEN 'ALERT'
            WHEN me.ks_d >= cfg.ks_warn AND me.ks_p < cfg.ks_alpha THEN 'WARN'
            ELSE 'OK'
        END AS ks_tier
    FROM measured AS me, settings_wide AS cfg
)
SELECT
    pair_id, distribution, n, m, psi, bins AS psi_bins, psi_critical,
    psi > psi_critical AS psi_significant, ks_d, ks_p, psi_tier, ks_tier,
    CASE greatest(tier_rank(psi_tier), tier_rank(ks_tier))
        WHEN 0 THEN 'OK' WHEN 1 THEN 'WARN' WHEN 2 THEN 'ALERT'
    END AS tier,
    greatest(tier_rank(psi_tier), tier_rank(ks_tier)) AS tier_rank
FROM tiered;

-- One row per cohort-run x baseline kind x distribution, with the statistics of
-- two_sample_tests over the cohort-run's values (n) and its baseline's (m, pooled for
-- rolling). status: COMPARED, NO_DATA (a side has no finite value: psi, ks and tier are
-- NULL) or NO_BASELINE (no baseline of that kind yet; tier NULL).
CREATE OR REPLACE VIEW drift_distribution AS
WITH sample_counts AS (
    SELECT baseline_key, run_id, distribution, count(value) AS finite
    FROM samples
    GROUP BY baseline_key, run_id, distribution
),
sized AS (
    -- n and m from per-run counts, so pairs without values on a side still get a row
    SELECT
        pair_id, baseline_key, run_id, baseline_kind, distribution,
        CAST(sum(n) AS BIGINT) AS n, CAST(sum(m) AS BIGINT) AS m
    FROM (
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution,
               c.finite AS n, 0 AS m
        FROM baseline_summary AS ps
        JOIN sample_counts AS c ON c.baseline_key = ps.baseline_key AND c.run_id = ps.run_id
        UNION ALL
        SELECT ps.pair_id, ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution, 0, c.finite
        FROM baselines AS b
        JOIN baseline_summary AS ps
            ON ps.baseline_key = b.baseline_key AND ps.run_id = b.run_id
            AND ps.baseline_kind = b.baseline_kind
        JOIN sample_counts AS c ON c.baseline_key = b.baseline_key AND c.run_id = b.baseline_run_id
    )
    GROUP BY pair_id, baseline_key, run_id, baseline_kind, distribution
),
compared AS (
    SELECT
        sz.baseline_key, sz.run_id, sz.baseline_kind, sz.distribution, sz.n, sz.m,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.sanity_status,
        ps.fingerprint_diff,
        t.psi, t.psi_bins, t.psi_critical, t.psi_significant, t.ks_d, t.ks_p,
        t.psi_tier, t.ks_tier, t.tier, t.tier_rank,
        CASE WHEN sz.n > 0 AND sz.m > 0 THEN 'COMPARED' ELSE 'NO_DATA' END AS status
    FROM sized AS sz
    JOIN baseline_summary AS ps ON ps.pair_id = sz.pair_id
    LEFT JOIN two_sample_tests('distribution_values') AS t
        ON t.pair_id = sz.pair_id AND t.distribution = sz.distribution
    UNION ALL
    -- Cohort-runs without a baseline of a kind: each of their distributions, NO_BASELINE.
    SELECT
        s.baseline_key, s.run_id, mb.baseline_kind, s.distribution, count(s.value), 0,
        NULL, 0, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        'NO_BASELINE'
    FROM samples AS s
    JOIN missing_baselines AS mb ON mb.baseline_key = s.baseline_key AND mb.run_id = s.run_id
    GROUP BY s.baseline_key, s.run_id, mb.baseline_kind, s.distribution
)
SELECT
    cr.stage, cr.view, cr.target, cr.symbol, c.baseline_key, c.run_id, cr.run_started_at,
    cr.cohort_id, c.baseline_kind, c.baseline_run_id, c.baseline_runs,
    c.distribution, c.n, c.m, c.psi, c.psi_bins, c.psi_critical, c.psi_significant,
    c.ks_d, c.ks_p, c.psi_tier, c.ks_tier, c.tier, c.tier_rank, c.status,
    cr.view AS current_view, c.baseline_view, c.sanity_status, c.fingerprint_diff
FROM compared AS c
JOIN cohort_runs AS cr ON cr.baseline_key = c.baseline_key AND cr.run_id = c.run_id;
