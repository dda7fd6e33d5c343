-- chi2_sf(x, df): P(X >= x) for X ~ chi2(df), as scipy.stats.chi2.sf: one minus the
-- regularised lower incomplete gamma P(df/2, x/2), summed as its series
-- e^(-x/2) sum_k (x/2)^(df/2 + k) / Gamma(df/2 + k + 1) far enough past the largest term
-- (x/2 + 15 sqrt(x/2) + 50 terms); 0 where x/2 is more than 50 + 15 sqrt(df/2) above df/2
-- (the tail is then below 1e-40), 1 for x <= 0 or df < 1.
CREATE OR REPLACE MACRO chi2_sf(x, df) AS
    CASE
        WHEN x IS NULL OR df IS NULL THEN NULL
        WHEN df < 1 OR x <= 0 THEN 1.0
        WHEN x / 2 > df / 2 + 50 + 15 * sqrt(df / 2) THEN 0.0
        ELSE greatest(0.0, 1.0 - list_sum(list_transform(
            range(0, CAST(ceil(x / 2 + 15 * sqrt(x / 2) + 50) AS BIGINT)),
            lambda k: exp(-x / 2 + (df / 2 + k) * ln(x / 2) - lgamma(df / 2 + k + 1)))))
    END;
