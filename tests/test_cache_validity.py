"""Cached results stay valid exactly as long as the definitions and settings they come from.

Cached drift follows the fingerprint of `drift_computed` (and everything it is built on)
and the settings those read; the trend and rollup files follow the fingerprints of the
definitions behind them. Each change below is made to a refreshed tree, and the test
checks both what is recomputed and what is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import metricsduck
from metricsduck.config import load_config
from metricsduck.refresh import stale_runs
from test_cache import write_run

CONFIG = ("safety:\n  telemetry:\n    trend:\n      window: {window}\n      min_runs: 2\n"
          "    drift:\n      psi_bins: {bins}\n")
RUNS = 3


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A refreshed three-run tree whose every cohort-run has a trend; never modified: copy it."""
    base = tmp_path_factory.mktemp("validity")
    root = base / "tree"
    rng = np.random.default_rng(11)
    for run in range(RUNS):
        write_run(root, rng, run)
    (base / "config.yaml").write_text(CONFIG.format(window=3, bins=10))
    with metricsduck.connect(root, load_config(base / "config.yaml")) as store:
        store.refresh()
        return root, store.sql("SELECT count(*) FROM cohort_runs").fetchall()[0][0]


@pytest.fixture
def tree(refreshed, tmp_path: Path, sql_dir: Path, make_config):
    """This test's copy of the refreshed tree (copy2 keeps the mtimes the cache compares), and
    a way to open it with other settings or the test's own SQL folder."""
    source, cohort_runs = refreshed
    root = tmp_path / "tree"
    shutil.copytree(source, root)

    def open_store(window: int = 3, bins: int = 10):
        return metricsduck.connect(root, make_config(CONFIG.format(window=window, bins=bins)), sql_dir=sql_dir)

    return root, open_store, cohort_runs


def files(root: Path, kind: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(f"telemetry_{kind}.*"))}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_a_refreshed_tree_has_nothing_stale(tree):
    _, open_store, cohort_runs = tree
    with open_store() as store:
        assert store.snapshot.stale == 0
        assert store.sql("SELECT count(*) FROM cache_drift").fetchall() == [(cohort_runs,)]
        assert stale_runs(store) == []


@pytest.mark.parametrize("change", ["trend.window", "trends_of", "rollup_stage_of"])
def test_a_trend_or_rollup_change_keeps_every_cached_drift_row(tree, sql_dir, change):
    root, open_store, cohort_runs = tree
    drift_before = files(root, "drift")
    trend_before = files(root, "trend")
    window = 3
    if change == "trend.window":
        window = 2
    elif change == "trends_of":  # a different flatness rule: every direction is 'flat'
        edit(sql_dir / "macros" / "trends_of.sql", "        END AS direction\n    FROM fits",
             "        END AS direction_old, 'flat' AS direction\n    FROM fits")
    else:
        edit(sql_dir / "macros" / "rollup_stage_of.sql", "c.run_id, r.run_started_at",
             "c.run_id, r.run_started_at + INTERVAL 0 DAY AS run_started_at")

    with open_store(window=window) as store:
        assert store.snapshot.stale == 0  # not one drift row to recompute
        assert store.sql("SELECT count(*) FROM cache_drift").fetchall() == [(cohort_runs,)]
        # the runs' trend and rollup files came from other definitions: they are redone
        assert stale_runs(store) == [f"run{run:02d}" for run in range(RUNS)]
        summary = store.refresh()
        assert stale_runs(store) == []

    assert files(root, "drift") == drift_before  # the cached rows, rendered again, byte for byte
    if change == "rollup_stage_of":
        assert files(root, "trend") == trend_before
    else:
        assert files(root, "trend") != trend_before
        assert summary.written > 0
    with open_store(window=window) as store:  # and the next store has nothing left to do
        assert store.snapshot.stale == 0
        assert stale_runs(store) == []


