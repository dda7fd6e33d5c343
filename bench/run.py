"""metricsduck vs peers: previous_run drift over the whole history, side by side.

    .venv/bin/python bench/run.py --quick                       # smoke test: 2x100, 1 repetition
    .venv/bin/python bench/run.py                               # 2x5000, 20x500, 20x5000
    .venv/bin/python bench/run.py --scale 20x5000 --reps 3 --trees /tmp/bench-trees

Per scale (R runs x C cohorts): generate the tree (bench/generate.py, or reuse one with a
matching manifest), prove the generator byte-identical on a sample, then run every step
in a fresh subprocess (`run.py --step NAME ROOT`, which times its own work after imports
and reports rows; the parent polls /proc/<pid>/status for the peak RSS, VmHWM):

  floor            stat walk + read every sidecar's bytes once          (peers.floor), after one untimed
                   run of it (a warm page cache, as the other steps have)
  peer_a           per-cohort json + pyarrow + numpy/scipy              (peers.peer_a)
  peer_b           pyarrow.dataset -> pandas, groupby/shift, scipy      (peers.peer_b)
  md_cold          connect(root).drift(baseline='previous_run').arrow(), ROOT/.metricsduck/cache deleted first
  md_cold_read     connect(root, use_cache=False): the cold read alone, every sidecar read into the
                   snapshot (the cache is neither read nor touched)
  md_refresh_all   connect(root).refresh(all_runs=True)                 (= metricsduck refresh ROOT --all)
  md_warm          as md_cold, with the cache left by the refreshes
  md_warm_cached   as md_warm with connect(root, cached_only=True): the cache as of the last
                   refresh, no walk of the tree (= metricsduck drift ROOT --cached)
  md_refresh_newest connect(root).refresh(runs=[newest])                (= metricsduck refresh ROOT --run NEWEST)
  md_refresh_added one more run generated (untimed), then connect(root).refresh() (= metricsduck refresh ROOT);
                   afterwards (untimed) the added run is deleted and the tree refreshed again

Agreement is checked before the remaining repetitions: the first repetition of md_cold,
peer_a and peer_b dumps the rows of a sample of baseline keys (after its timer stopped)
and they must match exactly (status, tier, baseline run, n, m, delta, rel_delta, KS D;
PSI and KS p within 1e-12); any difference aborts the benchmark.

metricsduck's steps run with METRICSDUCK_MEMORY_LIMIT=--md-memory-limit (default 8GB), so
that DuckDB spills to disk before the parent's RSS limit (--mem-limit-gb) kills the step.

A step whose first repetition exceeds --timeout is killed and reported as such (not
retried); one whose first repetition takes more than --long seconds is not repeated
(reported with n=1). Results go to stdout as a table and to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PY = sys.executable
CACHE = Path(".metricsduck") / "cache"


# --- child: one step ---------------------------------------------------------------------

def sample_key(key: str, modulus: int) -> bool:
    return zlib.crc32(key.encode()) % modulus == 0


def _dump_rows(rows: dict, path: str, modulus: int) -> None:
    picked = {k: tuple(v) for k, v in rows.items() if sample_key(k[0], modulus)}
    with open(path, "wb") as handle:
        pickle.dump(picked, handle)


def run_step(step: str, root: str, dump: str | None, modulus: int) -> dict:
    import resource

    import numpy  # noqa: F401  imports are not timed, for every step alike
    import pyarrow
    import pyarrow.parquet

    result: dict = {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    if step in ("floor", "peer_a", "peer_b"):
        import pandas  # noqa: F401
        import pyarrow.dataset  # noqa: F401
        import scipy.stats  # noqa: F401

        import peers

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        start = time.perf_counter()
        out = getattr(peers, step)(root)
        result["seconds"] = time.perf_counter() - start
        if step == "floor":
            result.update(out)
        else:
            result["rows"] = len(out)
            if dump:
                _dump_rows(out, dump, modulus)
    else:
        import duckdb  # noqa: F401

        import metricsduck

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        start = time.perf_counter()
        store = metricsduck.connect(root, cached_only=step == "md_warm_cached",
                                    use_cache=step != "md_cold_read")
        connected = time.perf_counter()
        if step == "md_cold_read":
            result["seconds"] = connected - start
            result["sidecars"] = store.sql("SELECT (SELECT count(DISTINCT source_file) FROM facts_raw) + "
                                           "(SELECT count(DISTINCT source_file) FROM samples_raw)").fetchall()[0][0]
        elif step in ("md_cold", "md_warm", "md_warm_cached"):
            table = store.drift(baseline="previous_run").arrow()
            table = table.read_all() if hasattr(table, "read_all") else table
            result["seconds"] = time.perf_counter() - start
            result["connect_seconds"] = connected - start
            result["rows"] = table.num_rows
            if dump:
                import peers

                cols = ["baseline_key", "run_id", "item_kind", "item", "status", "tier", "baseline_run_id",
                        "delta", "rel_delta", "n", "m", "psi", "ks_d", "ks_p"]
                data = table.select(cols).to_pydict()
                rows = {}
                for values in zip(*(data[c] for c in cols), strict=True):
                    rows[values[:4]] = peers.Row(*values[4:])
                _dump_rows(rows, dump, modulus)
        else:
            if step == "md_refresh_all":
                summary = store.refresh(all_runs=True)
            elif step == "md_refresh_newest":
                newest = store.sql("SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1").fetchall()[0][0]
                summary = store.refresh(runs=[newest])
            elif step == "md_refresh_run":  # an explicit run: argv carries it in `dump`
                summary = store.refresh(runs=[dump])
                dump = None
            elif step == "md_refresh_added":
                summary = store.refresh()
            else:
                raise SystemExit(f"unknown step {step}")
            result["seconds"] = time.perf_counter() - start
            result["connect_seconds"] = connected - start
            result["refreshed_runs"] = len(summary.runs)
            result["cohorts"] = summary.cohorts
            result["written"] = summary.written
            result["unchanged"] = summary.unchanged
            result["failed"] = len(summary.failed)
        store.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds (all threads) of the whole step incl. the dump; robust to a busy machine
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu0
    result["maxrss_mb"] = usage.ru_maxrss / 1024
    return result


# --- parent: orchestration ---------------------------------------------------------------

def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


PACKAGE: str | None = None  # --package: a folder holding the metricsduck to measure
MEM_LIMIT_MB = 16 * 1024  # --mem-limit-gb
MD_MEMORY_LIMIT = "8GB"  # --md-memory-limit: METRICSDUCK_MEMORY_LIMIT of the metricsduck steps


def spawn(step: str, root: Path, timeout: float, dump: str | None = None, modulus: int = 50,
          log=None) -> dict:
    """Run one step in a fresh interpreter; return its report (or a killed/failed one)."""
    cmd = [PY, str(HERE / "run.py"), "--step", step, str(root), "--modulus", str(modulus)]
    if dump:
        cmd += ["--dump", dump]
    env = dict(os.environ)
    env["METRICSDUCK_MEMORY_LIMIT"] = MD_MEMORY_LIMIT
    if PACKAGE:
        env["PYTHONPATH"] = PACKAGE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd="/tmp")
    peak = 0.0
    killed = None
    while proc.poll() is None:
        hwm = _hwm_mb(proc.pid)
        if hwm:
            peak = max(peak, hwm)
        if time.perf_counter() - start > timeout:
            killed = f"killed after {timeout:.0f} s"
        elif peak > MEM_LIMIT_MB:
            killed = f"killed at {peak / 1024:.1f} GB RSS (limit {MEM_LIMIT_MB / 1024:.0f} GB)"
        if killed:
            proc.kill()
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    load = round(max(load_before, os.getloadavg()[0]), 1)
    if killed:
        return {"killed": True, "seconds": wall, "peak_mb": peak, "error": killed, "load": load}
    if proc.returncode != 0:
        return {"failed": True, "seconds": wall, "peak_mb": peak,
                "error": (err.strip().splitlines() or ["?"])[-1], "stderr": err[-3000:]}
    report = json.loads(out.strip().splitlines()[-1])
    report["peak_mb"] = max(peak, report.get("maxrss_mb", 0.0))
    report["process_seconds"] = wall
    report["load"] = load
    return report


def compare_dumps(reference: dict, other: dict, name: str) -> list[str]:
    """Differences between metricsduck's sampled rows and a peer's (empty: agreement)."""
    import peers

    problems = []
    if reference.keys() != other.keys():
        only_md = list(reference.keys() - other.keys())[:3]
        only_peer = list(other.keys() - reference.keys())[:3]
        problems.append(f"{name}: row keys differ (only metricsduck: {only_md}; only {name}: {only_peer})")
    for key in sorted(reference.keys() & other.keys()):
        a, b = peers.Row(*reference[key]), peers.Row(*other[key])
        exact = ("status", "tier", "baseline_run_id", "n", "m", "delta", "rel_delta", "ks_d")
        bad = [f for f in exact if getattr(a, f) != getattr(b, f)]
        for f in ("psi", "ks_p"):
            x, y = getattr(a, f), getattr(b, f)
            if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-12):
                bad.append(f)
        if bad:
            problems.append(f"{name}: {key}: {', '.join(bad)} differ: metricsduck {a} vs {name} {b}")
    return problems


def clean_outputs(root: Path) -> None:
    """Remove what refresh wrote and metricsduck's own folder (reusing a tree)."""
    shutil.rmtree(root / ".metricsduck", ignore_errors=True)
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(("telemetry_drift.", "telemetry_trend.", "telemetry_rollup.")):
                os.unlink(os.path.join(dirpath, name))


