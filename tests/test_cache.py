"""The compacted cache (ROOT/.metricsduck/cache/, docs/design.md §8.4), tested through its behaviour.

The cache is derived: whatever it holds, `connect(root)` must give exactly the rows of
`connect(root, use_cache=False)` (which reads every sidecar): the raw tables, the bad files
and every view built on them, floats included, bit for bit. Random trees are mutated the
ways trees change (new runs, rewritten, deleted, duplicated and broken sidecars) before
and after the cache is published. Further tests pin down that a changed or deleted sidecar
invalidates exactly its own rows, that a lost or damaged cache loses nothing, that queries
never write, that `lock_down` still reads the segments and nothing else, that a store
leaves no staging folder behind, and that segments are compacted and retired.

Manifest internals used here (kept to a minimum, the module is still moving): the file
`cache/manifest.parquet` with columns `path`, `source`, `segment`, `reason`, and segment
files `*.parquet` beside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import metricsduck
import metricsduck.snapshot.segments
from metricsduck.cli import main

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
STAGE = "TR"
# (view, target, symbol): cross-sectional and symbol-specific baseline keys
KEYS = [
    ("CROSS_SECTIONAL", "t_a", None),
    ("CROSS_SECTIONAL", "t_b", None),
    ("SYMBOL_SPECIFIC", "t_a", "AAA"),
    ("SYMBOL_SPECIFIC", "t_a", "BBB"),
]
METRICS = "telemetry_metrics.parquet"
SAMPLES = "telemetry_samples.parquet"

# Every table and view whose full contents must not depend on the cache.
COMPARED = ("facts_raw", "samples_raw", "bad_files", "drift", "trends", "rollup_view")


# --- building trees ----------------------------------------------------------------------------

def cohort_dir(root: Path, run: int, key: tuple, cohort: str = "c0") -> Path:
    view, target, symbol = key
    folder = root / f"run{run:02d}" / "REPRODUCIBILITY" / STAGE / view / target
    if symbol is not None:
        folder = folder / f"symbol={symbol}"
    return folder / f"cohort={cohort}"


def write_cohort(root: Path, rng: np.random.Generator, run: int, key: tuple, *, cohort: str = "c0",
                 samples: bool = True, written: timedelta = timedelta(hours=1),
                 run_id: str | None = None, started: timedelta | None = None) -> Path:
    """One cohort-run with random metrics (number, bool, text) and, optionally, samples.

    `run_id` and `started` (after T0) default to `run<NN>` and `run` days."""
    view, target, symbol = key
    run_id = run_id or f"run{run:02d}"
    started = T0 + (started if started is not None else timedelta(days=run))
    shift = float(rng.choice([0.0, 0.0, 0.1, 0.7]))
    metrics = {
        "auc": round(float(rng.uniform(0.4, 0.9)), 6),
        "loss": float(rng.normal(1.0, 0.3)),
        "zero": float(rng.choice([0.0, 0.0, 0.5])),
        "passed": bool(rng.integers(0, 2)),
        "model": str(rng.choice(["lgbm", "xgb"])),
    }
    if rng.random() < 0.3:
        metrics[f"extra_{int(rng.integers(0, 2))}"] = float(rng.normal())
    dists = None
    if samples:
        score = rng.normal(shift, 1.0, int(rng.integers(1, 60)))
        score[rng.random(score.size) < 0.1] = np.nan
        dists = {"score": score.tolist(),
                 "ints": (rng.integers(0, 4, int(rng.integers(1, 30))) + (shift > 0.5)).astype(float).tolist()}
        if rng.random() < 0.2:
            dists["empty"] = [float("nan")] * int(rng.integers(1, 4))
    folder = root / run_id / cohort_dir(root, run, key, cohort).relative_to(root / f"run{run:02d}")
    metricsduck.write_cohort_metrics(
        folder, run_id=run_id, run_started_at=started, written_at=started + written, stage=STAGE, view=view,
        target=target, symbol=symbol, metrics=metrics, samples=dists,
        git_commit=str(rng.choice(["abc", "abc", "abd"])), seed=7,
        good=[True, False, None][int(rng.integers(0, 3))],
    )
    return folder


def write_run(root: Path, rng: np.random.Generator, run: int) -> None:
    for key in KEYS:
        write_cohort(root, rng, run, key, samples=rng.random() < 0.85)


def garbage(path: Path, rng: np.random.Generator, size: int = 700) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.bytes(size))
    return path


def foreign_parquet(path: Path) -> Path:
    """A readable Parquet file that is not a sidecar (every required column missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    return path


def sidecars(root: Path) -> list[Path]:
    return sorted(p for name in (METRICS, SAMPLES) for p in root.rglob(name)
                  if ".metricsduck" not in p.parts)


# --- reading results ---------------------------------------------------------------------------

def _norm(value):
    """Exact, hashable form of a value: floats by their bits (NaN equals NaN, -0.0 is not 0.0)."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    return value


def contents(store, names=COMPARED) -> dict[str, list[tuple]]:
    return {name: [_norm(row) for row in store.sql(f"SELECT * FROM {name} ORDER BY ALL").fetchall()]
            for name in names}


def read(root: Path, *, use_cache: bool = True, names=COMPARED) -> dict[str, list[tuple]]:
    with metricsduck.connect(root, use_cache=use_cache) as store:
        return contents(store, names)


def assert_same(got: dict, expected: dict, label: str) -> None:
    """Equal contents, or a message naming each table that differs with a few rows each way."""
    problems = []
    for name in expected:
        if got[name] != expected[name]:
            extra = Counter(got[name]) - Counter(expected[name])
            missing = Counter(expected[name]) - Counter(got[name])
            problems.append(
                f"{name}: {len(got[name])} rows vs {len(expected[name])} expected; "
                f"{sum(extra.values())} extra, e.g. {list(extra)[:2]}; "
                f"{sum(missing.values())} missing, e.g. {list(missing)[:2]}")
    assert not problems, f"{label}:\n" + "\n".join(problems)


def refresh(root: Path, **kwargs):
    with metricsduck.connect(root) as store:
        return store.refresh(**kwargs)


def cache_folder(root: Path) -> Path:
    return root / ".metricsduck" / "cache"


def manifest(root: Path) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """(path, source) -> (segment, reason) of the published manifest."""
    table = pq.read_table(cache_folder(root) / "manifest.parquet")
    return {(r["path"], r["source"]): (r["segment"], r["reason"]) for r in table.to_pylist()}


def segment_files(root: Path) -> set[str]:
    """The segment files of the raw sources (facts_raw-…, samples_raw-…) in the cache folder."""
    return {p.name for p in cache_folder(root).glob("*_raw-*.parquet")}


def drift_segments(root: Path) -> set[str]:
    """Segments of materialised drift rows named by the drift index, if there is one."""
    index = cache_folder(root) / metricsduck.snapshot.segments.DRIFT_INDEX_FILE
    if not index.exists():
        return set()
    return {s for s in pq.read_table(index, columns=["segment"]).column("segment").to_pylist() if s}


def referenced(root: Path) -> set[str]:
    return {segment for segment, _ in manifest(root).values() if segment is not None}


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rel(root: Path, path: Path) -> str:
    return str(path.resolve().relative_to(root.resolve()))


# --- 1. with and without the cache: identical results on random trees ---------------------------

def mutate(root: Path, rng: np.random.Generator, state: dict, round_: int) -> list[str]:
    """Change the tree the ways trees change; return what was done (for failure messages)."""
    done = []
    # a new run
    run = state["runs"]
    write_run(root, rng, run)
    state["runs"] += 1
    done.append(f"new run{run:02d}")
    # rewrite some cohorts of older runs (new values; written_at the same or later)
    for _ in range(int(rng.integers(1, 4))):
        old, key = int(rng.integers(0, run)), KEYS[int(rng.integers(0, len(KEYS)))]
        if (cohort_dir(root, old, key) / METRICS).exists():
            later = timedelta(hours=1) if rng.random() < 0.5 else timedelta(hours=2 + round_)
            write_cohort(root, rng, old, key, samples=rng.random() < 0.8, written=later)
            done.append(f"rewrote run{old:02d} {key} ({later})")
    # delete some sidecars (metrics and/or samples)
    files = [p for p in sidecars(root) if "cohort=c0" in str(p)]
    for index in rng.choice(len(files), size=min(2, len(files)), replace=False):
        files[index].unlink()
        done.append(f"deleted {rel(root, files[index])}")
    # bad files: garbage named as a sidecar, a foreign Parquet, a good (cached) sidecar broken
    done.append(f"garbage {rel(root, garbage(cohort_dir(root, run, KEYS[0], f'junk{round_}') / METRICS, rng))}")
    done.append(f"foreign {rel(root, foreign_parquet(cohort_dir(root, run, KEYS[1], f'alien{round_}') / SAMPLES))}")
    victims = [p for p in sidecars(root) if "cohort=c0" in str(p) and f"run{run:02d}" not in str(p)]
    if victims:
        victim = victims[int(rng.integers(0, len(victims)))]
        garbage(victim, rng, size=int(rng.integers(10, 900)))
        done.append(f"broke {rel(root, victim)}")
    # the bad files of the previous round are fixed: now good sidecars (their old rows must go)
    if round_ > 1:
        for name, cohort, key in ((METRICS, f"junk{round_ - 1}", KEYS[0]), (SAMPLES, f"alien{round_ - 1}", KEYS[1])):
            folder = cohort_dir(root, state["junk_run"], key, cohort)
            (folder / name).unlink()
            write_cohort(root, rng, state["junk_run"], key, cohort=cohort, written=timedelta(hours=5))
            done.append(f"fixed {rel(root, folder)}")
    state["junk_run"] = run
    # a backfilled run: started between run00 and run01, written after them (baselines shift)
    for key in KEYS[: int(rng.integers(1, len(KEYS) + 1))]:
        write_cohort(root, rng, 0, key, run_id=f"back{round_}", started=timedelta(hours=6 * round_))
    done.append(f"backfilled back{round_}")
    # a duplicate: another cohort folder claiming an existing cohort-run (written_at tie or not)
    old, key = int(rng.integers(0, run + 1)), KEYS[int(rng.integers(0, len(KEYS)))]
    tie = rng.random() < 0.5
    write_cohort(root, rng, old, key, cohort=f"dup{round_}",
                 written=timedelta(hours=1) if tie else timedelta(hours=3))
    done.append(f"duplicate of run{old:02d} {key} (tie: {tie})")
    return done


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_results_with_and_without_the_cache_are_identical(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    root = tmp_path / "results"
    state = {"runs": 2}
    for run in range(2):
        write_run(root, rng, run)
    refresh(root)
    assert (cache_folder(root) / "manifest.parquet").is_file()
    for round_ in (1, 2):
        done = mutate(root, rng, state, round_)
        # every sidecar read; refresh below writes outputs, never sidecars, so this stays the
        # expected contents after it too
        plain = read(root, use_cache=False)
        assert plain["bad_files"], "the mutations include bad files"
        with metricsduck.connect(root) as store:
            assert_same(contents(store), plain, f"seed {seed}, round {round_}, cache + fresh files ({done})")
            store.refresh()  # publishes this snapshot: the mutations enter the cache
        assert_same(read(root), plain, f"seed {seed}, round {round_}, after the cache was updated ({done})")


def test_refresh_through_the_cache_writes_the_same_outputs(tmp_path: Path) -> None:
    """Refresh outputs computed from the cache (+ fresh files, samples narrowed to the runs
    refreshed) are byte-identical to those computed from every sidecar: nothing is rewritten."""
    rng = np.random.default_rng(11)
    root = tmp_path / "results"
    state = {"runs": 3}
    for run in range(3):
        write_run(root, rng, run)
    refresh(root)
    mutate(root, rng, state, 1)
    newest = f"run{state['runs'] - 1:02d}"
    for kwargs in ({"runs": [newest]}, {"all_runs": True}):
        with metricsduck.connect(root, use_cache=False) as store:
            store.refresh(**kwargs)  # does not publish: the cache stays stale
        with metricsduck.connect(root) as store:
            summary = store.refresh(**kwargs)
        assert summary.written == 0 and not summary.failed, (kwargs, summary)


def test_cached_drift_follows_marks_and_config(tmp_path: Path, make_config) -> None:
    """Drift rows kept by refresh depend on the marks and the config too: a new mark or
    another config must give exactly the drift computed from scratch."""
    root = tmp_path / "results"
    small_tree(root, runs=4)
    refresh(root)
    from metricsduck.marks import write_mark

    write_mark(root, "run01", False, "outage")
    write_mark(root, "run02", True)
    # a mark moves the last_good_run of later runs only: theirs are recomputed, the rest kept
    with metricsduck.connect(root) as store:
        assert {r for (r,) in store.sql("SELECT DISTINCT run_id FROM cache_stale").fetchall()} == {"run02", "run03"}
    # refresh writes outputs, never sidecars or marks: the plain read stays the expected one
    plain = read(root, use_cache=False)
    assert_same(read(root), plain, "after marks")
    refresh(root)
    assert_same(read(root), plain, "after marks, refreshed")
    config = make_config("safety:\n  telemetry:\n    baselines:\n      rolling_window_k: 2\n"
                         "    drift:\n      psi_bins: 3\n      tiers:\n        relative: [0.001, 0.002]\n")
    for use_cache in (True, False):
        with metricsduck.connect(root, config=config, use_cache=use_cache) as store:
            got = contents(store)
        if use_cache:
            cached = got
    assert_same(cached, got, "another config")


# --- 2. a changed or deleted sidecar invalidates exactly its rows --------------------------------

def small_tree(root: Path, runs: int = 3, seed: int = 0) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    for run in range(runs):
        for key in KEYS:
            write_cohort(root, rng, run, key)
    return rng


# Building and refreshing a tree costs seconds; copying one costs milliseconds. The small tree
# is built and refreshed once per module and each test works on its own copy (copy2 keeps the
# mtimes the cache compares, and the cache stores paths relative to the root), with an rng
# that continues where the tree's stopped: the same tree, bytes and random stream as building
# it in the test.

def copy_tree(built: tuple[Path, dict], root: Path) -> np.random.Generator:
    """Copy a module's tree `(root, rng state)` to `root`; return its rng, continued."""
    source, state = built
    shutil.copytree(source, root)
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


@pytest.fixture(scope="module")
def refreshed_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`small_tree` refreshed once (its cache published); never modified: copy it."""
    root = tmp_path_factory.mktemp("refreshed_small") / "results"
    rng = small_tree(root)
    refresh(root)
    return root, rng.bit_generator.state


@pytest.fixture
def refreshed(refreshed_small: tuple[Path, dict], tmp_path: Path) -> tuple[Path, np.random.Generator]:
    """This test's copy of the refreshed small tree at `tmp_path/results`, and its rng."""
    root = tmp_path / "results"
    return root, copy_tree(refreshed_small, root)


def relocated(found: dict[str, list[tuple]], old: Path, new: Path) -> dict[str, list[tuple]]:
    """`contents` read in the tree at `old`, as the same tree copied to `new` must read: its
    absolute paths (`source_file`, bad file paths and reasons) moved, nothing else changed.

    Replacing one common prefix by another keeps the `ORDER BY ALL` order of the rows."""
    before, after = str(old.resolve()), str(new.resolve())

    def move(value):
        if isinstance(value, str):
            return value.replace(before, after)
        if isinstance(value, tuple):
            return tuple(move(v) for v in value)
        return value

    return {name: [move(row) for row in rows] for name, rows in found.items()}


def test_a_changed_or_deleted_sidecar_invalidates_exactly_its_rows(refreshed) -> None:
    root, rng = refreshed
    before = manifest(root)
    changed = cohort_dir(root, 1, KEYS[0]) / METRICS
    changed_samples = cohort_dir(root, 1, KEYS[0]) / SAMPLES
    deleted = cohort_dir(root, 0, KEYS[1]) / SAMPLES
    deleted_facts = cohort_dir(root, 2, KEYS[2]) / METRICS
    # same identity and written_at: only the values differ, so no dedup rule can hide old rows
    write_cohort(root, rng, 1, KEYS[0])
    deleted.unlink()
    deleted_facts.unlink()

    def rows_of(store, table: str, path: Path) -> list:
        return sorted(store.sql(f"SELECT * EXCLUDE (source_file) FROM {table} WHERE source_file = ? "
                                "ORDER BY ALL", [str(path.resolve())]).fetchall(), key=repr)

    with metricsduck.connect(root, use_cache=False) as store:
        expected_changed = rows_of(store, "facts_raw", changed)
        expected_samples = rows_of(store, "samples_raw", changed_samples)
    for label in ("cache + fresh files", "after the cache was updated"):
        with metricsduck.connect(root) as store:
            assert rows_of(store, "facts_raw", changed) == expected_changed, label
            assert rows_of(store, "samples_raw", changed_samples) == expected_samples, label
            assert rows_of(store, "samples_raw", deleted) == [], label
            assert rows_of(store, "facts_raw", deleted_facts) == [], label
        refresh(root)

    after = manifest(root)
    gone = {(rel(root, deleted), "samples_raw"), (rel(root, deleted_facts), "facts_raw")}
    rewritten = {(rel(root, changed), "facts_raw"), (rel(root, changed_samples), "samples_raw")}
    assert gone <= set(before) and not gone & set(after)
    old_segments = {segment for segment, _ in before.values()}
    for entry in rewritten:
        assert after[entry][0] not in old_segments, f"{entry} must come from a new segment"
    untouched = set(before) - gone - rewritten
    assert untouched and all(after[e] == before[e] for e in untouched), \
        "untouched files keep their entries and segments"
    assert_same(read(root), read(root, use_cache=False), "after the update")


def test_unchanged_files_are_served_from_the_cache_not_reread(refreshed) -> None:
    """A sidecar whose (size, mtime) still match the manifest is not read again: damage it
    behind the cache's back (same size, mtime restored) and the cached rows are still served."""
    root, _ = refreshed
    path = cohort_dir(root, 1, KEYS[1]) / METRICS
    with metricsduck.connect(root) as store:
        cached = contents(store, ("facts_raw",))
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with metricsduck.connect(root) as store:
        assert contents(store, ("facts_raw",)) == cached
        assert store.bad_files() == []
    with metricsduck.connect(root, use_cache=False) as store:
        assert [row[0] for row in store.bad_files()] == [str(path.resolve())]


def test_the_cache_follows_the_tree_when_it_is_moved(tmp_path: Path, refreshed) -> None:
    """Paths in the cache are relative to the root: a copied tree (mtimes kept) reads its own paths."""
    root, _ = refreshed
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(root, moved)
    got = read(moved)
    assert_same(got, read(moved, use_cache=False), "moved tree")
    assert all(row[-1].startswith(str(moved.resolve()) + "/") for row in got["facts_raw"])


# --- 3. the cache is derived: losing or damaging it loses nothing ---------------------------------

def damage_segment_truncate(root: Path) -> None:
    path = cache_folder(root) / sorted(referenced(root))[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_segment_delete(root: Path) -> None:
    (cache_folder(root) / sorted(referenced(root))[-1]).unlink()


def damage_segment_garbage(root: Path) -> None:
    path = cache_folder(root) / sorted(referenced(root))[0]
    path.write_bytes(os.urandom(path.stat().st_size + 17))


def damage_manifest_truncate(root: Path) -> None:
    path = cache_folder(root) / "manifest.parquet"
    path.write_bytes(path.read_bytes()[:100])


def damage_manifest_garbage(root: Path) -> None:
    (cache_folder(root) / "manifest.parquet").write_bytes(os.urandom(1000))


def damage_manifest_empty(root: Path) -> None:
    (cache_folder(root) / "manifest.parquet").write_bytes(b"")


def damage_all(root: Path) -> None:
    shutil.rmtree(cache_folder(root))


@pytest.fixture(scope="module")
def stale_cache(refreshed_small: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    """The refreshed small tree with fresh files beside its cache (a new run, a bad file),
    and its contents read from every sidecar: the same for each damage, so read once, as is
    the check that the intact cache reads them."""
    root = tmp_path_factory.mktemp("stale_cache") / "results"
    rng = copy_tree(refreshed_small, root)
    write_run(root, rng, 3)  # fresh files beside the cache
    garbage(cohort_dir(root, 3, KEYS[0], "junk") / METRICS, rng)
    expected = read(root, use_cache=False)
    assert_same(read(root), expected, "intact cache")
    return root, expected


@pytest.mark.parametrize("damage", [
    damage_all, damage_segment_truncate, damage_segment_delete, damage_segment_garbage,
    damage_manifest_truncate, damage_manifest_garbage, damage_manifest_empty,
], ids=lambda f: f.__name__[len("damage_"):])
def test_a_lost_or_damaged_cache_loses_nothing_and_refresh_rebuilds_it(tmp_path: Path, stale_cache, damage) -> None:
    source, expected_there = stale_cache
    root = tmp_path / "results"
    shutil.copytree(source, root)
    expected = relocated(expected_there, source, root)
    damage(root)
    assert_same(read(root), expected, f"after {damage.__name__}")
    refresh(root)
    names = referenced(root)
    assert names and names <= segment_files(root)
    for name in names:
        pq.read_table(cache_folder(root) / name)  # every referenced segment is whole
    assert {path for path, _ in manifest(root)} == {rel(root, p) for p in sidecars(root)}
    assert_same(read(root), expected, f"rebuilt after {damage.__name__}")


# --- 4. bad files stay reported as before ---------------------------------------------------------

def break_some(root: Path, rng: np.random.Generator) -> set[str]:
    """Damage sidecars in different ways (as tests/test_bad_files.py does); return their paths."""
    bad = {
        garbage(cohort_dir(root, 2, KEYS[0]) / METRICS, rng),                  # random bytes
        cohort_dir(root, 2, KEYS[1]) / METRICS,                                # truncated
        cohort_dir(root, 1, KEYS[2]) / SAMPLES,                                # zero bytes
        foreign_parquet(cohort_dir(root, 1, KEYS[3], "alien") / METRICS),      # not a sidecar
        cohort_dir(root, 0, KEYS[3]) / METRICS,                                # a future version
    }
    truncated = cohort_dir(root, 2, KEYS[1]) / METRICS
    truncated.write_bytes(truncated.read_bytes()[:200])
    (cohort_dir(root, 1, KEYS[2]) / SAMPLES).write_bytes(b"")
    future = cohort_dir(root, 0, KEYS[3]) / METRICS
    table = pq.read_table(future)
    pq.write_table(table.set_column(0, "schema_version", pa.array([2] * table.num_rows, pa.int32())), future)
    return {str(p.resolve()) for p in bad}


def test_bad_files_are_reported_the_same_with_and_without_the_cache(refreshed) -> None:
    root, rng = refreshed
    expected_paths = break_some(root, rng)
    expected = read(root, use_cache=False)
    assert {row[0] for row in expected["bad_files"]} == expected_paths
    assert_same(read(root), expected, "bad files read fresh")
    refresh(root)
    known = manifest(root)
    for path in expected_paths:
        segment, reason = next(v for (p, _), v in known.items() if str((root / p).resolve()) == path)
        assert reason and segment is None, f"{path} is known bad from the manifest"
    assert_same(read(root), expected, "bad files known from the manifest")
    # and once fixed, a known bad file is read again
    for path in expected_paths:
        Path(path).unlink()
    small_tree(root, seed=5)
    expected = read(root, use_cache=False)
    assert_same(read(root), expected, "bad files fixed")


def test_a_sidecar_with_a_wrong_column_type_is_reported_not_fatal(tmp_path: Path) -> None:
    """A samples file whose `value` is text must be a bad file, as before the cache (the
    snapshot then read into typed tables, so the cast failed and the file was isolated)."""
    root = tmp_path / "results"
    small_tree(root)
    path = cohort_dir(root, 1, KEYS[0]) / SAMPLES
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["value"]).append_column(
        "value", pa.array(["not a number"] * table.num_rows)), path)
    for use_cache in (False, True):
        with metricsduck.connect(root, use_cache=use_cache) as store:
            assert [row[0] for row in store.bad_files()] == [str(path.resolve())]
            assert store.sql("SELECT typeof(value) FROM samples_raw LIMIT 1").fetchall() == [("DOUBLE",)]


# --- 5. query commands never write the cache --------------------------------------------------------

def test_queries_and_lock_down_write_nothing(refreshed) -> None:
    root, rng = refreshed
    write_run(root, rng, 3)  # the cache is stale: the store must stage these privately
    (cohort_dir(root, 0, KEYS[0]) / SAMPLES).unlink()
    garbage(cohort_dir(root, 3, KEYS[0], "junk") / METRICS, rng)
    before = tree_bytes(root)
    assert any(name.startswith(".metricsduck/cache/") for name in before)
    with metricsduck.connect(root) as store:
        store.drift().fetchall()
        store.trends().fetchall()
        store.rollups().fetchall()
        store.status()
        store.lock_down()
        store.drift().fetchall()
        store.bad_files()
    assert tree_bytes(root) == before
    for args in (["drift", str(root)], ["drift", str(root), "--format", "json"], ["status", str(root)]):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert tree_bytes(root) == before, args


def test_an_empty_root_is_an_empty_tree_and_a_missing_one_an_error(tmp_path: Path) -> None:
    """docs/design.md §10.1: connect(root) accepts an empty folder (empty tables, no bad file);
    a missing one, a mistyped path, is an error naming it, not an empty tree."""
    root = tmp_path / "empty"
    root.mkdir()
    with metricsduck.connect(root) as store:
        assert store.bad_files() == []
        assert store.sql("SELECT count(*) FROM facts_raw").fetchall() == [(0,)]
        assert store.drift().fetchall() == []
    assert list(root.iterdir()) == []
    with pytest.raises(metricsduck.InputError, match=r"missing: no such folder; give the results tree"):
        metricsduck.connect(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_queries_on_a_tree_without_a_cache_do_not_create_one(tmp_path: Path) -> None:
    root = tmp_path / "results"
    small_tree(root)
    with metricsduck.connect(root) as store:
        store.drift().fetchall()
    result = CliRunner().invoke(main, ["drift", str(root)], catch_exceptions=False)
    assert result.exit_code == 0
    assert not (root / ".metricsduck").exists()


# --- 6. lock_down reads the segments, and nothing else ----------------------------------------------

def test_lock_down_still_reads_segments_but_no_other_file(tmp_path: Path, refreshed) -> None:
    root, rng = refreshed
    write_run(root, rng, 3)                           # staged segments
    (cohort_dir(root, 1, KEYS[1]) / SAMPLES).unlink()  # a cached segment read in part
    with metricsduck.connect(root) as store:
        expected = contents(store)
        store.lock_down()
        assert contents(store) == expected
        statuses = {row[0] for row in store.sql(
            "SELECT status FROM drift WHERE item_kind = 'distribution'").fetchall()}
        assert "COMPARED" in statuses  # the samples were read after lock_down
        for sidecar in (cohort_dir(root, 0, KEYS[0]) / SAMPLES, cohort_dir(root, 3, KEYS[0]) / METRICS):
            with pytest.raises(duckdb.Error):
                store.sql("SELECT * FROM read_parquet(?)", [str(sidecar)]).fetchall()
        with pytest.raises(duckdb.Error):
            store.sql(f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'").fetchall()
    assert not (tmp_path / "out.csv").exists()


# --- 7. the staging folder goes with the store --------------------------------------------------------

@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private system temp folder, so staging folders of other processes do not count."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def staging(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("metricsduck-snapshot-"))


@pytest.mark.parametrize("use_cache", [True, False])
def test_the_staging_folder_is_removed_on_close(refreshed, private_tmp: Path, use_cache: bool) -> None:
    root, rng = refreshed
    write_run(root, rng, 3)
    assert staging(private_tmp) == []
    store = metricsduck.connect(root, use_cache=use_cache)
    first = store._snapshot.stage_dir
    assert first.is_dir() and any(first.iterdir()), "the fresh files were staged there"
    assert staging(private_tmp) == [first]
    store.drift().fetchall()
    store.close()
    assert staging(private_tmp) == []
    with metricsduck.connect(root, use_cache=use_cache) as store:
        store.drift().fetchall()
    assert staging(private_tmp) == []


def test_reload_sees_new_files_and_replaces_the_staging_folder(refreshed, private_tmp: Path) -> None:
    root, rng = refreshed
    with metricsduck.connect(root) as store:
        write_run(root, rng, 3)
        (cohort_dir(root, 0, KEYS[0]) / METRICS).unlink()
        first = store._snapshot.stage_dir
        store.reload()
        assert not first.exists(), "reload drops the old staging folder"
        assert staging(private_tmp) == [store._snapshot.stage_dir]
        assert_same(contents(store), read(root, use_cache=False), "after reload")
    assert staging(private_tmp) == []


def test_a_failed_connect_leaves_no_staging_folder(tmp_path: Path, private_tmp: Path, sql_dir: Path) -> None:
    root = tmp_path / "results"
    small_tree(root)
    (sql_dir / "views" / "broken.sql").write_text(
        "CREATE OR REPLACE VIEW broken AS SELECT no_such_column FROM facts_raw;\n")
    with pytest.raises(metricsduck.SqlFileError):
        metricsduck.connect(root, sql_dir=sql_dir)
    assert staging(private_tmp) == []


# --- 8. compaction and retirement --------------------------------------------------------------------

@pytest.mark.slow
def test_many_segments_are_compacted_and_retired_after_the_grace_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metricsduck.snapshot.segments, "MAX_SEGMENTS", 2)
    root = tmp_path / "results"
    rng = small_tree(root, runs=2)
    refresh(root)
    # one segment per source and refresh: the second refresh below is the first to compact.
    # The loop compares what segments hold; the end compares every view.
    held = ("facts_raw", "samples_raw", "bad_files", "drift")
    for run in range(2, 5):
        write_run(root, rng, run)
        refresh(root)
        per_source = Counter(name.split("-")[0] for name in referenced(root) | drift_segments(root))
        assert {"facts_raw", "samples_raw"} <= set(per_source) and max(per_source.values()) <= 2, per_source
        assert_same(read(root, names=held), read(root, use_cache=False, names=held), f"after refresh of run {run}")
    retired = segment_files(root) - referenced(root)
    assert retired, "segments replaced by compaction stay for stores still reading them"
    # a store opened now keeps working while another refresh compacts under it
    with metricsduck.connect(root) as store:
        write_run(root, rng, 5)
        expected = contents(store)
        refresh(root)
        assert contents(store) == expected
    monkeypatch.setattr(metricsduck.snapshot.segments, "RETIRED_GRACE_S", 0)
    for run in (6, 7):
        unreferenced = segment_files(root) - referenced(root)
        write_run(root, rng, run)
        refresh(root)
        assert not unreferenced & segment_files(root), "retired before this publish: deleted"
    assert_same(read(root), read(root, use_cache=False), "after retirement")


def test_compaction_keeps_only_the_live_rows_of_changed_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction merges segments by their live files: the old rows of a rewritten sidecar
    (still in an old segment) must not be merged in beside its new rows."""
    monkeypatch.setattr(metricsduck.snapshot.segments, "MAX_SEGMENTS", 1)
    root = tmp_path / "results"
    rng = small_tree(root, runs=2)
    refresh(root)
    write_cohort(root, rng, 0, KEYS[0])  # same identity and written_at, new values
    write_run(root, rng, 2)
    refresh(root)  # two segments per source > MAX_SEGMENTS: compacted
    assert max(Counter(name.split("-")[0] for name in referenced(root)).values()) == 1
    assert_same(read(root), read(root, use_cache=False), "after compaction")
