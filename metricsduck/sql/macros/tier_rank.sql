-- OK < WARN < ALERT as 0 < 1 < 2 (NULL when a row was not assessed).
CREATE OR REPLACE MACRO tier_rank(tier) AS
    CASE tier WHEN 'OK' THEN 0 WHEN 'WARN' THEN 1 WHEN 'ALERT' THEN 2 END;
