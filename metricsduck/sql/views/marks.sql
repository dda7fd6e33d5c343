-- The latest mark of each run made with `metricsduck mark` (marks are append-only files;
-- the newest marked_at wins, ties broken by file name).
-- Shard: broadcast.
CREATE OR REPLACE VIEW marks AS
SELECT run_id, good, reason, marked_at, source_file
FROM (
    SELECT
        *,
        row_number() OVER (PARTITION BY run_id ORDER BY marked_at DESC, source_file DESC) AS mark_rank
    FROM marks_raw
)
WHERE mark_rank = 1;
