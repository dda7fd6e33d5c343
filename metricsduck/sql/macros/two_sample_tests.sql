-- two_sample_tests(source): per pair_id x distribution of two_sample_bins(source): n, m,
-- the effect sizes and the evidence for them, and the tier they justify.
-- Effect: psi = the sum of the bins' contributions; ks_d = sup |F_cur - F_base| over all
-- values with right-continuous ECDFs (scipy's ks_2samp statistic).
-- Evidence: chi2 = Pearson's chi-square of homogeneity on the bins' 2 x K counts (K bins
-- holding a value; scipy.stats.chi2_contingency without correction), chi2_p its p-value
-- with K - 1 degrees of freedom; ks_p = the exact two-sided p (ks_exact_p_of) when
-- n * m <= drift.ks_exact_max, else Q(lambda) with lambda = (sqrt(ne) + 0.12 +
-- 0.11/sqrt(ne)) * D, ne = n*m/(n+m), Q = 2 sum_{j=1..100} (-1)^(j-1) exp(-2 j^2 lambda^2)
-- clamped to [0, 1] and 1 when lambda < 0.2; ks_method says which.
-- Also reported: psi_critical = chi2(0.95, bins - 1) * (1/n + 1/m) (Wilson-Hilferty), PSI's
-- own asymptotic cut, which floored empty bins break at small n: tiers do not use it.
-- Distances: wasserstein (two_sample_bins: W1 over the baseline's standard deviation) and
-- js_distance, the Jensen-Shannon distance of the bins' unfloored shares, natural log
-- (scipy.spatial.distance.jensenshannon). They tier only where configured
-- (drift.wasserstein_warn / wasserstein_threshold, drift.js_warn / js_threshold; 0 = not
-- tiered), W1 with KS's evidence and JS with the chi-square's: distance_tier.
-- Tiers need both: psi_tier is psi against drift.psi_warn / psi_threshold where
-- chi2_p < drift.psi_alpha (psi_significant), ks_tier is ks_d against drift.ks_warn /
-- ks_threshold where ks_p < drift.ks_alpha; tier is the worst of the three, so no-change
-- comparisons are flagged at most psi_alpha + ks_alpha of the time. status: LOW_N (tier
-- OK) when a side has fewer than drift.min_samples values, INCONCLUSIVE (tier OK) when an
-- effect reaches WARN without its evidence, else COMPARED.
-- Shard: pair_id.
CREATE OR REPLACE MACRO two_sample_tests(source) AS TABLE
WITH per_pair AS (
    SELECT
        pair_id, distribution,
        sum(contribution ORDER BY bin) AS psi,  -- fixed order: same bits every time
        count(*) AS bins,
        count(*) FILTER (WHERE current_count + baseline_count > 0) AS filled_bins,
        -- Pearson's chi-square over the bins holding a value, in bin order
        sum(CASE WHEN current_count + baseline_count > 0 THEN
                pow(current_count - (current_count + baseline_count) * n / (n + m), 2)
                    / ((current_count + baseline_count) * n / (n + m))
                + pow(baseline_count - (current_count + baseline_count) * m / (n + m), 2)
                    / ((current_count + baseline_count) * m / (n + m))
            END ORDER BY bin) AS chi2,
        -- Jensen-Shannon divergence: half of each side's KL divergence from the mean shares
        sum(CASE WHEN current_share > 0
                 THEN 0.5 * current_share * ln(current_share / ((current_share + baseline_share) / 2)) ELSE 0 END
            + CASE WHEN baseline_share > 0
                   THEN 0.5 * baseline_share * ln(baseline_share / ((current_share + baseline_share) / 2)) ELSE 0 END
            ORDER BY bin) AS js_divergence,
        any_value(n) AS n,
        any_value(m) AS m,
        any_value(ks_d) AS ks_d,
        any_value(wasserstein) AS wasserstein
    FROM two_sample_bins(source)
    GROUP BY pair_id, distribution
),
ks_lambda AS (
    SELECT
        *,
        (sqrt(n * m / (n + m)) + 0.12 + 0.11 / sqrt(n * m / (n + m))) * ks_d AS lambda,
        -- n * m * D is a whole number: D is computed as one, divided once
        CAST(round(ks_d * n * m) AS BIGINT) AS ks_k
    FROM per_pair
),
asymptotic AS (
    SELECT
        k.pair_id, k.distribution,
        CASE
            WHEN any_value(k.lambda) < 0.2 THEN 1.0
            ELSE least(greatest(
                2 * sum(CASE WHEN j.generate_series % 2 = 1 THEN 1 ELSE -1 END
                        * exp(-2 * j.generate_series * j.generate_series * k.lambda * k.lambda)
                        ORDER BY j.generate_series),
                0.0), 1.0)
        END AS ks_p
    FROM ks_lambda AS k, generate_series(1, 100) AS j
    GROUP BY k.pair_id, k.distribution
),
exact_triples AS (
    SELECT DISTINCT k.n, k.m, k.ks_k AS k
    FROM ks_lambda AS k, settings_wide AS cfg
    WHERE k.n * k.m <= cfg.ks_exact_max
),
measured AS (
    SELECT
        k.pair_id, k.distribution, k.n, k.m, k.psi, k.bins, k.ks_d, k.chi2, k.wasserstein,
        sqrt(greatest(k.js_divergence, 0.0)) AS js_distance,
        chi2_sf(k.chi2, k.filled_bins - 1) AS chi2_p,
        coalesce(e.p, a.ks_p) AS ks_p,
        CASE WHEN e.p IS NULL THEN 'asymptotic' ELSE 'exact' END AS ks_method
    FROM ks_lambda AS k
    JOIN asymptotic AS a ON a.pair_id = k.pair_id AND a.distribution = k.distribution
    LEFT JOIN ks_exact_p_of('exact_triples') AS e ON e.n = k.n AND e.m = k.m AND e.k = k.ks_k
),
effects AS (
    SELECT
        me.*,
        (me.bins - 1)
            * pow(1 - 2 / (9 * (me.bins - 1)) + 1.6448536269514722 * sqrt(2 / (9 * (me.bins - 1))), 3)
            * (1 / me.n + 1 / me.m) AS psi_critical,
        me.chi2_p < cfg.psi_alpha AS psi_significant,
        me.ks_p < cfg.ks_alpha AS ks_significant,
        least(me.n, me.m) < cfg.min_samples AS low_n,
        tier_of(me.psi, cfg.psi_warn, cfg.psi_threshold) AS psi_effect,
        tier_of(me.ks_d, cfg.ks_warn, cfg.ks_threshold) AS ks_effect,
        tier_of_optional(me.wasserstein, cfg.wasserstein_warn, cfg.wasserstein_threshold) AS wasserstein_effect,
        tier_of_optional(me.js_distance, cfg.js_warn, cfg.js_threshold) AS js_effect
    FROM measured AS me, settings_wide AS cfg
),
tiered AS (
    SELECT
        *,
        CASE WHEN psi_significant AND NOT low_n THEN psi_effect ELSE 'OK' END AS psi_tier,
        CASE WHEN ks_significant AND NOT low_n THEN ks_effect ELSE 'OK' END AS ks_tier,
        tier_name(greatest(
            CASE WHEN ks_significant AND NOT low_n THEN tier_rank(wasserstein_effect) ELSE 0 END,
            CASE WHEN psi_significant AND NOT low_n THEN tier_rank(js_effect) ELSE 0 END)) AS distance_tier
    FROM effects
)
SELECT
    pair_id, distribution, n, m, psi, bins AS psi_bins, psi_critical, psi_significant,
    chi2, chi2_p, ks_d, ks_p, ks_method, wasserstein, js_distance, psi_tier, ks_tier, distance_tier,
    tier_name(greatest(tier_rank(psi_tier), tier_rank(ks_tier), tier_rank(distance_tier))) AS tier,
    greatest(tier_rank(psi_tier), tier_rank(ks_tier), tier_rank(distance_tier)) AS tier_rank,
    CASE
        WHEN low_n THEN 'LOW_N'
        WHEN psi_tier = 'OK' AND ks_tier = 'OK' AND distance_tier = 'OK'
         AND list_has_any([psi_effect, ks_effect, wasserstein_effect, js_effect], ['WARN', 'ALERT'])
            THEN 'INCONCLUSIVE'
        ELSE 'COMPARED'
    END AS status
FROM tiered;
