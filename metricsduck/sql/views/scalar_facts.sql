-- The scalar inputs of drift: every fact, plus each distribution's missing share as its
-- own number '<distribution>.missing_rate' (n_missing / n_total), so missingness drifts
-- like any metric.
-- Shard: baseline_key.
CREATE OR REPLACE VIEW scalar_facts AS
SELECT * FROM scalar_facts_of('facts', 'samples');
