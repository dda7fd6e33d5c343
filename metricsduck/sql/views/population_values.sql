-- The values compared by population drift: for each group, every numeric metric's
-- values across the group's cohorts in its run ('current') and in the previous run of
-- the same stage x view ('baseline'); distribution is the metric name.
-- Shard: stage, view.
CREATE OR REPLACE VIEW population_values AS
WITH numbers AS (
    SELECT
        stage, view, run_id, CASE WHEN symbol IS NOT NULL THEN target END AS target,
        metric, value
    FROM facts
    WHERE kind = 'number'
)
SELECT p.pair_id, f.metric AS distribution, 'current' AS side, f.value
FROM population_pairs AS p
JOIN numbers AS f
    ON f.stage = p.stage AND f.view = p.view AND f.run_id = p.run_id
    AND f.target IS NOT DISTINCT FROM p.target
UNION ALL
SELECT p.pair_id, f.metric, 'baseline', f.value
FROM population_pairs AS p
JOIN numbers AS f
    ON f.stage = p.stage AND f.view = p.view AND f.run_id = p.baseline_run_id
    AND f.target IS NOT DISTINCT FROM p.target;
