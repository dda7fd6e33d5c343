"""Generate a benchmark tree of R runs x C cohorts through the real pipeline path.

Every cohort-run is written by `metricsduck.ReproducibilityTracker.save_cohort` (the call a
training pipeline makes): the pipeline's metadata.json / metrics.json / audit_report.json,
`telemetry_metrics.parquet` + its JSON mirror `telemetry_metrics.json`, and
`telemetry_samples.parquet`. Runs are written in parallel over `--jobs` processes.

Fast mode (the default): the real writer renders every byte, but the final file write is
a plain `write_bytes` instead of metricsduck's atomic temp-file + fsync + rename (fsync of
6 files per cohort costs ~25 ms per cohort-run on this machine: 40+ minutes for 100,000).
`verify()` proves the result byte-identical: it rewrites a sample of cohort-runs with the
unmodified writer into a temp folder and compares every file's bytes (run.py calls it
before timing; `--verify N` here). `--real` writes with the unmodified writer throughout.

    python bench/generate.py --runs 20 --cohorts 5000 ROOT
    python bench/generate.py --add-run ROOT          # one more run on an existing tree

Shape of a tree with C cohorts (stage TARGET_RANKING): max(1, C // 100) CROSS_SECTIONAL
targets, the rest SYMBOL_SPECIFIC (target x symbol, up to 99 symbols per target). Each
cohort-run has 15 metrics (12 numbers incl. ints, 1 critical bool, 2 texts) and one
500-value distribution `oof_predictions` (a few NaN in some cohorts). Drift: per-run
relative noise (sd 1.5%, so a share of metrics WARN), ~2% of cohort-runs get a 10-30%
jump in one score, ~2% a shifted oof distribution, ~0.5% a flipped leakage_flag.
Deterministic: the same (runs, cohorts, seed) give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

STAGE = "TARGET_RANKING"
FIRST_RUN_STARTED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
RUN_SPACING = timedelta(days=1)
WRITE_DELAY = timedelta(hours=1)
N_OOF = 500
MANIFEST = "bench_tree.json"  # not a sidecar: no metricsduck glob matches it


def run_dir_name(run: int) -> str:
    return f"run_{run:03d}"


def run_id_of(run: int) -> str:
    return f"bench_run_{run:03d}"


def cohorts_of(n: int) -> list[tuple[str, str, str | None]]:
    """`(view, target, symbol)` of the n cohorts of a tree (same list for every run)."""
    n_targets = max(1, n // 100)
    targets = [f"y_will_swing_{'high' if i % 2 else 'low'}_{15 * (1 + i % 8)}m_{i:03d}"
               for i in range(n_targets)]
    out: list[tuple[str, str, str | None]] = [("CROSS_SECTIONAL", t, None) for t in targets][:n]
    s = 0
    while len(out) < n:
        for t in targets:
            if len(out) >= n:
                break
            out.append(("SYMBOL_SPECIFIC", t, f"S{s:04d}"))
        s += 1
    return out


def _rng(seed: int, *parts: object):
    import numpy as np

    text = "\0".join(str(p) for p in (seed, *parts))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little"))


def cohort_run(seed: int, index: int, cohort: tuple[str, str, str | None], run: int) -> tuple[dict, dict, dict, dict]:
    """`(metrics, samples, metadata, audit_report)` of one cohort in one run (1-based)."""
    import numpy as np

    symbol = cohort[2]
    base = _rng(seed, "cohort", index)
    mean_score = float(base.uniform(0.52, 0.72))
    values = {
        "mean_score": mean_score,
        "std_score": float(base.uniform(0.01, 0.04)),
        "mean_importance": float(base.uniform(0.005, 0.02)),
        "composite_score": mean_score * float(base.uniform(0.8, 0.9)),
        "pos_rate": float(base.uniform(0.05, 0.35)),
        "auc_oof": mean_score + float(base.uniform(-0.02, 0.02)),
        "logloss": float(base.uniform(0.4, 0.7)),
        "brier": float(base.uniform(0.15, 0.25)),
    }
    n_pre = int(base.integers(300, 600))
    n_post = int(base.integers(50, 200))
    n_eff = int(base.integers(150_000, 400_000) if symbol is None else base.integers(30_000, 80_000))
    a, b = float(base.uniform(1.5, 3.0)), float(base.uniform(3.0, 6.0))
    oof_base = base.beta(a, b, N_OOF)
    has_nan = bool(base.random() < 0.1)

    rng = _rng(seed, "run", index, run)
    noise = rng.normal(0.0, 0.015, len(values))
    values = {k: v * (1.0 + e) for (k, v), e in zip(values.items(), noise, strict=True)}
    if rng.random() < 0.02:  # a real jump in one score
        values["composite_score"] *= 1.0 - float(rng.uniform(0.1, 0.3))
    oof = oof_base + rng.normal(0.0, 0.01, N_OOF)
    if rng.random() < 0.02:  # a shifted prediction distribution
        oof = oof + float(rng.uniform(0.05, 0.2))
    oof = np.clip(oof, 0.0, 1.0)
    if has_nan:
        oof[rng.choice(N_OOF, size=int(rng.integers(1, 10)), replace=False)] = np.nan
    metrics = {
        **{k: round(v, 6) for k, v in values.items()},
        "n_models": 5,
        "leakage_flag": bool(rng.random() < 0.005),
        "n_features_pre": n_pre,
        "n_features_post_prune": n_post + int(rng.integers(-3, 4)),
        "N_effective_cs": n_eff,
        "metric_name": "roc_auc",
        "task_type": "binary_classification",
    }
    metadata = {
        "cohort_id": f"{'cr' if symbol is None else 'sy'}_2025Q1_{index:06d}",
        "date_start": "2025-01-02",
        "date_end": "2025-12-31",
        "N_effective": n_eff,
        "n_symbols": 99 if symbol is None else 1,
        "git_commit": "4f1c2ab" if run < 10 else "9d8e7f6",
        "config_hash": "c7e21a9f03b4",
        "data_fingerprint": hashlib.sha256(f"data\0{index}".encode()).hexdigest()[:16],
        "seed": 42,
        "good": True,
    }
    return metrics, {"oof_predictions": oof}, metadata, {"is_valid": True}


def _plain_write(path, data: bytes) -> bool:
    """The fast mode's file write: the same bytes, no temp file, no fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


