"""The vocabulary every part of metricsduck shares, spelled out once.

Tiers, baseline kinds, trend directions, rollup levels, item kinds, the fingerprint fields
a sanity check compares, and the schema ids that every artifact carries in its Parquet
metadata (`SCHEMA_METADATA_KEY`) and its JSON mirror (`schema`). The SQL spells the same
words; the tests hold the two equal.
"""

from __future__ import annotations

TIERS = ("OK", "WARN", "ALERT")  # in rank order: tier_rank is the index
BASELINE_KINDS = ("previous_run", "rolling", "last_good_run")
DIRECTIONS = ("increasing", "decreasing", "flat")
# A metric's good direction (drift.direction.<metric>): a change that way is IMPROVED, not
# an alert, and a trend that way is improving, the other way degrading.
GOOD_DIRECTIONS = ("higher_is_better", "lower_is_better", "both")
ASSESSMENTS = ("improving", "degrading")
LEVELS = ("stage", "view", "target", "symbol")  # rollup levels, top down
ITEM_KINDS = ("metric", "distribution")  # what a drift row compares
# The kind of a distribution row: numbers (PSI, KS) or text (compared by category).
DISTRIBUTION_KINDS = ("distribution", "categorical")
# The measures of `rollup_view`, in the order its definition computes them.
ROLLUP_MEASURES = (
    "cohorts", "targets", "symbols", "count", "mean", "std", "min", "p10", "median", "p90", "max",
    "tier_OK", "tier_WARN", "tier_ALERT", "alert_share", "population_psi", "population_ks_d", "worst_item",
)
# Fields both sides of a comparison carry; a difference labels it FINGERPRINT_MISMATCH.
FINGERPRINT_FIELDS = ("git_commit", "config_hash", "data_fingerprint", "seed")

SCHEMA_METADATA_KEY = b"metricsduck.schema"
METRICS_SCHEMA_ID = "metricsduck/metrics/v1"
SAMPLES_SCHEMA_ID = "metricsduck/samples/v1"
MARKS_SCHEMA_ID = "metricsduck/mark/v1"
DRIFT_SCHEMA_ID = "metricsduck/drift/v2"  # v2: evidence columns; LOW_N, INCONCLUSIVE, IMPROVED
TREND_SCHEMA_ID = "metricsduck/trend/v2"  # v2: good_direction, assessment
ROLLUP_VIEW_SCHEMA_ID = "metricsduck/rollup_view/v1"
ROLLUP_STAGE_SCHEMA_ID = "metricsduck/rollup_stage/v1"
# v2: samples segments carry value_text; a v1 cache (segments without it) is rebuilt, not read
MANIFEST_SCHEMA_ID = "metricsduck/cache-manifest/v2"
