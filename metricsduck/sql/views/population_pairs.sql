-- One row per run x stage x view x population group with the run just before it in that
-- stage x view (NULL for the first). A group is the cohorts compared as one population:
-- per target across symbols where the view has a symbol level, else across all targets
-- of the view (target NULL). pair_id identifies a row by its key columns (`checked_id`).
-- Shard: stage, view.
CREATE OR REPLACE VIEW population_pairs AS
WITH view_runs AS (
    SELECT stage, view, run_id, min(run_started_at) AS run_started_at
    FROM cohort_runs
    GROUP BY stage, view, run_id
),
ordered AS (
    SELECT
        *,
        lag(run_id) OVER (PARTITION BY stage, view ORDER BY run_started_at, run_id) AS baseline_run_id
    FROM view_runs
),
groups AS (
    SELECT DISTINCT stage, view, run_id, CASE WHEN symbol IS NOT NULL THEN target END AS target
    FROM cohort_runs
)
SELECT
    checked_id(hash(g.stage, g.view, g.run_id, g.target),
               count(*) OVER (PARTITION BY hash(g.stage, g.view, g.run_id, g.target))) AS pair_id,
    g.stage, g.view, g.target, g.run_id, o.run_started_at, o.baseline_run_id
FROM groups AS g
JOIN ordered AS o ON o.stage = g.stage AND o.view = g.view AND o.run_id = g.run_id;
