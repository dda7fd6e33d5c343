-- The baseline kinds enabled in the config, one row each (rolling is always on; its
-- window is baselines.rolling_window_k).
-- Shard: broadcast.
CREATE OR REPLACE VIEW baseline_kinds AS
SELECT k.baseline_kind
FROM settings_wide AS cfg,
    (VALUES ('previous_run'), ('rolling'), ('last_good_run')) AS k(baseline_kind)
WHERE (k.baseline_kind <> 'previous_run' OR cfg.previous_run)
  AND (k.baseline_kind <> 'last_good_run' OR cfg.last_good_run);
