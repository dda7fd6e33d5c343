"""PSI bins and KS (`two_sample_bins`) of the current SQL against V004's, on synthetic comparisons.

    .venv/bin/python bench/two_sample.py                      # 1,000 comparisons, 3 repetitions
    .venv/bin/python bench/two_sample.py --pairs 5000 --baseline 5000 --current 500

Each comparison has `--current` values against `--baseline` values (a rolling baseline of
10 runs of 500 values is 5,000), drawn from a hash so every run sees the same numbers. Both
macros run in one process on one table; the rows must be equal (on V004's columns) before any
timing counts. Prints the median and range of each and the ratio V004 / current. The current
macro also computes the Wasserstein distance per comparison, which V004 did not.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time


def main() -> None:
    import metricsduck
    from metricsduck.catalog import packaged_sql_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--current", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    released = (packaged_sql_dir() / "history" / "two_sample_bins.V004.sql").read_text()
    v004 = re.search(r"CREATE OR REPLACE MACRO two_sample_bins\(source\) AS TABLE\n(.*?);\n", released, re.S).group(1)
    with tempfile.TemporaryDirectory() as empty, metricsduck.connect(empty) as store:
        store.con.sql(f"CREATE MACRO two_sample_bins_v004(source) AS TABLE\n{v004}")
        size = args.current + args.baseline
        store.con.sql(f"""
            CREATE TEMP TABLE comparisons AS
            SELECT p AS pair_id, 'score' AS distribution,
                   CASE WHEN i < {args.current} THEN 'current' ELSE 'baseline' END AS side,
                   (hash(p * {size} + i) % 1000003) / 1000003.0
                       + CASE WHEN i < {args.current} THEN 0.05 ELSE 0 END AS value
            FROM range({args.pairs}) AS r(p), range({size}) AS s(i)""")
        columns = ", ".join(store.con.sql("SELECT * FROM two_sample_bins_v004('comparisons') LIMIT 0").columns)
        query = f"SELECT {columns} FROM {{}}('comparisons') ORDER BY pair_id, distribution, bin"
        current = store.con.sql(query.format("two_sample_bins")).fetchall()
        if current != store.con.sql(query.format("two_sample_bins_v004")).fetchall():
            raise SystemExit("the current two_sample_bins and V004's differ: no timing")
        print(f"{args.pairs} comparisons of {args.current} current vs {args.baseline} baseline values "
              f"({args.pairs * size:,} rows), {len(current):,} bins, rows equal")
        timed = {}
        for name in ("two_sample_bins_v004", "two_sample_bins"):
            seconds = []
            for _ in range(args.reps):
                start = time.perf_counter()
                store.con.sql(f"SELECT count(*), sum(contribution), sum(ks_d) FROM {name}('comparisons')").fetchall()
                seconds.append(time.perf_counter() - start)
            timed[name] = statistics.median(seconds)
            print(f"  {name:22s} median {timed[name]:7.2f} s  [{min(seconds):.2f}-{max(seconds):.2f}]  n={args.reps}")
        print(f"  ratio V004 / current: {timed['two_sample_bins_v004'] / timed['two_sample_bins']:.2f}x")


if __name__ == "__main__":
    main()
