-- The tier of a rank: 0 OK, 1 WARN, 2 ALERT (tier_rank's inverse; NULL for anything else).
CREATE OR REPLACE MACRO tier_name(rank) AS
    CASE rank WHEN 0 THEN 'OK' WHEN 1 THEN 'WARN' WHEN 2 THEN 'ALERT' END;
