-- One row per cohort-run x baseline kind x metric. status: COMPARED (tiered by rel_delta,
-- or by delta where rel_delta is undefined; text compared for equality), NEW (OK),
-- MISSING (present in the baseline, not now: WARN), KIND_CHANGED (WARN, ALERT if
-- critical), NON_FINITE (a side is NaN/inf/None: OK if both are the same, else WARN or
-- ALERT if critical), NO_BASELINE (no baseline of that kind yet; tier NULL), IMPROVED (a
-- number moved in its good_direction, drift.direction.<metric>, by as much as would be
-- WARN or ALERT the other way: tier OK, the numbers kept).
-- Thresholds per metric: drift.overrides.<metric> first, then the critical tiers for
-- drift.critical_metrics, then the default tiers. rolling pools up to k runs:
-- baseline_value is their mean, baseline_std their sample std, baseline_n how many values
-- were pooled; z is set for rolling when n >= 2 and std > 0.
-- drift_scalar_of(pairs, summary, missing, scalars): the same for the pairs of `pairs`
-- (rows of baselines), `summary` (of baseline_summary) and `missing` (of
-- missing_baselines), from the rows of scalar_facts in `scalars`.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO drift_scalar_of(pairs, summary, missing, scalars) AS TABLE
-- Float aggregates carry ORDER BY so that they sum in one fixed order: parallel
-- aggregation would otherwise change the last bits from one query to the next.
WITH baseline_values AS (
    SELECT
        bl.baseline_key, bl.run_id, bl.baseline_kind, f.metric,
        arg_max(f.kind, bl.baseline_ordinal) AS kind,
        avg(f.value ORDER BY bl.baseline_ordinal) AS value,
        stddev_samp(f.value ORDER BY bl.baseline_ordinal) AS std,
        count(f.value) AS n,
        arg_max_null(f.value_text, bl.baseline_ordinal) AS value_text
    FROM query_table(pairs) AS bl
    JOIN query_table(scalars) AS f ON f.baseline_key = bl.baseline_key AND f.run_id = bl.baseline_run_id
    GROUP BY bl.baseline_key, bl.run_id, bl.baseline_kind, f.metric
),
metric_keys AS (
    SELECT ps.baseline_key, ps.run_id, ps.baseline_kind, f.metric
    FROM query_table(summary) AS ps
    JOIN query_table(scalars) AS f ON f.baseline_key = ps.baseline_key AND f.run_id = ps.run_id
    UNION
    SELECT baseline_key, run_id, baseline_kind, metric FROM baseline_values
),
paired AS (
    SELECT
        mk.baseline_key, mk.run_id, mk.baseline_kind, mk.metric,
        c.kind AS current_kind, c.value AS current_value, c.value_text AS current_text,
        b.kind AS baseline_value_kind, b.value AS baseline_value, b.std AS baseline_std,
        b.n AS baseline_n, b.value_text AS baseline_text,
        ps.baseline_run_id, ps.baseline_runs, ps.baseline_view, ps.fingerprint_diff,
        ps.sanity_status
    FROM metric_keys AS mk
    JOIN query_table(summary) AS ps
        ON ps.baseline_key = mk.baseline_key AND ps.run_id = mk.run_id
        AND ps.baseline_kind = mk.baseline_kind
    LEFT JOIN query_table(scalars) AS c
        ON c.baseline_key = mk.baseline_key AND c.run_id = mk.run_id AND c.metric = mk.metric
    LEFT JOIN baseline_values AS b
        ON b.baseline_key = mk.baseline_key AND b.run_id = mk.run_id
        AND b.baseline_kind = mk.baseline_kind AND b.metric = mk.metric
    UNION ALL
    -- Cohort-runs without a baseline of a kind: every current metric, NO_BASELINE.
    SELECT
        f.baseline_key, f.run_id, mb.baseline_kind, f.metric,
        f.kind, f.value, f.value_text,
        NULL, NULL, NULL, 0, NULL,
        NULL, 0, NULL, NULL, NULL
    FROM query_table(scalars) AS f
    JOIN query_table(missing) AS mb ON mb.baseline_key = f.baseline_key AND mb.run_id = f.run_id
),
classified AS (
    SELECT
        p.*,
        coalesce(p.current_kind, p.baseline_value_kind) AS kind,
        coalesce(sm.critical, false) AS is_critical,
        coalesce(sm.good_direction, 'both') AS good_direction,
        coalesce(sm.relative_warn, CASE WHEN sm.critical THEN cfg.critical_relative_warn
                                        ELSE cfg.relative_warn END) AS relative_warn,
        coalesce(sm.relative_alert, CASE WHEN sm.critical THEN cfg.critical_relative_alert
                                         ELSE cfg.relative_alert END) AS relative_alert,
        coalesce(sm.absolute_warn, CASE WHEN sm.critical THEN cfg.critical_absolute_warn
                                        ELSE cfg.absolute_warn END) AS absolute_warn,
        coalesce(sm.absolute_alert, CASE WHEN sm.critical THEN cfg.critical_absolute_alert
                                         ELSE cfg.absolute_alert END) AS absolute_alert,
        CASE
            WHEN p.baseline_runs = 0 THEN 'NO_BASELINE'
            WHEN p.current_kind IS NULL THEN 'MISSING'
            WHEN p.baseline_value_kind IS NULL THEN 'NEW'
            WHEN p.current_kind <> p.baseline_value_kind THEN 'KIND_CHANGED'
            WHEN p.current_kind = 'text' THEN 'COMPARED'
            WHEN p.current_value IS NULL OR p.baseline_value IS NULL THEN 'NON_FINITE'
            ELSE 'COMPARED'
        END AS status
    FROM paired AS p
    CROSS JOIN settings_wide AS cfg
    LEFT JOIN settings_metrics AS sm ON sm.metric = p.metric
),
measured AS (
    SELECT
        *,
        CASE WHEN status = 'COMPARED' AND kind <> 'text' THEN current_value - baseline_value END AS delta
    FROM classified
),
relative AS (
    SELECT
        *,
        CASE
            WHEN delta IS NULL THEN NULL
            WHEN baseline_value <> 0 THEN delta / abs(baseline_value)
            WHEN current_value = 0 THEN 0.0
        END AS rel_delta,
        CASE
            WHEN delta IS NULL THEN NULL
            WHEN baseline_value <> 0 THEN 'defined'
            WHEN current_value = 0 THEN 'both_zero'
            ELSE 'undefined_zero_baseline'
        END AS rel_delta_status
    FROM measured
),
tiered AS (
    SELECT
        *,
        CASE
            WHEN status = 'NO_BASELINE' THEN NULL
            WHEN status = 'NEW' THEN 'OK'
            WHEN status = 'MISSING' THEN 'WARN'
            WHEN status = 'KIND_CHANGED' THEN CASE WHEN is_critical THEN 'ALERT' ELSE 'WARN' END
            -- text is compared by its text alone: a rolling window that still holds the
            -- metric's older numeric values must not make an unchanged text look changed
            WHEN kind = 'text' THEN
                CASE
                    WHEN current_text IS NOT DISTINCT FROM baseline_text THEN 'OK'
                    WHEN is_critical THEN 'ALERT'
                    ELSE 'WARN'
                END
            WHEN status = 'NON_FINITE' THEN
                CASE
                    WHEN current_value IS NOT DISTINCT FROM baseline_value
                     AND current_text IS NOT DISTINCT FROM baseline_text THEN 'OK'
                    WHEN is_critical THEN 'ALERT'
                    ELSE 'WARN'
                END
            WHEN rel_delta IS NOT NULL THEN tier_of(abs(rel_delta), relative_warn, relative_alert)
            ELSE tier_of(abs(delta), absolute_warn, absolute_alert)
        END AS tier
    FROM relative
),
judged AS (
    -- only degradations alert: a WARN or ALERT change in the good direction is IMPROVED
    SELECT
        * REPLACE (
            CASE WHEN improved THEN 'OK' ELSE tier END AS tier,
            CASE WHEN improved THEN 'IMPROVED' ELSE status END AS status
        )
    FROM (
        SELECT
            *,
            status = 'COMPARED' AND tier IN ('WARN', 'ALERT') AND (
                (good_direction = 'higher_is_better' AND delta > 0)
                OR (good_direction = 'lower_is_better' AND delta < 0)
            ) AS improved
        FROM tiered
    )
)
SELECT
    cr.stage, cr.view, cr.target, cr.symbol, t.baseline_key, t.run_id, cr.run_started_at,
    cr.cohort_id, t.baseline_kind, t.baseline_run_id, t.baseline_runs,
    t.metric, t.kind, t.current_value, t.baseline_value, t.baseline_std, t.baseline_n,
    t.current_text, t.baseline_text,
    t.delta, t.rel_delta, t.rel_delta_status,
    CASE
        WHEN t.baseline_kind = 'rolling' AND t.baseline_n >= 2 AND t.baseline_std > 0
        THEN t.delta / t.baseline_std
    END AS z,
    t.tier, tier_rank(t.tier) AS tier_rank, t.is_critical, t.status, t.good_direction,
    cr.view AS current_view, t.baseline_view,
    t.sanity_status, t.fingerprint_diff
FROM judged AS t
JOIN cohort_runs AS cr ON cr.baseline_key = t.baseline_key AND cr.run_id = t.run_id;
