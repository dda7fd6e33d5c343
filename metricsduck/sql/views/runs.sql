-- One row per pipeline run: when it started and how many cohort-runs it holds, ordered
-- like baselines order runs (run_started_at, then run_id); ordinal 1 is the oldest.
-- Shard: broadcast.
CREATE OR REPLACE VIEW runs AS
SELECT
    run_id,
    min(run_started_at) AS run_started_at,
    count(*) AS cohort_runs,
    count(DISTINCT stage) AS stages,
    row_number() OVER (ORDER BY min(run_started_at), run_id) AS ordinal
FROM cohort_runs
GROUP BY run_id;
