-- One row per run x stage x view x group x metric: PSI and KS (the definitions of
-- drift_distribution, via two_sample_tests) of the metric's values across symbols
-- (per target) or across targets, against the previous run of the same stage x view.
-- status: COMPARED, LOW_N or INCONCLUSIVE (tier OK; two_sample_tests says when), NO_DATA
-- (a side has no finite value) or NO_BASELINE (first run).
-- Shard: stage, view.
CREATE OR REPLACE VIEW population_drift AS
WITH sized AS (
    SELECT
        pair_id, distribution,
        count(value) FILTER (WHERE side = 'current') AS n,
        count(value) FILTER (WHERE side = 'baseline') AS m
    FROM population_values
    GROUP BY pair_id, distribution
)
SELECT
    p.run_id, p.run_started_at, p.stage, p.view, p.target, p.baseline_run_id,
    sz.distribution AS metric, sz.n, sz.m,
    t.psi, t.psi_bins, t.psi_critical, t.psi_significant, t.chi2, t.chi2_p, t.ks_d, t.ks_p,
    t.ks_method, t.wasserstein, t.js_distance, t.psi_tier, t.ks_tier, t.distance_tier, t.tier,
    t.tier_rank,
    CASE
        WHEN p.baseline_run_id IS NULL THEN 'NO_BASELINE'
        WHEN sz.n > 0 AND sz.m > 0 THEN t.status
        ELSE 'NO_DATA'
    END AS status
FROM sized AS sz
JOIN population_pairs AS p ON p.pair_id = sz.pair_id
LEFT JOIN two_sample_tests('population_values') AS t
    ON t.pair_id = sz.pair_id AND t.distribution = sz.distribution;
