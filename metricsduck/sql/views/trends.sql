-- One row per baseline key x metric x cohort-run, once trend.min_runs cohort-runs with a
-- finite value exist up to and including it: the trend over the last trend.window of
-- them (`trends_of` over every cohort-run). x is the run's position in that window
-- (0, 1, 2, ...): slope and intercept are the OLS fit of value on x, r2 its coefficient
-- of determination, slope_per_day the OLS slope against run_started_at in days,
-- theil_sen_slope the median of all pairwise slopes. direction is 'flat' unless r2 >=
-- trend.min_r2 and |slope| * (n_runs - 1) >= trend.min_rel_change * |mean| (each to four
-- ulps); then the sign of the OLS slope decides. good_direction is the metric's
-- (drift.direction.<metric>, else both); assessment is 'improving' for a trend that way,
-- 'degrading' against it, NULL when flat or either way is fine.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW trends AS
SELECT * FROM trends_of('cohort_runs');
