-- Where each run x stage x view lives in the tree: view_dir is the <VIEW> folder of the
-- run's REPRODUCIBILITY tree (the rollup files go there), with its cohort count.
-- Shard: run_id, stage, view.
CREATE OR REPLACE VIEW view_dirs AS
SELECT
    run_id, stage, view,
    count(*) AS cohorts,
    min(source_file[1:strpos(source_file, '/REPRODUCIBILITY/' || stage || '/' || view || '/')
        + length('/REPRODUCIBILITY/' || stage || '/' || view) - 1]) AS view_dir
FROM cohort_runs
GROUP BY run_id, stage, view;