def prepare_tree(trees: Path, runs: int, cohorts: int, log, keep: bool = False) -> tuple[Path, float | None]:
    """The tree of `runs` x `cohorts` under `trees`: reused (its refresh outputs and cache
    removed, unless `keep`) when its manifest matches, else generated."""
    import generate

    root = trees / f"r{runs}_c{cohorts}"
    manifest = root / generate.MANIFEST
    if manifest.exists():
        m = generate.read_manifest(root)
        if m["cohorts"] == cohorts and m["runs"] >= runs:
            for extra in range(runs + 1, m["runs"] + 1):  # a leftover --add-run
                shutil.rmtree(root / generate.run_dir_name(extra), ignore_errors=True)
            generate.write_manifest(root, runs, cohorts, m["seed"])
            if keep:
                log(f"reusing {root} with its refresh outputs and cache (--keep-outputs)")
            else:
                log(f"reusing {root} (cleaning refresh outputs)")
                clean_outputs(root)
            return root, None
        shutil.rmtree(root)
    log(f"generating {runs} x {cohorts} into {root}")
    seconds = generate.generate(root, runs, cohorts)
    return root, seconds


def summarise(reports: list[dict]) -> dict:
    ok = [r for r in reports if not r.get("killed") and not r.get("failed")]
    out = {"n": len(ok), "reports": reports}
    if ok:
        secs = [r["seconds"] for r in ok]
        out.update(median=statistics.median(secs), min=min(secs), max=max(secs),
                   cpu_median=statistics.median(r["cpu_seconds"] for r in ok),
                   load_max=max(r.get("load", 0) for r in ok),
                   peak_mb=max(r["peak_mb"] for r in ok))
        if all("connect_seconds" in r for r in ok):
            out["connect_median"] = statistics.median(r["connect_seconds"] for r in ok)
    bad = [r for r in reports if r.get("killed") or r.get("failed")]
    if bad:
        out["error"] = bad[0]["error"]
        out["peak_mb_failed"] = max(r["peak_mb"] for r in bad)
        out["seconds_failed"] = bad[0]["seconds"]
    return out


