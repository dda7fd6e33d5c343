-- The stage-level container: one row per run x stage x view with where that view's
-- rollup lives (view_dir), its cohort count, its drift rows per tier over every baseline
-- kind and its worst tier. It only counts within each view and never combines drift
-- statistics across views.
-- Shard: run_id, stage.
CREATE OR REPLACE VIEW rollup_stage AS
SELECT * FROM rollup_stage_of('drift');
