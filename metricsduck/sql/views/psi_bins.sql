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
