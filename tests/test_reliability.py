"""Concurrent writers, crashes and unwritable outputs (docs/reliability.md, faults 4, 5 and 9).

Everything here uses real processes and real files: writers and refreshes run as
subprocesses, crashes are SIGKILLs, and a full disk is an `os.replace` that raises ENOSPC
(or a folder standing where a file must go: root ignores permission bits, so a read-only
folder cannot be simulated with chmod). The numbers each test measures are printed; run
with `-s` to see them (docs/reliability.md quotes them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main
from metricsduck.files import parquet_bytes, write_atomic
from metricsduck.refresh import refresh_lock

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
OUTPUT_NAMES = ("telemetry_drift", "telemetry_trend", "telemetry_rollup")


def cli_command() -> list[str]:
    """The installed `metricsduck` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("metricsduck")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from metricsduck.cli import main; "
            "sys.argv[0] = 'metricsduck'; main()"]


def temp_files(root: Path) -> list[Path]:
    """Every write_atomic temporary (`.<name>.<random>.tmp`) under `root`, hidden ones included."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root)
                  for name in names if name.endswith(".tmp"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """relative path -> bytes of every visible file (the cache folder and temporaries excluded)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                path = Path(folder) / name
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def is_output(relative: str) -> bool:
    return Path(relative).name.split(".")[0] in OUTPUT_NAMES


def assert_complete(path: Path) -> None:
    """A whole file: Parquet that pyarrow reads in full, or JSON that parses."""
    if path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix == ".json":
        json.loads(path.read_bytes())


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


# --- a small tree with refresh work pending ---------------------------------------------

def cohort_folder(root: Path, run: int, target: str) -> Path:
    return root / f"run{run}" / "REPRODUCIBILITY" / "TR" / "CROSS_SECTIONAL" / target / "cohort=c"


def write_run(root: Path, run: int, shift: float = 0.0, hours: int = 1) -> None:
    for target in "abcde":
        metricsduck.write_cohort_metrics(
            cohort_folder(root, run, target), run_id=f"run{run}",
            run_started_at=START + timedelta(days=run), written_at=START + timedelta(days=run, hours=hours),
            stage="TR", view="CROSS_SECTIONAL", target=target,
            metrics={"score": 0.5 + 0.01 * run + shift, "name": "auc"},
            samples={"p": [0.1 * i + 0.01 * run + shift for i in range(30)]})


@pytest.fixture(scope="module")
def pending(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], dict[str, bytes], int]:
    """A refreshed tree whose inputs changed since, and what a complete refresh makes of it.

    Runs 0-3 of targets a-e are written and refreshed; then run 3 is rerun with new values
    (its outputs must change) and run 4 is added (its outputs are new). Returns the tree (copy
    it before use), its bytes, the bytes after a complete refresh, and how many files that
    refresh writes.
    """
    base = tmp_path_factory.mktemp("pending") / "tree"
    for run in range(4):
        write_run(base, run)
    with metricsduck.connect(base) as store:
        assert store.refresh().failed == []
    write_run(base, 3, shift=0.2, hours=2)
    write_run(base, 4)
    reference = base.parent / "reference"
    shutil.copytree(base, reference)  # copy2 keeps the mtimes the stale check reads
    with metricsduck.connect(reference) as store:
        summary = store.refresh()
    assert summary.failed == [] and summary.runs == ["run3", "run4"]
    return base, tree_bytes(base), tree_bytes(reference), summary.written


# --- 4. concurrent writers -----------------------------------------------------------------

WRITERS = 4
COHORTS_PER_WRITER = 40
RUNS = 5  # each writer writes its 8 targets for run 0, then for run 1, and so on
SAMPLES = 50

