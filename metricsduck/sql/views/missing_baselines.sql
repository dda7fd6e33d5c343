-- Every cohort-run x enabled baseline kind without a baseline yet (its key's first
-- runs, or no earlier good run): drift gives these NO_BASELINE rows, never silence.
CREATE OR REPLACE VIEW missing_baselines AS
SELECT cr.baseline_key, cr.run_id, k.baseline_kind
FROM cohort_runs AS cr
CROSS JOIN baseline_kinds AS k
WHERE NOT EXISTS (
    SELECT 1 FROM baseline_summary AS ps
    WHERE ps.baseline_key = cr.baseline_key AND ps.run_id = cr.run_id
      AND ps.baseline_kind = k.baseline_kind
);