@pytest.mark.parametrize("change", ["drift.psi_bins", "drift_scalar_of", "two_sample_bins"])
def test_a_drift_change_makes_every_cached_drift_row_stale(tree, sql_dir, change):
    _, open_store, cohort_runs = tree
    bins = 10
    if change == "drift.psi_bins":
        bins = 5
    elif change == "drift_scalar_of":
        edit(sql_dir / "macros" / "drift_scalar_of.sql", "THEN t.delta / t.baseline_std",
             "THEN t.delta / t.baseline_std + 0")
    else:
        edit(sql_dir / "macros" / "two_sample_bins.sql", "AS contribution", "+ 0 AS contribution")

    with open_store(bins=bins) as store:
        assert store.snapshot.stale == cohort_runs
        assert store.sql("SELECT count(*) FROM cache_drift").fetchall() == [(0,)]
        assert stale_runs(store) == [f"run{run:02d}" for run in range(RUNS)]
        store.refresh()
    with open_store(bins=bins) as store:
        assert store.snapshot.stale == 0


def test_documentation_edits_invalidate_nothing(tree, sql_dir):
    _, open_store, _ = tree
    for path in [*sorted((sql_dir / "views").glob("*.sql")), *sorted((sql_dir / "macros").glob("*.sql"))]:
        path.write_text("-- reviewed\n" + path.read_text())

    with open_store() as store:
        assert store.snapshot.stale == 0
        assert stale_runs(store) == []


def test_a_new_cohort_in_a_run_makes_that_run_and_stage_stale_and_nothing_else(tree):
    # q_value is Benjamini-Hochberg over a run x stage x baseline kind: a cohort added to run01
    # changes the family of every cohort-run of run01's stage, and no other run's drift.
    from test_cache import STAGE, write_cohort

    root, open_store, _ = tree
    with open_store() as store:
        in_run = store.sql("SELECT count(*) FROM cohort_runs WHERE run_id = 'run01' AND stage = ?",
                           params=[STAGE]).fetchall()[0][0]
    write_cohort(root, np.random.default_rng(5), 1, ("CROSS_SECTIONAL", "t_new", None))
    with open_store() as store:
        assert store.snapshot.stale == in_run + 1
        assert store.sql("SELECT DISTINCT run_id FROM cache_stale").fetchall() == [("run01",)]
        assert stale_runs(store) == ["run01"]


def test_a_cache_from_before_text_samples_is_rebuilt_not_misread(tree):
    """A v1 cache (metricsduck 0.1, before `value_text`) holds samples segments without the
    column. It is made here from a refreshed cache: its samples segment loses the column and
    the manifest is relabelled v1 with that segment's new size and mtime, so nothing but the
    version tells it apart. Reading its segments by the v2 column list would fail; the cache is
    derived, so the store rebuilds it and answers as a store without a cache does."""
    import json

    import pyarrow.parquet as pq

    from metricsduck.snapshot.segments import SEGMENTS_KEY, cache_dir
    from metricsduck.vocab import SCHEMA_METADATA_KEY

    root, open_store, _ = tree
    folder = cache_dir(root)
    (segment,) = folder.glob("samples_raw-*.parquet")
    pq.write_table(pq.read_table(segment).drop_columns(["value_text"]), segment)
    manifest = pq.read_table(folder / "manifest.parquet")
    metadata = dict(manifest.schema.metadata)
    segments = json.loads(metadata[SEGMENTS_KEY])
    for entry in segments:
        if entry["name"] == segment.name:
            entry.update(size=segment.stat().st_size, mtime_ns=segment.stat().st_mtime_ns)
    metadata.update({SCHEMA_METADATA_KEY: b"metricsduck/cache-manifest/v1",
                     SEGMENTS_KEY: json.dumps(segments).encode()})
    pq.write_table(manifest.replace_schema_metadata(metadata), folder / "manifest.parquet")

    query = "SELECT * FROM drift ORDER BY ALL"
    with open_store() as store:
        assert ("cache", "sidecars read from the cache", "0") in store.status()  # not trusted
        rows, config = store.sql(query).fetchall(), store.config
    with metricsduck.connect(root, config, use_cache=False) as plain:
        assert rows == plain.sql(query).fetchall() != []
