-- The scalar inputs of drift: every fact, plus each distribution's missing share as its
-- own number '<distribution>.missing_rate' (n_missing / n_total), so missingness drifts
-- like any metric.
-- scalar_facts_of(fact_rows, sample_rows): the same from the rows of `facts` and `samples`
-- in the relations so named.
-- Shard: baseline_key.
CREATE OR REPLACE MACRO scalar_facts_of(fact_rows, sample_rows) AS TABLE
SELECT
    stage, view, target, symbol, baseline_key, run_id, run_started_at, cohort_id,
    metric, kind, value, value_text
FROM query_table(fact_rows)
UNION ALL
SELECT
    any_value(stage), any_value(view), any_value(target), any_value(symbol), baseline_key,
    run_id, any_value(run_started_at), any_value(cohort_id),
    distribution || '.missing_rate', 'number',
    CASE WHEN any_value(n_total) > 0 THEN any_value(n_missing) / any_value(n_total) END,
    CASE WHEN any_value(n_total) = 0 THEN 'nan' END
FROM query_table(sample_rows)
GROUP BY baseline_key, run_id, distribution;