WRITER = f"""
import json, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
import metricsduck

root, writer, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
start = datetime(2026, 3, 2, tzinfo=timezone.utc)
per_run = count // {RUNS}
cohorts, rows = [], 0
for index in range(count):
    # halfway, wait until the parent says a refresh has read the tree mid-write (so that one
    # surely does): it writes "go" to our stdin; an empty read means the parent is gone
    if index == count // 2 and sys.stdin.readline() != "go\\n":
        sys.exit("the gate closed before a refresh read the tree mid-write")
    run, target = index // per_run, f"w{{writer}}_t{{index % per_run}}"
    n = 2 + index % 4  # 2..5 metric rows; n_metrics lets a reader check it saw them all
    metrics = {{"n_metrics": n, **{{f"m{{j}}": writer + index / 100 + j for j in range(n - 1)}}}}
    folder = root / f"run{{run}}" / "REPRODUCIBILITY" / "TR" / "CROSS_SECTIONAL" / target / "cohort=c"
    metricsduck.write_cohort_metrics(
        folder, run_id=f"run{{run}}", run_started_at=start + timedelta(days=run),
        stage="TR", view="CROSS_SECTIONAL", target=target, metrics=metrics,
        samples={{"p": [((index * 7 + j) % 50) / 50 for j in range({SAMPLES})]}})
    cohorts.append([f"run{{run}}", target])
    rows += n
    time.sleep(0.03)  # a pipeline does some work between cohorts (pacing only: no check relies on it)
print(json.dumps({{"cohorts": cohorts, "fact_rows": rows}}))
"""

# A cohort-run a reader must never see: metric rows missing (a partial facts file), or its
# samples missing although the samples file is written before the facts file.
TORN = f"""
SELECT cr.baseline_key, cr.run_id, cr.n_metrics, f.value, s.n
FROM cohort_runs AS cr
LEFT JOIN facts AS f ON f.baseline_key = cr.baseline_key AND f.run_id = cr.run_id
                     AND f.metric = 'n_metrics'
LEFT JOIN (SELECT baseline_key, run_id, count(*) AS n FROM samples GROUP BY ALL) AS s
       ON s.baseline_key = cr.baseline_key AND s.run_id = cr.run_id
WHERE f.value IS DISTINCT FROM cr.n_metrics OR s.n IS DISTINCT FROM {SAMPLES}
"""
TWICE = ("SELECT baseline_key, run_id FROM facts_raw GROUP BY ALL "
         "HAVING count(DISTINCT source_file) <> 1")


class RawReader(threading.Thread):
    """Reads every facts and samples sidecar with one bare DuckDB `read_parquet`, over and
    over: no bad-file isolation, so a single partial file would fail the read."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.reads, self.errors = root, 0, []
        self.done = threading.Event()

    def run(self) -> None:
        import duckdb

        con = duckdb.connect()
        try:
            while not self.done.wait(0.02):
                for name in ("telemetry_metrics.parquet", "telemetry_samples.parquet"):
                    pattern = f"{self.root}/**/{name}"
                    files = [r[0] for r in con.execute("SELECT file FROM glob(?)", [pattern]).fetchall()]
                    if files:
                        con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchall()
                        self.reads += 1
        except Exception as exc:  # noqa: BLE001 - any failure is reported by the test, not lost in the thread
            self.errors.append(repr(exc))
        finally:
            con.close()

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def open_gate(writers: list[subprocess.Popen]) -> None:
    """Let every writer past its halfway point (a writer that died is reported by its exit code)."""
    for w in writers:
        with contextlib.suppress(BrokenPipeError):
            w.stdin.write("go\n")
            w.stdin.flush()


@pytest.mark.slow
def test_concurrent_writers_while_refresh_loops(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()  # the refresh loop may start before the first writer made it
    total = WRITERS * COHORTS_PER_WRITER
    started = time.monotonic()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(w), str(COHORTS_PER_WRITER)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(WRITERS)
    ]
    seen: list[int] = []  # cohort-runs in each refresh's snapshot
    during, gate_open = 0, False
    raw = RawReader(root)
    raw.start()
    try:
        while True:
            # a failure guard only: the writers stop halfway until a refresh sees them there
            assert time.monotonic() - started < 600, f"writers still running after 600 s; seen {seen}"
            running = any(w.poll() is None for w in writers)
            # nothing is caught: a refresh must not fail while files appear
            with metricsduck.connect(root) as store:
                summary = store.refresh()
                assert summary.failed == []
                assert store.bad_files() == []
                assert store.sql(TORN).fetchall() == []
                assert store.sql(TWICE).fetchall() == []
                seen.append(store.sql("SELECT count(*) FROM cohort_runs").fetchall()[0][0])
            if 0 < seen[-1] < total and not gate_open:
                open_gate(writers)
                gate_open = True
            during += running
            if not running:
                break  # this last refresh read the tree after every writer had finished
    finally:
        raw.stop()
        for w in writers:
            kill(w)
    wall = time.monotonic() - started
    assert raw.errors == []  # DuckDB reading the bare glob never met a partial file either

    reports = []
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0, err
        reports.append(json.loads(out))
    written = [tuple(c) for r in reports for c in r["cohorts"]]
    rows_in = sum(r["fact_rows"] for r in reports)

    with metricsduck.connect(root) as store:
        read = store.sql("SELECT run_id, target FROM cohort_runs").fetchall()
        rows_out = store.sql("SELECT count(*) FROM facts").fetchall()[0][0]
        rows_raw = store.sql("SELECT count(*) FROM facts_raw").fetchall()[0][0]
        assert store.bad_files() == []
        again = store.refresh()
    left = temp_files(root)

    assert len(written) == total == len(set(written))
    assert sorted(read) == sorted(written)  # every cohort present, exactly once
    assert rows_in == rows_out == rows_raw
    assert left == []
    assert again.runs == [] and again.written == 0  # the last refresh reconciled everything
    assert any(0 < n < total for n in seen)  # a refresh read the tree mid-write
    print(f"\n[concurrency] writers={WRITERS} cohorts_written={len(written)} cohorts_read={len(read)} "
          f"fact_rows_in={rows_in} fact_rows_out={rows_out} files_left_behind={len(left)} "
          f"refreshes={len(seen)} (started during writes: {during}; cohort-runs seen: {seen}) "
          f"raw_glob_reads={raw.reads} wall={wall:.1f}s")


def test_a_cohort_rewritten_during_a_refresh_is_refreshed_again_by_the_next_one(pending, tmp_path: Path) -> None:
    base, _, _, _ = pending
    root = tmp_path / "tree"
    shutil.copytree(base, root)
    with metricsduck.connect(root) as store:  # the snapshot holds run 3 as the fixture rewrote it
        write_run(root, 3, shift=0.4, hours=3)  # a pipeline reruns run 3 again, mid-refresh
        assert store.refresh().failed == []
    with metricsduck.connect(root) as store:
        store.refresh()  # the next plain refresh
        assert store.refresh(all_runs=True).written == 0


# --- 5. crashes ----------------------------------------------------------------------------

CRASH_COHORTS = ("a", "b", "c")
CRASH_SAMPLES = 3000

# Rewrites the same cohorts over and over, every round i with new values: i, 2i, -i, written
# at START + i seconds, samples in [i, i + 0.3). Says "ready" once imported, and "renamed
# <file>" after each file it renames into place (each cohort: samples, metrics, mirror), then
# carries on without waiting; stops after `rounds` rounds if given, else runs until killed.
REWRITER = f"""
import itertools, os, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
import metricsduck

