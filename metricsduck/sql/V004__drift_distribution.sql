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

-- Internal: the PSI bins and the KS statistic of every compared distribution, from one
-- sorted walk over its values and edges. Edges are the distinct linear quantiles of the
-- baseline at i/B, i = 1..B-1 (B = drift.psi_bins), computed exactly as numpy's default
-- np.quantile does. Bins are right-closed and open at both ends: a value's bin is the
-- number of edges below it (an edge equal to a value sorts after it). The same walk
-- counts each side's values up to every distinct value, which gives the ECDFs for KS.
-- One row per cohort-run x baseline kind x distribution x bin; only where both sides
-- have finite values.
CREATE OR REPLACE VIEW distribution_bins AS
WITH finite AS (
    SELECT pair_id, distribution, side, value FROM distribution_values WHERE value IS NOT NULL
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
    p.baseline_key, p.run_id, p.baseline_kind, sh.distribution, sh.n, sh.m, sh.ks_d,
    sh.bin, sh.lower_edge, sh.upper_edge, sh.baseline_count, sh.current_count,
    sh.baseline_share, sh.current_share,
    (greatest(sh.current_share, cfg.psi_epsilon) - greatest(sh.baseline_share, cfg.psi_epsilon))
    * ln(greatest(sh.current_share, cfg.psi_epsilon) / greatest(sh.baseline_share, cfg.psi_epsilon))
        AS contribution
FROM shares AS sh
JOIN baseline_summary AS p ON p.pair_id = sh.pair_id
CROSS JOIN settings_wide AS cfg;

-- PSI bins behind every PSI: bin index, lower_edge (NULL for the first bin) and
-- upper_edge (NULL for the last), each side's count and share (count / n, m), and the
-- contribution (p_cur - p_base) * ln(p_cur / p_base) with both shares floored at
-- drift.psi_epsilon (not renormalised). Only pairs where both sides have values.
CREATE OR REPLACE VIEW psi_bins AS
SELECT
    baseline_key, run_id, baseline_kind, distribution, bin, lower_edge, upper_edge,
    baseline_count, current_count, baseline_share, current_share, contribution
FROM distribution_bins;

-- One row per cohort-run x baseline kind x distribution: n current and m baseline finite
-- values; psi = sum of psi_bins.contribution; psi_critical = chi2(0.95, bins - 1) *
-- (1/n + 1/m) with the Wilson-Hilferty chi2 quantile; ks_d = sup |F_cur - F_base| over all
-- values with right-continuous ECDFs (scipy's ks_2samp statistic); ks_p = Q(lambda),
-- lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) * D, ne = n*m/(n+m), Q = 2 sum_{j=1..100}
-- (-1)^(j-1) exp(-2 j^2 lambda^2) clamped to [0, 1], and 1 when lambda < 0.2. Tiers from
-- drift.psi_warn / psi_threshold and drift.ks_warn / ks_threshold with ks_alpha; tier is
-- the worse of the two. status: COMPARED, NO_DATA (a side has no finite value: psi and
-- ks are NULL) or NO_BASELINE (no baseline of that kind yet); tier NULL unless COMPARED.
CREATE OR REPLACE VIEW drift_distribution AS
WITH sample_counts AS (
    SELECT baseline_key, run_id, distribution, count(value) AS finite
    FROM samples
    GROUP BY baseline_key, run_id, distribution
),
sized AS (
    -- n and m from per-run counts, so pairs without values on a side still get a row
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        CAST(sum(n) AS BIGINT) AS n, CAST(sum(m) AS BIGINT) AS m
    FROM (
        SELECT ps.baseline_key, ps.run_id, ps.baseline_kind, c.distribution, c.finite AS n, 0 AS m
        FROM baseline_summary AS ps
        JOIN sample_counts AS c ON c.baseline_key = ps.baseline_key AND c.run_id = ps.run_id
        UNION ALL
        SELECT b.baseline_key, b.run_id, b.baseline_kind, c.distribution, 0, c.finite
        FROM baselines AS b
        JOIN sample_counts AS c ON c.baseline_key = b.baseline_key AND c.run_id = b.baseline_run_id
    )
    GROUP BY baseline_key, run_id, baseline_kind, distribution
),
psi AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        sum(contribution ORDER BY bin) AS psi,  -- fixed order: same bits every time
        count(*) AS bins,
        any_value(ks_d) AS ks_d
    FROM distribution_bins
    GROUP BY baseline_key, run_id, baseline_kind, distribution
),
ks_lambda AS (
    SELECT
        psi.*,
        (sqrt(sz.n * sz.m / (sz.n + sz.m)) + 0.12 + 0.11 / sqrt(sz.n * sz.m / (sz.n + sz.m)))
            * psi.ks_d AS lambda
    FROM psi
    JOIN sized AS sz
        ON sz.baseline_key = psi.baseline_key AND sz.run_id = psi.run_id
        AND sz.baseline_kind = psi.baseline_kind AND sz.distribution = psi.distribution
),
measured AS (
    SELECT
        k.baseline_key, k.run_id, k.baseline_kind, k.distribution, k.psi, k.bins, k.ks_d,
        CASE
            WHEN any_value(k.lambda) < 0.2 THEN 1.0
            ELSE least(greatest(
                2 * sum(CASE WHEN j.generate_series % 2 = 1 THEN 1 ELSE -1 END
                        * exp(-2 * j.generate_series * j.generate_series * k.lambda * k.lambda)
                        ORDER BY j.generate_series),
                0.0), 1.0)
        END AS ks_p
    FROM ks_lambda AS k, generate_series(1, 100) AS j
    GROUP BY k.baseline_key, k.run_id, k.baseline_kind, k.distribution, k.psi, k.bins, k.ks_d
),
compared AS (
    SELECT
        sz.baseline_key, sz.run_id, sz.baseline_kind, sz.distribution, sz.n, sz.m,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.sanity_status,
        ps.fingerprint_diff, me.psi, me.bins,
        CASE WHEN me.psi IS NOT NULL THEN
            (me.bins - 1)
            * pow(1 - 2 / (9 * (me.bins - 1))
                  + 1.6448536269514722 * sqrt(2 / (9 * (me.bins - 1))), 3)
            * (1 / sz.n + 1 / sz.m)
        END AS psi_critical,
        me.ks_d, me.ks_p,
        CASE WHEN sz.n > 0 AND sz.m > 0 THEN 'COMPARED' ELSE 'NO_DATA' END AS status
    FROM sized AS sz
    JOIN baseline_summary AS ps
        ON ps.baseline_key = sz.baseline_key AND ps.run_id = sz.run_id
        AND ps.baseline_kind = sz.baseline_kind
    LEFT JOIN measured AS me
        ON me.baseline_key = sz.baseline_key AND me.run_id = sz.run_id
        AND me.baseline_kind = sz.baseline_kind AND me.distribution = sz.distribution
    UNION ALL
    -- Cohort-runs without a baseline of a kind: each of their distributions, NO_BASELINE.
    SELECT
        s.baseline_key, s.run_id, k.baseline_kind, s.distribution, count(s.value), 0,
        NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NO_BASELINE'
    FROM samples AS s
    CROSS JOIN baseline_kinds AS k
    WHERE NOT EXISTS (
        SELECT 1 FROM baseline_summary AS ps
        WHERE ps.baseline_key = s.baseline_key AND ps.run_id = s.run_id
          AND ps.baseline_kind = k.baseline_kind
    )
    GROUP BY s.baseline_key, s.run_id, k.baseline_kind, s.distribution
),
tiered AS (
    SELECT
        *,
        CASE
            WHEN psi IS NULL THEN NULL
            WHEN psi >= cfg.psi_threshold THEN 'ALERT'
            WHEN psi >= cfg.psi_warn THEN 'WARN'
            ELSE 'OK'
        END AS psi_tier,
        CASE
            WHEN ks_d IS NULL THEN NULL
            WHEN ks_d >= cfg.ks_threshold AND ks_p < cfg.ks_alpha THEN 'ALERT'
            WHEN ks_d >= cfg.ks_warn AND ks_p < cfg.ks_alpha THEN 'WARN'
            ELSE 'OK'
        END AS ks_tier
    FROM compared, settings_wide AS cfg
)
SELECT
    cr.stage, cr.view, cr.target, cr.symbol, t.baseline_key, t.run_id, cr.run_started_at,
    cr.cohort_id, t.baseline_kind, t.baseline_run_id, t.baseline_runs,
    t.distribution, t.n, t.m, t.psi, t.bins AS psi_bins, t.psi_critical,
    t.psi > t.psi_critical AS psi_significant,
    t.ks_d, t.ks_p, t.psi_tier, t.ks_tier,
    CASE greatest(tier_rank(t.psi_tier), tier_rank(t.ks_tier))
        WHEN 0 THEN 'OK' WHEN 1 THEN 'WARN' WHEN 2 THEN 'ALERT'
    END AS tier,
    greatest(tier_rank(t.psi_tier), tier_rank(t.ks_tier)) AS tier_rank,
    t.status,
    cr.view AS current_view, t.baseline_view, t.sanity_status, t.fingerprint_diff
FROM tiered AS t
JOIN cohort_runs AS cr ON cr.baseline_key = t.baseline_key AND cr.run_id = t.run_id;
