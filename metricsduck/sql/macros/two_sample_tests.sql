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
