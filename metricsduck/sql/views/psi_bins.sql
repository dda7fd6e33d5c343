-- PSI bins behind every PSI: bin index, lower_edge (NULL for the first bin) and
-- upper_edge (NULL for the last), each side's count and share (count / n, m), and the
-- contribution (p_cur - p_base) * ln(p_cur / p_base) with both shares floored at
-- drift.psi_epsilon (not renormalised). Only pairs where both sides have values.
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW psi_bins AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_values AS MATERIALIZED (FROM distribution_values_of('tree_pairs', 'tree_summary', 'samples'))
SELECT
    p.baseline_key, p.run_id, p.baseline_kind, b.distribution, b.bin, b.lower_edge,
    b.upper_edge, b.baseline_count, b.current_count, b.baseline_share, b.current_share,
    b.contribution
FROM two_sample_bins('tree_values') AS b
JOIN tree_summary AS p ON p.pair_id = b.pair_id;
