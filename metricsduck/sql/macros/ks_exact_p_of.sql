-- ks_exact_p_of(triples): the exact two-sided p-value of the two-sample KS statistic,
-- P(D >= k / (n m)) for samples of n and m values without ties, one row per row (n, m, k)
-- of `triples` (k = n m D, a whole number): scipy.stats.ks_2samp(method="exact"). It
-- counts the lattice paths from (0, 0) to (a, b), a = min(n, m) steps on one side and
-- b = max(n, m) on the other, that stay strictly inside |i b - j a| < k (Hodges 1958):
-- row i + 1 of the lattice is the running sum, along j, of row i over the band of row
-- i + 1, so the recursion takes a steps; p = 1 - inside / C(n + m, n), and 1 for k = 0.
-- Counts are BIGNUM, exact: a double running sum would round differently with the other
-- triples that share its window partition, and the same pair would get other last bits in
-- another batch. The ratio is taken in doubles (C(n + m, n) from lgamma, rounded: exact
-- below about 1e12, else to 1e-13), finite while C(n + m, n) < 1.8e308 (n m <= 250,000;
-- drift.ks_exact_max is bounded by it).
-- Shard: n, m, k.
CREATE OR REPLACE MACRO ks_exact_p_of(triples) AS TABLE
WITH RECURSIVE
sides AS (
    SELECT DISTINCT n, m, k, least(n, m) AS a, greatest(n, m) AS b FROM query_table(triples)
),
lattice(n, m, k, a, b, i, j, paths) AS (
    SELECT n, m, k, a, b, 0, r.j, CAST(1 AS BIGNUM)
    FROM sides, range(0, b + 1) AS r(j)
    WHERE r.j * a < k
    UNION ALL
    SELECT n, m, k, a, b, i, j,
           sum(paths) OVER (PARTITION BY n, m, k ORDER BY j ROWS UNBOUNDED PRECEDING)
    FROM (
        -- row i + 1's band starts at or after row i's and may end further right: each cell
        -- of row i carries its count up, the last one also the empty cells up to the new end
        SELECT l.n, l.m, l.k, l.a, l.b, l.i + 1 AS i, step.j,
               CASE WHEN step.j = l.j THEN l.paths ELSE CAST(0 AS BIGNUM) END AS paths
        FROM lattice AS l,
             unnest(CASE WHEN l.j = least(l.b, (l.i * l.b + l.k - 1) // l.a)
                         THEN range(l.j, least(l.b, ((l.i + 1) * l.b + l.k - 1) // l.a) + 1)
                         ELSE [l.j] END) AS step(j)
        WHERE l.i < l.a
    )
    WHERE abs(i * b - j * a) < k
)
SELECT
    s.n, s.m, s.k,
    CASE WHEN s.k <= 0 THEN 1.0
         ELSE least(greatest(1 - coalesce(CAST(l.paths AS DOUBLE), 0)
                             / round(exp(lgamma(s.n + s.m + 1) - lgamma(s.n + 1) - lgamma(s.m + 1))), 0.0), 1.0)
    END AS p
FROM sides AS s
LEFT JOIN lattice AS l ON l.n = s.n AND l.m = s.m AND l.k = s.k AND l.i = s.a AND l.j = s.b;
