-- The tier of a magnitude: below warn_at OK, below alert_at WARN, else ALERT.
CREATE OR REPLACE MACRO tier_of(magnitude, warn_at, alert_at) AS
    CASE
        WHEN magnitude IS NULL THEN NULL
        WHEN magnitude < warn_at THEN 'OK'
        WHEN magnitude < alert_at THEN 'WARN'
        ELSE 'ALERT'
    END;