class fast_writes:
    """Within this block the tracker and writer write files with `_plain_write`."""

    def __enter__(self):
        import metricsduck.tracker
        import metricsduck.writer

        self.saved = [(m, m.write_atomic) for m in (metricsduck.tracker, metricsduck.writer)
                      if hasattr(m, "write_atomic")]
        for module, _ in self.saved:
            module.write_atomic = _plain_write
        return self

    def __exit__(self, *exc):
        for module, original in self.saved:
            module.write_atomic = original


def _write_part(args: tuple[str, int, int, int, int, int, bool]) -> int:
    """Write cohorts [lo, hi) of one run; return how many."""
    root, run, n_cohorts, seed, lo, hi, fast = args
    if fast:
        with fast_writes():
            return _write_cohorts(root, run, n_cohorts, seed, range(lo, hi))
    return _write_cohorts(root, run, n_cohorts, seed, range(lo, hi))


def _write_cohorts(root: str, run: int, n_cohorts: int, seed: int, indexes) -> int:
    import metricsduck

    started = FIRST_RUN_STARTED_AT + (run - 1) * RUN_SPACING
    tracker = metricsduck.ReproducibilityTracker(
        Path(root) / run_dir_name(run), run_id=run_id_of(run), run_started_at=started)
    cohorts = cohorts_of(n_cohorts)
    count = 0
    for index in indexes:
        view, target, symbol = cohorts[index]
        metrics, samples, metadata, audit = cohort_run(seed, index, cohorts[index], run)
        tracker.save_cohort(STAGE, view, target, metrics, symbol=symbol, cohort_metadata=metadata,
                            samples=samples, audit_report=audit, written_at=started + WRITE_DELAY)
        count += 1
    return count