real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    print("renamed", os.path.basename(dst), flush=True)

os.replace = replace
root, base = Path(sys.argv[1]), int(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else None
start = datetime(2026, 3, 2, tzinfo=timezone.utc)
print("ready", flush=True)
for i in itertools.count(base):
    if rounds is not None and i >= base + rounds:
        break
    for target in {CRASH_COHORTS!r}:
        metricsduck.write_cohort_metrics(
            root / "run" / "TR" / "CROSS_SECTIONAL" / target / "cohort=c", run_id="run",
            run_started_at=start, written_at=start + timedelta(seconds=i), stage="TR",
            view="CROSS_SECTIONAL", target=target, metrics={{"i": i, "twice": 2 * i, "neg": -i}},
            samples={{"p": [i + k / 10_000 for k in range({CRASH_SAMPLES})]}})
"""


def generation(folder: Path) -> int:
    """The round `i` of one cohort's facts, checking that each of its files is whole and consistent."""
    facts = pq.read_table(folder / "telemetry_metrics.parquet").to_pylist()
    values = {row["metric"]: row["value"] for row in facts}
    i = int(values["i"])
    assert values == {"i": i, "twice": 2 * i, "neg": -i}
    assert {row["written_at"] for row in facts} == {START + timedelta(seconds=i)}
    # the samples file is written first, so it is of the same round or the next one
    samples = pq.read_table(folder / "telemetry_samples.parquet")
    low, high = (int(pc.min(samples["value"]).as_py()), int(pc.max(samples["value"]).as_py()))
    assert low == high >= i and set(samples["n_total"].to_pylist()) == {CRASH_SAMPLES}
    # the mirror is written last: the same round or the one before
    mirror = json.loads((folder / "telemetry_metrics.json").read_bytes())["metrics"]
    j = int(mirror["i"]["value"])
    assert j <= i and mirror["twice"]["value"] == 2 * j and mirror["neg"]["value"] == -j
    return i


@pytest.mark.slow
def test_a_writer_killed_at_random_points_leaves_old_or_new_complete_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    rng = random.Random(5)
    folders = [root / "run" / "TR" / "CROSS_SECTIONAL" / t / "cohort=c" for t in CRASH_COHORTS]
    first = subprocess.run([sys.executable, "-c", REWRITER, str(root), "0", "1"],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    seen = {folder: generation(folder) for folder in folders}
    per_round = 3 * len(folders)  # renames: samples, metrics and mirror of each cohort
    rounds, moved, kill_points = 6, 0, []
    for round_ in range(1, rounds + 1):
        # kill after the k-th rename, k anywhere in the first three rounds; k >= 2 has renamed
        # the first cohort's metrics, so every kill leaves at least one generation advanced
        k = rng.randint(2, 3 * per_round)
        kill_points.append(k)
        proc = subprocess.Popen([sys.executable, "-c", REWRITER, str(root), str(round_ * 1_000_000)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            for _ in range(k):  # the writer goes on writing: the kill lands wherever it has got to
                line = proc.stdout.readline()
                if not line.startswith("renamed "):
                    kill(proc)
                    pytest.fail(f"the writer stopped before its rename {k}: {line!r}\n{proc.stderr.read()}")
        finally:
            kill(proc)
        assert proc.returncode == -signal.SIGKILL
        for folder in folders:
            now = generation(folder)  # old or new, and whole either way
            assert now >= seen[folder]  # never an older file than before
            moved += now != seen[folder]
            seen[folder] = now
    natural = temp_files(root)

    # a temporary left by a crash is never read: plant a torn one beside each sidecar
    torn = folders[0] / ".telemetry_metrics.parquet.crashed.tmp"
    torn.write_bytes((folders[0] / "telemetry_metrics.parquet").read_bytes()[:300])
    (folders[1] / ".telemetry_samples.parquet.crashed.tmp").write_bytes(b"PAR1")
    with metricsduck.connect(root) as store:
        assert store.bad_files() == []
        assert store.sql("SELECT count(*) FROM facts").fetchall()[0][0] == 3 * len(folders)
        assert store.sql("SELECT count(*) FROM cohort_runs").fetchall()[0][0] == len(folders)
        summary = store.refresh()
    assert summary.failed == [] and summary.written > 0
    assert moved >= rounds  # each kill came after a round's first metrics file was renamed
    print(f"\n[writer crash] kills={rounds} after_renames={kill_points} files_advanced={moved} "
          f"temporaries_left_by_kills={len(natural)}")


def outputs_of(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if is_output(k)}


# `metricsduck refresh ROOT --all` (the CLI's own entry point) that says "renamed N" once it
# has renamed its N-th output into the tree (the cache's own files are not counted), and then
# renames nothing more, from any of its threads, until it is killed.
REFRESH_UNTIL = """
import os, sys, threading
real, count, one_at_a_time, stop = os.replace, [0], threading.Lock(), int(sys.argv[2])

def replace(src, dst, *args, **kwargs):
    with one_at_a_time:  # refresh writes cohorts from several threads: one rename at a time
        result = real(src, dst, *args, **kwargs)
        count[0] += ".metricsduck" not in str(dst)
        if count[0] == stop:
            print("renamed", stop, flush=True)
            threading.Event().wait()  # holding the lock: every other rename waits for the kill
        return result

os.replace = replace
from metricsduck.cli import main
sys.argv = ["metricsduck", "refresh", sys.argv[1], "--all"]
main()
"""


@pytest.mark.slow
def test_a_refresh_killed_mid_way_leaves_whole_files_and_the_next_refresh_completes(tmp_path: Path,
                                                                                      demo_trees) -> None:
    root = demo_trees.copy(tmp_path / "demo", runs=2, refreshed=True).root  # every run refreshed
    # the pipeline reruns run 1 with new values: nearly every output of the tree changes
    for path in root.glob("run_01/**/telemetry_metrics.parquet"):
        table = pq.read_table(path)
        index = table.schema.get_field_index("value")
        table = table.set_column(index, table.schema.field(index), pc.multiply(table["value"], 1.01))
        write_atomic(path, parquet_bytes(table))
    before = tree_bytes(root)
    old = outputs_of(before)

    # kill it once it has written `stop` of the outputs, some of its threads mid-way through others
    stop = random.Random(7).randint(1, len(old) - 1)
    proc = subprocess.Popen([sys.executable, "-c", REFRESH_UNTIL, str(root), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # no clock: the refresh says when it got there
        if line != f"renamed {stop}\n":
            kill(proc)
            pytest.fail(f"the refresh ended before it was killed: {line!r}\n{proc.stderr.read()}")
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL

    after = tree_bytes(root)
    assert {k: v for k, v in after.items() if not is_output(k)} == \
        {k: v for k, v in before.items() if not is_output(k)}  # the pipeline's files untouched
    assert set(outputs_of(after)) == set(old)
    for relative in after:
        assert_complete(root / relative)  # no partial file is visible
    rewritten = {k for k, v in outputs_of(after).items() if v != old[k]}
    assert len(rewritten) == stop < len(old)  # it really was killed mid-way, after `stop` writes

    with metricsduck.connect(root) as store:
        summary = store.refresh()  # the next refresh: plain, as after every pipeline run
        assert summary.failed == [] and summary.runs
        final = outputs_of(tree_bytes(root))
        again = store.refresh(all_runs=True)
    # what the killed refresh wrote was already whole and final: the next one agrees byte for byte
    assert all(final[k] == after[k] for k in rewritten)
    assert again.failed == [] and again.written == 0  # and nothing was left stale
    print(f"\n[refresh crash] outputs={len(old)} killed_after_write={stop} rewritten_before_kill={len(rewritten)} "
          f"written_by_next_refresh={summary.written} temporaries_left={len(temp_files(root))}")


# Refreshes the tree, SIGKILLing itself just before its N-th rename of an output (the N-th
# file it writes into the tree; the cache's own files are not counted).
KILL_AT = """
import os, signal, sys, threading
real, count, one_at_a_time = os.replace, [0], threading.Lock()

def replace(src, dst, *args, **kwargs):
    # refresh writes cohorts from several threads: one rename at a time, so that at the
    # k-th exactly k-1 renames are complete
    with one_at_a_time:
        count[0] += ".metricsduck" not in str(dst)  # outputs in the tree, not the cache
        if count[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

os.replace = replace
import metricsduck
with metricsduck.connect(sys.argv[1]) as store:
    store.refresh()
"""


@pytest.mark.slow
def test_a_refresh_killed_before_any_of_its_writes_is_completed_by_the_next_refresh(pending, tmp_path: Path) -> None:
    """Killed before its last write, or before one picked at random: the next plain refresh
    finishes the job, and the tree is byte for byte what an uninterrupted refresh makes.

    A refresh records the runs it completed in the compacted cache only after all of their
    outputs are written, so a crash never leaves a run fresh while one of its outputs is old.
    """
    base, before, expected, writes = pending
    points = sorted({random.Random(9).randint(1, writes - 1), writes})
    roots = {k: tmp_path / f"killed_at_{k}" for k in points}
    procs = {}
    for k, root in roots.items():
        shutil.copytree(base, root)
        procs[k] = subprocess.Popen([sys.executable, "-c", KILL_AT, str(root), str(k)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for proc in procs.values():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, err
    for k, root in roots.items():
        after = tree_bytes(root)
        assert sum(after.get(r) != before.get(r) for r in expected) == k - 1  # k-1 files were written
        for relative, data in after.items():
            assert data in (before.get(relative), expected[relative])  # old or new, whole either way
        with metricsduck.connect(root) as store:
            summary = store.refresh()
        assert summary.failed == [] and summary.written == writes - (k - 1), k
        assert tree_bytes(root) == expected, k
    print(f"\n[refresh kill points] writes={writes} killed_before_write={points}")


# Holds the refresh lock until it is killed (or its stdin closes: the test is gone).
HOLDER = """
import sys
from metricsduck.refresh import refresh_lock
with refresh_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def hold(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_stale_refresh_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    holder = hold(root)
    messages: list[str] = []
    waiting, acquired = threading.Event(), threading.Event()

    def on_wait(message: str) -> None:
        messages.append(message)
        waiting.set()

    def take() -> None:
        with refresh_lock(root, on_wait=on_wait):
            acquired.set()

    try:
        assert holder.stdout.readline().strip() == "locked"
        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert waiting.wait(120)  # a failure guard only: the waiter says so as soon as it waits
        # a live holder is waited for, and named
        assert messages and f"held by pid {holder.pid}" in messages[0]
        assert not acquired.is_set()
    finally:
        kill(holder)
    assert acquired.wait(120)  # the lock died with its holder
    waiter.join(120)

    # the lock file still names the dead holder or the waiter; either way nobody waits now
    lock = root / ".metricsduck" / "refresh.lock"
    assert lock.exists()
    holder = hold(root)
    try:
        assert holder.stdout.readline().strip() == "locked"
    finally:
        kill(holder)
    assert lock.read_text() == str(holder.pid)  # a stale file left by a SIGKILLed holder
    later: list[str] = []
    with refresh_lock(root, on_wait=later.append):
        assert lock.read_text() == str(os.getpid())
    assert later == []
    metricsduck.write_cohort_metrics(
        root / "run" / "TR" / "CROSS_SECTIONAL" / "a" / "cohort=c", run_id="run", run_started_at=START,
        stage="TR", view="CROSS_SECTIONAL", target="a", metrics={"score": 1.0})
    result = subprocess.run(cli_command() + ["refresh", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "waiting for the refresh lock" not in result.stderr


# --- 9. read-only and full disks -----------------------------------------------------------

@pytest.fixture
def unwritable(pending, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The pending tree, where some of the files its refresh must write cannot be written.

    Full disk (ENOSPC on the rename) for run 3 a's drift files, which exist and must change,
    and for run 4's new stage rollup; a folder stands where run 4 b's drift Parquet must go.
    Returns (root, the paths that cannot be written, the bytes before, the bytes a refresh
    without faults gives).
    """
    base, before, expected, _ = pending
    root = tmp_path / "tree"
    shutil.copytree(base, root)
    full = {cohort_folder(root, 3, "a") / "telemetry_drift.parquet",
            cohort_folder(root, 3, "a") / "telemetry_drift.json",
            root / "run4" / "REPRODUCIBILITY" / "TR" / "telemetry_rollup.parquet"}
    in_the_way = cohort_folder(root, 4, "b") / "telemetry_drift.parquet"
    for path in full:  # each of them is a write the refresh must make
        relative = str(path.relative_to(root))
        assert before.get(relative) != expected[relative]
    in_the_way.mkdir()

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst) in full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return root, full | {in_the_way}, before, expected


def test_a_refresh_that_cannot_write_names_each_file_and_leaves_old_files_intact(unwritable, monkeypatch) -> None:
    root, failing, before, expected = unwritable
    with metricsduck.connect(root) as store:
        summary = store.refresh()

    assert {Path(path) for path, _ in summary.failed} == failing
    assert len(summary.failed) == len(failing)
    for path, reason in summary.failed:
        assert path in reason and "cannot" in reason
    after = tree_bytes(root)
    names = {str(p.relative_to(root)) for p in failing}
    for relative, data in after.items():
        if relative in names or relative not in expected:
            assert data == before[relative]  # an existing file it could not replace is unchanged
        else:
            assert data == expected[relative]  # everything else was written in full
    assert set(after) == set(expected) - names | (set(before) & names)
    assert temp_files(root) == []

    # space is back: the next refresh writes exactly what was missing
    monkeypatch.undo()
    (cohort_folder(root, 4, "b") / "telemetry_drift.parquet").rmdir()
    with metricsduck.connect(root) as store:
        retry = store.refresh()
    assert retry.failed == []
    assert tree_bytes(root) == expected


def test_the_cli_refresh_exits_6_naming_each_file_it_could_not_write(unwritable, monkeypatch) -> None:
    root, failing, _, _ = unwritable
    result = CliRunner().invoke(main, ["refresh", str(root)])
    assert result.exit_code == 6
    errors = [line for line in result.stderr.splitlines() if "could not write" in line]
    assert len(errors) == len(failing)
    for path in failing:
        assert any(str(path) in line for line in errors)
    assert "files failed" in result.stdout

    # a real process: the folder still stands in the way, the disk has space again
    monkeypatch.undo()
    process = subprocess.run(cli_command() + ["refresh", str(root)], capture_output=True, text=True, timeout=60)
    assert process.returncode == 6
    in_the_way = cohort_folder(root, 4, "b") / "telemetry_drift.parquet"
    errors = [line for line in process.stderr.splitlines() if "could not write" in line]
    assert len(errors) == 1 and str(in_the_way) in errors[0] and os.strerror(errno.EISDIR) in errors[0]
    assert in_the_way.is_dir() and temp_files(root) == []
