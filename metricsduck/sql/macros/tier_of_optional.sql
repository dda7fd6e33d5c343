-- The tier of a magnitude against thresholds that are off at 0: from alert_at (when above 0)
-- ALERT, from warn_at (when above 0) WARN, else OK (also for a NULL magnitude).
CREATE OR REPLACE MACRO tier_of_optional(magnitude, warn_at, alert_at) AS
    CASE
        WHEN alert_at > 0 AND magnitude >= alert_at THEN 'ALERT'
        WHEN warn_at > 0 AND magnitude >= warn_at THEN 'WARN'
        ELSE 'OK'
    END;
