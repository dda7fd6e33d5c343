-- Every cohort-run x enabled baseline kind without a baseline yet (its key's first
-- runs, or no earlier good run): drift gives these NO_BASELINE rows, never silence.
-- missing_baselines_of(scope, summary): the same for the cohort-runs listed in `scope`,
-- against the pairs of `summary` (rows of baseline_summary).
-- Shard: baseline_key.
CREATE OR REPLACE MACRO missing_baselines_of(scope, summary) AS TABLE
SELECT cr.baseline_key, cr.run_id, k.baseline_kind
FROM (SELECT DISTINCT baseline_key, run_id FROM query_table(scope)) AS cr
CROSS JOIN baseline_kinds AS k
WHERE NOT EXISTS (
    SELECT 1 FROM query_table(summary) AS ps
    WHERE ps.baseline_key = cr.baseline_key AND ps.run_id = cr.run_id
      AND ps.baseline_kind = k.baseline_kind
);
