-- cohort_runs with its effective verdict: the latest mark, else the pipeline's good
-- column, else audit_valid when baselines.last_good_uses_audit is on.
-- good_source says which one decided ('mark', 'good', 'audit', or NULL when unknown).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW cohort_status AS
SELECT
    cr.*,
    CASE
        WHEN m.good IS NOT NULL THEN m.good
        WHEN cr.good IS NOT NULL THEN cr.good
        WHEN cfg.last_good_uses_audit THEN cr.audit_valid
    END AS effective_good,
    CASE
        WHEN m.good IS NOT NULL THEN 'mark'
        WHEN cr.good IS NOT NULL THEN 'good'
        WHEN cfg.last_good_uses_audit AND cr.audit_valid IS NOT NULL THEN 'audit'
    END AS good_source
FROM cohort_runs AS cr
CROSS JOIN settings_wide AS cfg
LEFT JOIN marks AS m USING (run_id);
