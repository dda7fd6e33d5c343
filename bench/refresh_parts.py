"""Where a one-run refresh goes: add a run to a generated tree, refresh it with timers on
its parts, then remove the run again (and refresh, untimed, so the tree is as before).

    .venv/bin/python bench/refresh_parts.py /tmp/bench-trees/r20_c5000

The tree must come from `bench/generate.py` (see `bench/run.py --keep-outputs`). The parts
are functions of metricsduck wrapped with timers in this process; nested parts are shown
indented under the part that calls them, so a line's time includes the lines below it.
Run it with the same `METRICSDUCK_MEMORY_LIMIT` as the benchmark (8GB) to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate

RUNS = "refresh: drift of the runs + their files"
REST = "drift (the rest)"
# (module, function, label, depth): the connect parts, then the refresh parts
PARTS = [
    ("cache", "walk", "connect: stat walk of the tree", 1),
    ("cache", "_read_listing", "connect: read the manifest and drift index", 1),
    ("cache", "_stage_fresh", "connect: stage new and changed sidecars", 1),
    ("cache", "_bind", "connect: snapshot tables (facts_raw, cache_live)", 1),
    ("catalog", "apply_migration", "connect: the SQL files (views)", 1),
    ("catalog", "bind_drift", "connect: drift fingerprints, cached drift", 1),
    ("refresh", "stale_runs", "refresh: find stale runs (checks every run's outputs)", 1),
    ("refresh", "_refresh_runs", RUNS, 1),
    ("refresh", "_rollup_files", "rollup files", 2),
    ("refresh", "_cohort_files", "cohort files (drift, trends)", 2),
    (None, None, REST, 2),  # derived: the rest of the line above them
    ("cache", "stage_drift", "refresh: stage the drift rows for the cache", 1),
    ("refresh", "_publish", "refresh: publish the cache", 1),
]


def timed(totals: dict[str, float]) -> None:
    """Wrap every part with a timer adding to `totals[label]`."""
    import importlib

    for module_name, function, label, _ in PARTS:
        if module_name is None:
            continue
        module = importlib.import_module(f"metricsduck.{module_name}")
        real = getattr(module, function)

        def wrapper(*args, _real=real, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - start

        for holder in (module, *(importlib.import_module(f"metricsduck.{m}") for m in ("catalog", "refresh"))):
            if getattr(holder, function, None) is real:  # also where it was imported by name
                setattr(holder, function, wrapper)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    import metricsduck

    root = args.root
    manifest = generate.read_manifest(root)
    with contextlib.redirect_stderr(io.StringIO()):
        run_id, _ = generate.add_run(root)
    totals: dict[str, float] = {}
    timed(totals)
    try:
        start = time.perf_counter()
        store = metricsduck.connect(root)
        connected = time.perf_counter()
        summary = store.refresh()
        done = time.perf_counter()
        store.close()
    finally:
        shutil.rmtree(root / generate.run_dir_name(manifest["runs"] + 1), ignore_errors=True)
        generate.write_manifest(root, manifest["runs"], manifest["cohorts"], manifest["seed"])
    print(f"{root}: {manifest['runs']} runs of history + {run_id} ({manifest['cohorts']} cohorts); "
          f"{summary.written} files written")
    print(f"{'connect':58s} {connected - start:8.2f} s")
    print(f"{'refresh':58s} {done - connected:8.2f} s")
    files = ("rollup files", "cohort files (drift, trends)")
    totals[REST] = totals.get(RUNS, 0.0) - sum(totals.get(label, 0.0) for label in files)
    for _, _, label, depth in PARTS:
        if label in totals:
            print(f"{'  ' * depth}{label:{58 - 2 * depth}s} {totals[label]:8.2f} s")
    print(f"{'total':58s} {done - start:8.2f} s")
    with metricsduck.connect(root) as store:  # untimed: the tree as before the added run
        store.refresh()


if __name__ == "__main__":
    main()
