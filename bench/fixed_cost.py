"""The fixed cost of metricsduck: what a command costs before it has any real work to do.

Each command runs as a whole process (as a user's shell runs it), `--reps` times, on an
empty tree and on the refreshed demo tree (8 runs, 480 cohort-runs); reported are the
median and range of wall time and the median peak RSS. Then `connect` alone in a fresh
process: the first store of a process, and the next ones, on the empty tree, with the
built catalog (`catalog/built.py`) present and, for comparison on the same trees in the
same run, with it turned off (`METRICSDUCK_SQL_CACHE=`, every definition applied in memory).

    .venv/bin/python bench/fixed_cost.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

CONNECT = """
import sys, time
t0 = time.perf_counter()
import metricsduck
t1 = time.perf_counter()
metricsduck.connect(sys.argv[1]).close()
t2 = time.perf_counter()
later = []
for _ in range(5):
    t = time.perf_counter()
    metricsduck.connect(sys.argv[1]).close()
    later.append(time.perf_counter() - t)
later.sort()
print(t1 - t0, t2 - t1, later[2])
"""


def rusage_run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one process, reaped by os.wait4."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}): {err.read().strip()}")
        return wall, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="metricsduck-fixed-"))
    empty, demo, built = work / "empty", work / "demo", work / "built"
    empty.mkdir()
    env = {**os.environ, "METRICSDUCK_SQL_CACHE": str(built)}
    md = str(BIN / "metricsduck")
    rusage_run([md, "demo", str(demo), "--runs", "8", "--seed", "0"], env)
    rusage_run([md, "refresh", str(demo)], env)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    print(f"{'command':<48} {'tree':<6} {'median s':>9} {'min-max s':>13} {'peak MB':>8}")
    for command in (["--version"], ["status", "ROOT"], ["drift", "ROOT", "--run", "latest", "--tier", "ALERT"]):
        for label, root in (("empty", empty), ("demo", demo)):
            if command == ["--version"] and label == "demo":
                continue
            argv = [md, *(str(root) if part == "ROOT" else part for part in command)]
            runs = [rusage_run(argv, env) for _ in range(args.reps)]
            walls = sorted(r[0] for r in runs)
            print(f"{'metricsduck ' + ' '.join(command):<48} {label:<6} {statistics.median(walls):>9.3f} "
                  f"{walls[0]:>6.3f}-{walls[-1]:<6.3f} {statistics.median(r[1] for r in runs):>8.0f}")
    print()
    print(f"{'connect() in a fresh process':<48} {'tree':<6} {'import s':>9} {'first s':>8} {'next s':>8}")
    for label, cache in (("built catalog reused", str(built)), ("built catalog off", "")):
        for tree, root in (("empty", empty), ("demo", demo)):
            samples = []
            for _ in range(args.reps):
                _, _, out = rusage_run([sys.executable, "-c", CONNECT, str(root)],
                                       {**env, "METRICSDUCK_SQL_CACHE": cache})
                samples.append([float(x) for x in out.split()])
            imp, first, later = (statistics.median(s[i] for s in samples) for i in range(3))
            print(f"{label:<48} {tree:<6} {imp:>9.3f} {first:>8.3f} {later:>8.3f}")


if __name__ == "__main__":
    main()
