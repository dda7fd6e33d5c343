-- One row per cohort-run x baseline kind x metric. status: COMPARED (tiered by rel_delta,
-- or by delta where rel_delta is undefined; text compared for equality), NEW (OK),
-- MISSING (present in the baseline, not now: WARN), KIND_CHANGED (WARN, ALERT if
-- critical), NON_FINITE (a side is NaN/inf/None: OK if both are the same, else WARN or
-- ALERT if critical), NO_BASELINE (no baseline of that kind yet; tier NULL).
-- Thresholds per metric: drift.overrides.<metric> first, then the critical tiers for
-- drift.critical_metrics, then the default tiers. rolling pools up to k runs:
-- baseline_value is their mean, baseline_std their sample std, baseline_n how many values
-- were pooled; z is set for rolling when n >= 2 and std > 0.
CREATE OR REPLACE VIEW drift_scalar AS
SELECT * FROM drift_scalar_of('baselines', 'baseline_summary', 'missing_baselines', 'scalar_facts');
