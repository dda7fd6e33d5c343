-- The view-level rollup in long form: one row per run x stage x view x level x key x
-- measure. level 'view' covers every cohort of the view, 'target' one target (across its
-- symbols), 'symbol' one symbol (across its targets; symbol-level views only); every
-- level comes from one GROUPING SETS query. Measures: cohorts, targets, symbols; per
-- numeric or bool metric count, mean, std (sample), min, p10, median, p90, max across
-- cohorts; per baseline kind the drift rows in each tier (tier_OK, tier_WARN,
-- tier_ALERT) and alert_share (ALERT / rows with a tier); at the view level
-- worst_item (value = its place, 1 = worst; metric = item; detail says where and how
-- bad) and population_psi / population_ks_d per metric and group (detail = its tier).
-- The drift rows that the tier counts and the worst items both read are one
-- materialised CTE, so the drift of a query is planned and computed once.
-- Shard: run_id, stage.
CREATE OR REPLACE VIEW rollup_view AS
SELECT * FROM rollup_view_of('drift');