def verify(root: Path, sample: int = 20, seed: int = 1) -> int:
    """Rewrite `sample` random cohort-runs of the tree with the unmodified writer into a temp
    folder and compare every file byte for byte; raise SystemExit on any difference.
    Returns the number of files compared."""
    import random
    import tempfile

    m = read_manifest(root)
    rng = random.Random(seed)
    picks = sorted({(rng.randrange(1, m["runs"] + 1), rng.randrange(m["cohorts"])) for _ in range(sample)})
    compared = 0
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        for run, index in picks:
            _write_cohorts(tmp, run, m["cohorts"], m["seed"], [index])  # real write_atomic
        for ref in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            rel = ref.relative_to(tmp)
            mine = root / rel
            if not mine.is_file() or mine.read_bytes() != ref.read_bytes():
                raise SystemExit(f"generator check FAILED: {mine} differs from the real writer's bytes "
                                 "(a tree written by an earlier metricsduck? delete it to regenerate, or "
                                 "pass --verify 0 to measure it as it is)")
            compared += 1
    if compared < len(picks) * 6:
        raise SystemExit(f"generator check FAILED: expected {len(picks) * 6} files, compared {compared}")
    return compared


def write_runs(root: Path, runs: list[int], n_cohorts: int, seed: int, jobs: int,
               fast: bool = True) -> float:
    """Write `runs` (1-based numbers) of `n_cohorts` cohorts; return the seconds taken."""
    chunk = max(1, min(500, -(-n_cohorts // jobs)))
    tasks = [(str(root), run, n_cohorts, seed, lo, min(lo + chunk, n_cohorts), fast)
             for run in runs for lo in range(0, n_cohorts, chunk)]
    start = time.perf_counter()
    done = 0
    total = len(runs) * n_cohorts
    if jobs <= 1:
        for task in tasks:
            done += _write_part(task)
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            for n in pool.imap_unordered(_write_part, tasks):
                done += n
                if total >= 5000 and done % max(total // 10, 1) < n:
                    print(f"  generated {done}/{total} cohort-runs "
                          f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def write_manifest(root: Path, runs: int, cohorts: int, seed: int) -> None:
    (root / MANIFEST).write_text(json.dumps({"runs": runs, "cohorts": cohorts, "seed": seed}) + "\n")


def generate(root: Path, runs: int, cohorts: int, seed: int = 0, jobs: int = 2,
             fast: bool = True) -> float:
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SystemExit(f"{root} is not empty; use an empty folder (or --add-run)")
    seconds = write_runs(root, list(range(1, runs + 1)), cohorts, seed, jobs, fast)
    write_manifest(root, runs, cohorts, seed)
    return seconds


def add_run(root: Path, jobs: int = 2, fast: bool = True) -> tuple[str, float]:
    """Append run R+1 to a generated tree; return its run id and the seconds taken."""
    m = read_manifest(root)
    run = m["runs"] + 1
    seconds = write_runs(root, [run], m["cohorts"], m["seed"], jobs, fast)
    write_manifest(root, run, m["cohorts"], m["seed"])
    return run_id_of(run), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cohorts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="writer processes (default 2)")
    parser.add_argument("--add-run", action="store_true", help="append one run to an existing tree")
    parser.add_argument("--real", action="store_true",
                        help="write with metricsduck's atomic fsync'ing writes (slow)")
    parser.add_argument("--verify", type=int, default=20, metavar="N",
                        help="afterwards compare N random cohort-runs with the real writer (0: skip)")
    args = parser.parse_args(argv)
    fast = not args.real
    if args.add_run:
        run_id, seconds = add_run(args.root, args.jobs, fast)
        print(f"added {run_id} to {args.root} in {seconds:.1f} s")
    else:
        seconds = generate(args.root, args.runs, args.cohorts, args.seed, args.jobs, fast)
        n = args.runs * args.cohorts
        print(f"wrote {args.runs} runs x {args.cohorts} cohorts = {n} cohort-runs to {args.root} "
              f"in {seconds:.1f} s ({1000 * seconds / n:.2f} ms per cohort-run, {args.jobs} jobs, "
              f"{'fast' if fast else 'real'} writes)")
    if fast and args.verify:
        files = verify(args.root, args.verify)
        print(f"generator check: {files} files byte-identical to the real writer's")


if __name__ == "__main__":
    main()
