-- The stage-level container: one row per run x stage x view with where that view's
-- rollup lives (view_dir), its cohort count, its drift rows per tier over every baseline
-- kind and its worst tier. It only counts within each view and never combines drift
-- statistics across views.
-- rollup_stage_of(drift_rows): the same, counting the drift rows of the relation named
-- `drift_rows` (rows of drift).
-- Shard: run_id, stage.
CREATE OR REPLACE MACRO rollup_stage_of(drift_rows) AS TABLE
WITH tiers AS (
    SELECT
        run_id, stage, view,
        count(*) FILTER (WHERE tier = 'OK') AS tier_ok,
        count(*) FILTER (WHERE tier = 'WARN') AS tier_warn,
        count(*) FILTER (WHERE tier = 'ALERT') AS tier_alert,
        max(tier_rank) AS worst_rank
    FROM query_table(drift_rows)
    GROUP BY run_id, stage, view
)
SELECT
    c.run_id, r.run_started_at, c.stage, c.view, c.view_dir, c.cohorts,
    coalesce(t.tier_ok, 0) AS tier_ok, coalesce(t.tier_warn, 0) AS tier_warn,
    coalesce(t.tier_alert, 0) AS tier_alert,
    tier_name(t.worst_rank) AS worst_tier
FROM view_dirs AS c
JOIN runs AS r ON r.run_id = c.run_id
LEFT JOIN tiers AS t ON t.run_id = c.run_id AND t.stage = c.stage AND t.view = c.view;
