-- The drift of every cohort-run before its false-discovery step (`drift_tested_of`): one row
-- per cohort-run x baseline kind x item, each from its own baseline key's rows, q_value NULL.
-- `drift_computed` applies the step over each run x stage (docs/design.md §13).
-- Each input is a materialised CTE, so a query reads the sidecars once per input, not once
-- per reference inside the macros (the persisted catalog's sources are live globs).
-- Shard: baseline_key.
CREATE OR REPLACE VIEW drift_tested AS
WITH
    tree_pairs AS MATERIALIZED (FROM baselines),
    tree_summary AS MATERIALIZED (FROM baseline_summary_of('tree_pairs')),
    tree_missing AS MATERIALIZED (FROM missing_baselines_of('cohort_runs', 'tree_summary')),
    tree_samples AS MATERIALIZED (FROM samples),
    tree_scalars AS MATERIALIZED (FROM scalar_facts_of('facts', 'tree_samples'))
SELECT * FROM drift_tested_of('tree_pairs', 'tree_summary', 'tree_missing', 'tree_scalars', 'tree_samples');
