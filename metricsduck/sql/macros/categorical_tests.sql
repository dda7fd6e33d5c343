-- categorical_tests(source): per pair_id x distribution of category_counts(source) (the
-- category counts of `source`, where both sides hold some): n, m, the effect, the evidence for
-- it and the tier they justify, in the columns of two_sample_tests (those of numbers NULL)
-- plus the categories' own.
-- Evidence: chi2 = Pearson's chi-square of homogeneity on the 2 x K table of counts per
-- category (K = the categories either side holds), with Yates' correction when K = 2
-- (|observed - expected| reduced by up to 0.5), exactly scipy.stats.chi2_contingency's
-- default; chi2_p its p-value with K - 1 degrees of freedom (1 when K = 1).
-- Effect: linf = the largest difference between a category's shares on the two sides
-- (count / n against count / m), the L-infinity distance between the share vectors;
-- categories_new / categories_gone = the categories only the current / only the baseline
-- side holds, in order. Tier: linf against drift.categorical.warn / .threshold where
-- chi2_p < drift.categorical.alpha (and neither side is below drift.min_samples), in
-- distance_tier and tier; status LOW_N, INCONCLUSIVE or COMPARED as in two_sample_tests.
-- Shard: pair_id.
CREATE OR REPLACE MACRO categorical_tests(source) AS TABLE
WITH cells AS (
    -- expected counts under homogeneity; Yates' correction on a 2 x 2 table
    SELECT
        *,
        (current_count + baseline_count) * n / (n + m) AS current_expected,
        (current_count + baseline_count) * m / (n + m) AS baseline_expected,
        CASE WHEN categories = 2 THEN 0.5 ELSE 0.0 END AS yates
    FROM category_counts(source)
),
per_pair AS (
    SELECT
        pair_id, distribution,
        any_value(n) AS n,
        any_value(m) AS m,
        any_value(categories) AS categories,
        sum(pow(greatest(abs(current_count - current_expected) - yates, 0.0), 2) / current_expected
            + pow(greatest(abs(baseline_count - baseline_expected) - yates, 0.0), 2) / baseline_expected
            ORDER BY category) AS chi2,  -- fixed order: same bits every time
        max(abs(current_share - baseline_share)) AS linf,
        coalesce(list(category ORDER BY category) FILTER (WHERE baseline_count = 0), []) AS categories_new,
        coalesce(list(category ORDER BY category) FILTER (WHERE current_count = 0), []) AS categories_gone
    FROM cells
    GROUP BY pair_id, distribution
),
effects AS (
    SELECT
        p.*,
        chi2_sf(p.chi2, p.categories - 1) AS chi2_p,
        chi2_sf(p.chi2, p.categories - 1) < cfg.categorical_alpha AS significant,
        least(p.n, p.m) < cfg.min_samples AS low_n,
        tier_of(p.linf, cfg.categorical_warn, cfg.categorical_threshold) AS effect
    FROM per_pair AS p, settings_wide AS cfg
)
SELECT
    pair_id, distribution, n, m, chi2, chi2_p, linf, categories_new, categories_gone,
    CASE WHEN significant AND NOT low_n THEN effect ELSE 'OK' END AS distance_tier,
    CASE WHEN significant AND NOT low_n THEN effect ELSE 'OK' END AS tier,
    CASE WHEN significant AND NOT low_n THEN tier_rank(effect) ELSE 0 END AS tier_rank,
    CASE
        WHEN low_n THEN 'LOW_N'
        WHEN NOT significant AND effect <> 'OK' THEN 'INCONCLUSIVE'
        ELSE 'COMPARED'
    END AS status
FROM effects;
