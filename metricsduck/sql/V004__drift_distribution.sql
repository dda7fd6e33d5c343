-- V004: distribution drift (PSI with its per-bin detail, two-sample KS) against every
-- baseline kind (DESIGN §5). Needs V002 and V003. Thresholds come from settings.

-- Every sample value compared by a cohort-run x baseline kind: side 'current' is the
-- cohort-run's own values, side 'baseline' the values of every baseline cohort-run it
-- uses (pooled for rolling). value is NULL on the placeholder row of a distribution
-- without finite values; statistics skip those rows.
CREATE OR REPLACE VIEW distribution_values AS
WITH pairs AS (
    SELECT DISTINCT baseline_key, run_id, baseline_kind FROM baselines
)
SELECT p.baseline_key, p.run_id, p.baseline_kind, s.distribution, 'current' AS side, s.value
FROM pairs AS p
JOIN samples AS s ON s.baseline_key = p.baseline_key AND s.run_id = p.run_id
UNION ALL
SELECT b.baseline_key, b.run_id, b.baseline_kind, s.distribution, 'baseline', s.value
FROM baselines AS b
JOIN samples AS s ON s.baseline_key = b.baseline_key AND s.run_id = b.baseline_run_id;

-- PSI bins: edges are the distinct linear quantiles of the baseline at i/B, i = 1..B-1
-- (B = drift.psi_bins), computed exactly as numpy's default np.quantile does; bins are
-- right-closed and open at both ends: (-inf, e1], (e1, e2], ..., (e_last, +inf).
-- Shares are count / n; contribution uses shares floored at drift.psi_epsilon (not
-- renormalised): (p_cur - p_base) * ln(p_cur / p_base). lower_edge is NULL for the
-- first bin and upper_edge for the last. Only pairs where both sides have values.
CREATE OR REPLACE VIEW psi_bins AS
WITH finite AS (
    SELECT * FROM distribution_values WHERE value IS NOT NULL
),
sizes AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        count(*) FILTER (WHERE side = 'current') AS n,
        count(*) FILTER (WHERE side = 'baseline') AS m,
        any_value(cfg.psi_bins) AS psi_bins
    FROM finite, settings_wide AS cfg
    GROUP BY baseline_key, run_id, baseline_kind, distribution
    HAVING count(*) FILTER (WHERE side = 'current') > 0
       AND count(*) FILTER (WHERE side = 'baseline') > 0
),
base_sorted AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution, value,
        row_number() OVER (
            PARTITION BY baseline_key, run_id, baseline_kind, distribution ORDER BY value
        ) - 1 AS idx
    FROM finite
    WHERE side = 'baseline'
),
positions AS (
    SELECT
        s.baseline_key, s.run_id, s.baseline_kind, s.distribution, s.m,
        (q.generate_series / s.psi_bins) * (s.m - 1) AS h
    FROM sizes AS s,
        generate_series(1, s.psi_bins - 1) AS q
),
quantiles AS (
    SELECT
        p.baseline_key, p.run_id, p.baseline_kind, p.distribution,
        p.h - floor(p.h) AS t, lo.value AS a, hi.value AS b
    FROM positions AS p
    JOIN base_sorted AS lo
        ON lo.baseline_key = p.baseline_key AND lo.run_id = p.run_id
        AND lo.baseline_kind = p.baseline_kind AND lo.distribution = p.distribution
        AND lo.idx = CAST(floor(p.h) AS BIGINT)
    JOIN base_sorted AS hi
        ON hi.baseline_key = p.baseline_key AND hi.run_id = p.run_id
        AND hi.baseline_kind = p.baseline_kind AND hi.distribution = p.distribution
        AND hi.idx = least(CAST(floor(p.h) AS BIGINT) + 1, p.m - 1)
),
edges AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution, edge,
        row_number() OVER (
            PARTITION BY baseline_key, run_id, baseline_kind, distribution ORDER BY edge
        ) AS edge_index
    FROM (
        -- numpy's lerp: a + (b - a) * t, or b - (b - a) * (1 - t) when t >= 0.5
        SELECT DISTINCT
            baseline_key, run_id, baseline_kind, distribution,
            CASE WHEN t >= 0.5 THEN b - (b - a) * (1 - t) ELSE a + (b - a) * t END AS edge
        FROM quantiles
    )
),
bins AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        edge_index - 1 AS bin,
        lag(edge) OVER (
            PARTITION BY baseline_key, run_id, baseline_kind, distribution ORDER BY edge_index
        ) AS lower_edge,
        edge AS upper_edge
    FROM edges
    UNION ALL
    SELECT baseline_key, run_id, baseline_kind, distribution, max(edge_index), max(edge), NULL
    FROM edges
    GROUP BY baseline_key, run_id, baseline_kind, distribution
),
stream AS (
    -- values and edges in one sorted stream: a value's bin is the number of edges below
    -- it; an edge equal to a value sorts after it, so the value stays in the lower bin
    SELECT baseline_key, run_id, baseline_kind, distribution, side, value AS x, 0 AS is_edge
    FROM finite
    UNION ALL
    SELECT baseline_key, run_id, baseline_kind, distribution, NULL, edge, 1
    FROM edges
),
binned AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution, side, is_edge,
        sum(is_edge) OVER (
            PARTITION BY baseline_key, run_id, baseline_kind, distribution
            ORDER BY x, is_edge
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS bin
    FROM stream
),
counts AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution, bin,
        count(*) FILTER (WHERE side = 'current') AS current_count,
        count(*) FILTER (WHERE side = 'baseline') AS baseline_count
    FROM binned
    WHERE is_edge = 0
    GROUP BY baseline_key, run_id, baseline_kind, distribution, bin
),
shares AS (
    SELECT
        bins.baseline_key, bins.run_id, bins.baseline_kind, bins.distribution, bins.bin,
        bins.lower_edge, bins.upper_edge,
        coalesce(c.baseline_count, 0) AS baseline_count,
        coalesce(c.current_count, 0) AS current_count,
        coalesce(c.baseline_count, 0) / s.m AS baseline_share,
        coalesce(c.current_count, 0) / s.n AS current_share,
        s.n, s.m
    FROM bins
    JOIN sizes AS s
        ON s.baseline_key = bins.baseline_key AND s.run_id = bins.run_id
        AND s.baseline_kind = bins.baseline_kind AND s.distribution = bins.distribution
    LEFT JOIN counts AS c
        ON c.baseline_key = bins.baseline_key AND c.run_id = bins.run_id
        AND c.baseline_kind = bins.baseline_kind AND c.distribution = bins.distribution
        AND c.bin = bins.bin
)
SELECT
    baseline_key, run_id, baseline_kind, distribution, bin, lower_edge, upper_edge,
    baseline_count, current_count, baseline_share, current_share,
    (greatest(current_share, cfg.psi_epsilon) - greatest(baseline_share, cfg.psi_epsilon))
    * ln(greatest(current_share, cfg.psi_epsilon) / greatest(baseline_share, cfg.psi_epsilon))
        AS contribution