def bench_scale(runs: int, cohorts: int, args, log) -> dict:
    import generate

    result: dict = {"runs": runs, "cohorts": cohorts, "cohort_runs": runs * cohorts, "steps": {}}
    root, gen_seconds = prepare_tree(args.trees, runs, cohorts, log, args.keep_outputs)
    result["root"] = str(root)
    result["generate_seconds"] = gen_seconds
    files = generate.verify(root, args.verify)
    log(f"generator check: {files} files byte-identical to the real writer's")
    result["verified_files"] = files
    modulus = max(1, min(50, (runs * cohorts) // 2000))
    steps: dict[str, list[dict]] = {}

    def timed(step: str, reps: int, before=None, after=None, dump: str | None = None) -> None:
        reports = steps.setdefault(step, [])
        for rep in range(reps):
            if before:
                before()
            report = spawn(step, root, args.timeout, dump if rep == 0 and not reports else None, modulus)
            reports.append(report)
            state = ("KILLED " if report.get("killed") else "FAILED " if report.get("failed") else "")
            log(f"  {step:18s} rep {len(reports)}: {state}{report['seconds']:8.2f} s  "
                f"peak {report['peak_mb']:7.0f} MB  "
                + " ".join(f"{k}={v}" for k, v in report.items()
                           if k in ("cpu_seconds", "load", "rows", "files", "connect_seconds",
                                    "refreshed_runs", "cohorts", "written")))
            if report.get("failed"):
                log(report.get("stderr", ""))
            if after:
                after()
            if report.get("killed") or report.get("failed"):
                break
            if report["seconds"] > args.long:
                break

    def drop_cache() -> None:
        shutil.rmtree(root / CACHE, ignore_errors=True)

    warmed: list[bool] = []

    def warm_page_cache() -> None:
        """Once per tree: an untimed floor, so the floor is timed on a warm page cache as the
        other steps are. After another tree's steps its first repetition read the disk
        (137.85 s against 10.20 s at 20x5000), and one over --long is not repeated."""
        if not warmed:
            spawn("floor", root, args.timeout)
            warmed.append(True)

    # refresh after one more run is added: generate it (untimed), refresh, remove it again
    added = []
    m = generate.read_manifest(root)

    def add() -> None:
        run_id, seconds = generate.add_run(root)
        added.append((run_id, seconds))

    def remove() -> None:
        shutil.rmtree(root / generate.run_dir_name(m["runs"] + 1), ignore_errors=True)
        generate.write_manifest(root, m["runs"], m["cohorts"], m["seed"])
        spawn("md_refresh_added", root, args.timeout)  # untimed: back in step with the tree

    if args.only:  # these steps alone, in this order, without the agreement check
        hooks = {"md_cold": {"before": drop_cache}, "md_refresh_added": {"before": add, "after": remove},
                 "floor": {"before": warm_page_cache}}
        for step in args.only:
            timed(step, args.reps, **hooks.get(step, {}))
        result["add_run_generate_seconds"] = [s for _, s in added]
        result["steps"] = {k: summarise(v) for k, v in steps.items()}
        return result

    # 1. the first repetitions, with the agreement check
    dumps = {name: str(args.trees / f".dump_{name}_{runs}x{cohorts}.pkl") for name in ("md", "a", "b")}
    timed("md_cold", 1, before=drop_cache, dump=dumps["md"])
    timed("peer_a", 1, dump=dumps["a"])
    timed("peer_b", 1, dump=dumps["b"])
    problems: list[str] = []
    if any(steps[s][0].get("killed") or steps[s][0].get("failed") for s in ("md_cold", "peer_a", "peer_b")):
        problems.append("a step of the agreement check did not finish; nothing to compare")
        result["agreement"] = {"checked": False, "problems": problems}
    else:
        loaded = {}
        for name, path in dumps.items():
            with open(path, "rb") as handle:
                loaded[name] = pickle.load(handle)
            os.unlink(path)
        problems = (compare_dumps(loaded["md"], loaded["a"], "peer A")
                    + compare_dumps(loaded["md"], loaded["b"], "peer B"))
        tiers: dict[str, int] = {}
        for key, row in loaded["md"].items():
            label = f"{key[2]}:{row[0]}:{row[1]}"
            tiers[label] = tiers.get(label, 0) + 1
        result["agreement"] = {"checked": True, "rows": len(loaded["md"]),
                               "keys": len({k[0] for k in loaded["md"]}), "problems": problems,
                               "sample": tiers}
        log(f"agreement: {len(loaded['md'])} sampled rows ({result['agreement']['keys']} baseline keys): "
            + ("OK, identical" if not problems else f"{len(problems)} DIFFERENCES"))
        for p in problems[:20]:
            log("  " + p)
        if problems:
            result["steps"] = {k: summarise(v) for k, v in steps.items()}
            raise SystemExit("agreement check FAILED: metricsduck and a peer compute different rows")

    # 2. the remaining repetitions
    reps = args.reps
    timed("floor", reps, before=warm_page_cache)
    timed("md_cold_read", reps)
    for step in ("peer_a", "peer_b"):
        if steps[step][-1].get("seconds", 0) <= args.long and not steps[step][-1].get("killed"):
            timed(step, reps - 1)
    if steps["md_cold"][-1].get("killed") or steps["md_cold"][-1].get("failed"):
        # the drift query itself did not finish: every refresh computes it too, so only the
        # one-run refresh is tried (once); the rest would only burn the timeout again
        log("  md_cold did not finish: trying md_refresh_newest once, skipping the other metricsduck steps")
        timed("md_refresh_newest", 1)
        result["skipped"] = ["md_refresh_all", "md_warm", "md_refresh_added"]
        result["steps"] = {k: summarise(v) for k, v in steps.items()}
        return result
    if steps["md_cold"][-1].get("seconds", 0) <= args.long:
        timed("md_cold", reps - 1, before=drop_cache)
    timed("md_refresh_all", reps)
    full_refresh = not any(r.get("killed") or r.get("failed") for r in steps["md_refresh_all"])
    timed("md_warm", reps)
    timed("md_warm_cached", reps)
    timed("md_refresh_newest", reps)

    if full_refresh:
        timed("md_refresh_added", reps, before=add, after=remove)
    else:
        log("  md_refresh_added   skipped: refresh --all did not finish, so `refresh` would redo old runs")
    result["add_run_generate_seconds"] = [s for _, s in added]
    result["steps"] = {k: summarise(v) for k, v in steps.items()}
    return result


# --- reporting -----------------------------------------------------------------------------

LABELS = {
    "md_cold": "metricsduck drift, cold (no cache)",
    "md_cold_read": "metricsduck cold read (connect, no cache)",
    "md_warm": "metricsduck drift, warm (after refresh)",
    "md_warm_cached": "metricsduck drift, warm, --cached (no walk)",
    "md_refresh_newest": "metricsduck refresh --run NEWEST",
    "md_refresh_added": "metricsduck refresh, one run added",
    "md_refresh_all": "metricsduck refresh --all",
    "peer_a": "peer A (json per cohort + numpy/scipy)",
    "peer_b": "peer B (pyarrow.dataset + pandas + scipy)",
    "floor": "floor (stat walk + read sidecar bytes)",
}
ORDER = ["md_cold", "md_cold_read", "md_warm", "md_warm_cached", "md_refresh_newest", "md_refresh_added",
         "md_refresh_all", "peer_a", "peer_b", "floor"]


def fmt_step(s: dict | None) -> str:
    if not s:
        return "—"
    if s.get("n", 0) == 0:
        what = "killed" if "killed" in s.get("error", "") else "failed"
        return f"{what} at {s['seconds_failed']:.0f} s, peak {s['peak_mb_failed'] / 1024:.1f} GB"
    spread = f" [{s['min']:.2f}–{s['max']:.2f}]" if s["n"] > 1 else ""
    return (f"{s['median']:.2f} s{spread} n={s['n']}; cpu {s['cpu_median']:.1f} s; "
            f"{s['peak_mb']:.0f} MB; load ≤{s['load_max']:.0f}")


def ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or "median" not in a or "median" not in b or a["median"] == 0:
        return "—"
    return f"{b['median'] / a['median']:.2f}×"


def table(results: list[dict]) -> str:
    lines = []
    head = "| step | " + " | ".join(f"{r['runs']}×{r['cohorts']} ({r['cohort_runs']:,} cohort-runs)"
                                   for r in results) + " |"
    lines += [head, "|---|" + "---|" * len(results)]
    for step in ORDER:
        lines.append(f"| {LABELS[step]} | " + " | ".join(fmt_step(r["steps"].get(step)) for r in results) + " |")
    lines += ["", "| ratio | " + " | ".join(f"{r['runs']}×{r['cohorts']}" for r in results) + " |",
              "|---|" + "---|" * len(results)]
    rows = [
        ("peer A / metricsduck warm (target ≥ 50×)", "md_warm", "peer_a"),
        ("peer B / metricsduck warm (target ≥ 20×)", "md_warm", "peer_b"),
        ("peer A / metricsduck warm --cached", "md_warm_cached", "peer_a"),
        ("peer B / metricsduck warm --cached", "md_warm_cached", "peer_b"),
        ("peer A / metricsduck cold", "md_cold", "peer_a"),
        ("peer B / metricsduck cold", "md_cold", "peer_b"),
        ("metricsduck cold (read and compute) / floor", "floor", "md_cold"),
    ]
    for label, a, b in rows:
        lines.append(f"| {label} | " + " | ".join(ratio(r["steps"].get(a), r["steps"].get(b)) for r in results) + " |")
    # the cold read alone: md_cold_read, else the connect of md_cold (both read every sidecar)
    def cold_read(r: dict) -> float | None:
        return r["steps"].get("md_cold_read", {}).get("median") or r["steps"].get("md_cold", {}).get("connect_median")

    lines.append("| metricsduck cold read / floor (target ≤ 3×) | " + " | ".join(
        f"{cold_read(r) / r['steps']['floor']['median']:.2f}×"
        if cold_read(r) and r["steps"].get("floor", {}).get("median") else "—" for r in results) + " |")
    # refresh(20 runs) / refresh(2 runs) at the same cohort count
    by = {(r["runs"], r["cohorts"]): r for r in results}
    extra = []
    for (runs, cohorts), r in sorted(by.items()):
        for (runs2, cohorts2), r2 in sorted(by.items()):
            if cohorts2 == cohorts and runs2 > runs:
                for step in ("md_refresh_added", "md_refresh_newest"):
                    extra.append(f"- {step}: {runs2} runs / {runs} runs at {cohorts} cohorts (target ≤ 1.5×): "
                                 f"{ratio(r['steps'].get(step), r2['steps'].get(step))}")
    if extra:
        lines += [""] + extra
    return "\n".join(lines)


def snapshot_package(dest: Path) -> str:
    src = HERE.parent / "metricsduck"
    shutil.copytree(src, dest / "metricsduck", ignore=shutil.ignore_patterns("__pycache__"))
    return str(dest)


def package_digest(folder: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(folder, "metricsduck").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine(args_package_given: bool = False) -> dict:
    import duckdb
    import numpy
    import pandas
    import pyarrow
    import scipy

    mem = "?"
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "metricsduck"], cwd=HERE.parent,
                           capture_output=True, text=True).stdout.strip()
    return {
        "package": PACKAGE, "package_sha256": package_digest(PACKAGE) if PACKAGE else None,
        "nproc": os.cpu_count(), "cpu": cpu, "ram": mem, "python": sys.version.split()[0],
        "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__, "numpy": numpy.__version__,
        "pandas": pandas.__version__, "scipy": scipy.__version__,
        "commit": commit + (" with uncommitted changes in metricsduck/" if dirty else "")
                  + ("" if args_package_given else " (snapshot of the working tree at start)"),
        "dirty_files": dirty.splitlines(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--modulus", type=int, default=50, help=argparse.SUPPRESS)
    parser.add_argument("--scale", action="append", metavar="RxC",
                        help="runs x cohorts, repeatable (default: 2x5000, 20x500, 20x5000)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2x100, 1 repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trees", type=Path, default=Path("/tmp/bench-trees"),
                        help="where trees are generated and reused (default /tmp/bench-trees)")
    parser.add_argument("--timeout", type=float, default=600.0, help="kill a step after this many seconds")
    parser.add_argument("--long", type=float, default=120.0,
                        help="do not repeat a step whose first repetition took longer")
    parser.add_argument("--verify", type=int, default=20, help="cohort-runs compared with the real writer")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--package", type=Path,
                        help="measure the metricsduck package found in this folder (put first on "
                             "PYTHONPATH of every step), e.g. a `git archive` of a commit")
    parser.add_argument("--mem-limit-gb", type=float, default=12.0,
                        help="kill a step whose RSS exceeds this (default 12)")
    parser.add_argument("--only", type=lambda text: text.split(","), metavar="STEP,...",
                        help="run only these steps, in this order, without the agreement check "
                             "(e.g. md_refresh_all,md_warm,md_warm_cached)")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="reuse a tree's refresh outputs and cache instead of cleaning them, so that "
                             "--only md_warm or md_refresh_added need no md_refresh_all first (they must "
                             "come from a refresh with the same SQL and config, or the next refresh "
                             "redoes the whole history)")
    parser.add_argument("--md-memory-limit", default="8GB",
                        help="METRICSDUCK_MEMORY_LIMIT of metricsduck's steps (default 8GB)")
    parser.add_argument("--table-from", type=Path, metavar="JSON", help="print the table of a --json file")
    args = parser.parse_args(argv)
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())["results"]))
        return
    global PACKAGE, MEM_LIMIT_MB, MD_MEMORY_LIMIT
    MEM_LIMIT_MB = args.mem_limit_gb * 1024
    MD_MEMORY_LIMIT = args.md_memory_limit
    if args.step:
        print(json.dumps(run_step(args.step, args.root, args.dump, args.modulus)))
        return
    if args.package:
        PACKAGE = str(args.package.resolve())
    else:
        # the package as it is now, so that edits made while the benchmark runs change nothing
        PACKAGE = snapshot_package(Path(args.trees).resolve() / f"pkg-{time.strftime('%Y%m%d-%H%M%S')}")

    if args.quick:
        scales = [(2, 100)]
        args.reps = 1
        args.verify = min(args.verify, 5)
        args.trees = args.trees / "quick" if args.trees == Path("/tmp/bench-trees") else args.trees
    else:
        scales = [tuple(int(x) for x in s.lower().split("x")) for s in (args.scale or ["2x5000", "20x500", "20x5000"])]
    args.trees = args.trees.resolve()
    args.trees.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    info = machine(bool(args.package))
    log(f"machine: {info}")
    results = []
    try:
        for runs, cohorts in scales:
            log(f"== {runs} runs x {cohorts} cohorts ==")
            results.append(bench_scale(runs, cohorts, args, log))
            if args.json:
                args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1, default=str))
    finally:
        if results:
            print(table(results))
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
