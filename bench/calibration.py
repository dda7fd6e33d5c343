"""How often distribution drift is flagged when nothing changed, and when something did.

Writes seeded trees of fresh random draws through the real writer: per sample size n,
`targets` cohorts x `distributions` distributions x 3 runs, runs 1 and 2 of N(0, 1)
values and run 3 of N(shift, 1), then reads `drift` through `metricsduck.connect` and
reports, per n, the share of comparisons that are WARN or worse: of run 3 (against run 2,
runs 1-2 pooled and run 2, the three baseline kinds) this is the power to see the shift,
or the false-positive rate at shift 0; run 2 against run 1 is always a no-change rate. The default config
decides (docs/design.md §5.4); `tests/test_alert_calibration.py` pins the acceptance figures
on a smaller tree.

With `--categorical` the distributions are text instead: categories a, b, c, d drawn with
shares 0.4, 0.3, 0.2, 0.1, and run 3 moves `shift` of the share from a to d (a shift of 0.1
is exactly drift.categorical.warn in L-infinity, 0.2 its threshold).

    .venv/bin/python bench/calibration.py [--targets 40] [--distributions 10] [--shift 0 0.5 1]
    .venv/bin/python bench/calibration.py --categorical --shift 0 0.1 0.2
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

SIZES = (10, 30, 50, 100, 300, 1000, 5000)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
CATEGORIES, SHARES = ("a", "b", "c", "d"), (0.4, 0.3, 0.2, 0.1)


def write_tree(root: Path, sizes: tuple[int, ...], targets: int, distributions: int, shift: float,
               seed: int = 0, categorical: bool = False) -> None:
    """Per n in `sizes`: `targets` cohorts (target `n<size>_<i>`) with `distributions`
    distributions of n values each, in runs run1, run2 (N(0, 1)) and run3 (N(shift, 1));
    `categorical`: categories with SHARES, run3's moved by `shift` from the first to the last."""
    import numpy as np

    from metricsduck import write_cohort_metrics

    rng = np.random.default_rng(seed)

    def draw(n: int, moved: float) -> object:
        if not categorical:
            return rng.normal(moved, 1.0, n)
        shares = np.array(SHARES) + np.array([-moved, 0.0, 0.0, moved])
        return rng.choice(CATEGORIES, n, p=shares).tolist()

    for run in (1, 2, 3):
        for n in sizes:
            for i in range(targets):
                moved = shift if run == 3 else 0.0
                write_cohort_metrics(
                    root / f"run{run}" / "REPRODUCIBILITY" / "CALIBRATION" / "CROSS_SECTIONAL" / f"n{n}_{i}"
                    / "cohort=c0",
                    run_id=f"run{run}", run_started_at=T0 + timedelta(days=run),
                    written_at=T0 + timedelta(days=run, hours=1),
                    stage="CALIBRATION", view="CROSS_SECTIONAL", target=f"n{n}_{i}",
                    metrics={"n": n}, good=True,
                    samples={f"d{j}": draw(n, moved) for j in range(distributions)},
                )


def flagged_shares(root: Path, runs: tuple[str, ...] = ("run3",)) -> dict[int, tuple[int, float]]:
    """n -> (comparisons, share WARN or worse) over the distribution rows of `runs` with
    values on both sides."""
    import metricsduck

    with metricsduck.connect(root) as store:
        rows = store.sql(
            "SELECT CAST(split_part(split_part(target, '_', 1), 'n', 2) AS INTEGER) AS size, count(*), "
            "avg(CASE WHEN tier_rank >= 1 THEN 1.0 ELSE 0.0 END) FROM drift "
            "WHERE item_kind = 'distribution' AND n > 0 AND m > 0 AND list_contains(?, run_id) "
            "GROUP BY size ORDER BY size", params=[list(runs)]).fetchall()
    return {size: (count, share) for size, count, share in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--distributions", type=int, default=10)
    parser.add_argument("--shift", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--categorical", action="store_true", help="text samples (shift: share moved)")
    args = parser.parse_args()
    print(f"{'shift':>5} {'n':>5} {'rows':>6} {'WARN+':>7}   (no change: run 2 vs run 1)")
    for shift in args.shift:
        with tempfile.TemporaryDirectory() as tmp:
            write_tree(Path(tmp), SIZES, args.targets, args.distributions, shift, categorical=args.categorical)
            control = flagged_shares(Path(tmp), ("run2",))
            for size, (count, share) in flagged_shares(Path(tmp)).items():
                print(f"{shift:>5} {size:>5} {count:>6} {share:>7.1%}   ({control[size][1]:.1%} of "
                      f"{control[size][0]})", flush=True)


if __name__ == "__main__":
    main()