FROM shares, settings_wide AS cfg;

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
WITH sized AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        count(value) FILTER (WHERE side = 'current') AS n,
        count(value) FILTER (WHERE side = 'baseline') AS m
    FROM distribution_values
    GROUP BY baseline_key, run_id, baseline_kind, distribution
),
psi AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution,
        sum(contribution ORDER BY bin) AS psi,  -- fixed order: same bits every time
        count(*) AS bins
    FROM psi_bins
    GROUP BY baseline_key, run_id, baseline_kind, distribution
),
steps AS (
    SELECT
        baseline_key, run_id, baseline_kind, distribution, value,
        count(*) FILTER (WHERE side = 'current') AS current_count,
        count(*) FILTER (WHERE side = 'baseline') AS baseline_count
    FROM distribution_values
    WHERE value IS NOT NULL
    GROUP BY baseline_key, run_id, baseline_kind, distribution, value
),
ecdf AS (
    SELECT
        st.baseline_key, st.run_id, st.baseline_kind, st.distribution,
        sum(st.current_count) OVER w / sz.n AS f_current,
        sum(st.baseline_count) OVER w / sz.m AS f_baseline
    FROM steps AS st
    JOIN sized AS sz
        ON sz.baseline_key = st.baseline_key AND sz.run_id = st.run_id
        AND sz.baseline_kind = st.baseline_kind AND sz.distribution = st.distribution
    WHERE sz.n > 0 AND sz.m > 0
    WINDOW w AS (
        PARTITION BY st.baseline_key, st.run_id, st.baseline_kind, st.distribution
        ORDER BY st.value ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    )
),
ks AS (
    SELECT
        e.baseline_key, e.run_id, e.baseline_kind, e.distribution,
        max(abs(e.f_current - e.f_baseline)) AS ks_d,
        any_value(sz.n) AS n,
        any_value(sz.m) AS m
    FROM ecdf AS e
    JOIN sized AS sz
        ON sz.baseline_key = e.baseline_key AND sz.run_id = e.run_id
        AND sz.baseline_kind = e.baseline_kind AND sz.distribution = e.distribution
    GROUP BY e.baseline_key, e.run_id, e.baseline_kind, e.distribution
),
ks_lambda AS (
    SELECT
        *,
        (sqrt(n * m / (n + m)) + 0.12 + 0.11 / sqrt(n * m / (n + m))) * ks_d AS lambda
    FROM ks
),
ks_p AS (
    SELECT
        k.baseline_key, k.run_id, k.baseline_kind, k.distribution, k.ks_d,
        CASE
            WHEN any_value(k.lambda) < 0.2 THEN 1.0
            ELSE least(greatest(
                2 * sum(CASE WHEN j.generate_series % 2 = 1 THEN 1 ELSE -1 END
                        * exp(-2 * j.generate_series * j.generate_series * k.lambda * k.lambda)
                        ORDER BY j.generate_series),
                0.0), 1.0)
        END AS ks_p
    FROM ks_lambda AS k, generate_series(1, 100) AS j
    GROUP BY k.baseline_key, k.run_id, k.baseline_kind, k.distribution, k.ks_d
),
compared AS (
    SELECT
        sz.baseline_key, sz.run_id, sz.baseline_kind, sz.distribution, sz.n, sz.m,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.sanity_status,
        ps.fingerprint_diff, psi.psi, psi.bins,
        CASE WHEN psi.psi IS NOT NULL THEN
            (psi.bins - 1)
            * pow(1 - 2 / (9 * (psi.bins - 1))
                  + 1.6448536269514722 * sqrt(2 / (9 * (psi.bins - 1))), 3)
            * (1 / sz.n + 1 / sz.m)
        END AS psi_critical,
        kp.ks_d, kp.ks_p,
        CASE WHEN sz.n > 0 AND sz.m > 0 THEN 'COMPARED' ELSE 'NO_DATA' END AS status
    FROM sized AS sz
    JOIN baseline_summary AS ps
        ON ps.baseline_key = sz.baseline_key AND ps.run_id = sz.run_id
        AND ps.baseline_kind = sz.baseline_kind
    LEFT JOIN psi
        ON psi.baseline_key = sz.baseline_key AND psi.run_id = sz.run_id
        AND psi.baseline_kind = sz.baseline_kind AND psi.distribution = sz.distribution
    LEFT JOIN ks_p AS kp
        ON kp.baseline_key = sz.baseline_key AND kp.run_id = sz.run_id
        AND kp.baseline_kind = sz.baseline_kind AND kp.distribution = sz.distribution
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
