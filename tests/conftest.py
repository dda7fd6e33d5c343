"""Shared fixtures: a cohort folder, one cohort-run's identity, configs and a SQL folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from metricsduck.catalog import packaged_sql_dir
from metricsduck.config import Config, load_config

RUN_STARTED_AT = datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)
WRITTEN_AT = datetime(2025, 2, 3, 9, 30, 15, 123456, tzinfo=timezone.utc)
TARGET = "y_will_swing_high_60m_0.05"


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """A cross-sectional cohort folder (not yet created) in the layout of docs/design.md §2."""
    return (tmp_path / "run_a" / "REPRODUCIBILITY" / "TARGET_RANKING" / "CROSS_SECTIONAL"
            / TARGET / "cohort=cr_2025Q1_0a1b2c3d")


@pytest.fixture
def identity() -> dict:
    """The keyword arguments that name one cross-sectional cohort-run (written_at pinned)."""
    return {
        "run_id": "run_2025-02-03",
        "run_started_at": RUN_STARTED_AT,
        "stage": "TARGET_RANKING",
        "view": "CROSS_SECTIONAL",
        "target": TARGET,
        "written_at": WRITTEN_AT,
    }


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Config]:
    """Write YAML text to a file and load it with `load_config`, as a user would."""
    counter = iter(range(1_000_000))

    def make(text: str) -> Config:
        path = tmp_path / f"config_{next(counter)}.yaml"
        path.write_text(text, encoding="utf-8")
        return load_config(path)

    return make


@pytest.fixture
def sql_dir(tmp_path: Path) -> Path:
    """A private copy of the packaged SQL folder (views, macros, ledger), for a test to edit."""
    folder = tmp_path / "sql"
    shutil.copytree(packaged_sql_dir(), folder, ignore=shutil.ignore_patterns("history", "__pycache__"))
    return folder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the files under tests/golden/ from this run instead of comparing with them")


# --- demo trees built once per session -------------------------------------------------------
#
# `write_demo` and a refresh of its tree cost seconds each; a dozen modules used to build the
# same trees for themselves. `demo_trees` builds each (runs, seed[, refreshed]) tree once for
# the whole session: the first xdist worker that needs it builds it under a file lock in the
# session's shared temporary folder, the others wait for it and reuse it. A test never writes
# into a shared tree: it copies it (`demo_trees.copy`, shutil.copytree, whose copy2 keeps the
# mtimes the cache manifest and the stale check compare) into its own folder.


@dataclass(frozen=True)
class Demo:
    root: Path
    injections: list  # what write_demo returned
    summary: Any  # the RefreshSummary of the refresh that made a refreshed tree, else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


class DemoTrees:
    """Demo trees keyed by every `write_demo` argument a test passes (runs, seed), plain or
    refreshed once with a plain `refresh()`; built on first use, then read-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[tuple[int, int, bool], Demo] = {}

    def shared(self, *, runs: int, seed: int = 0, refreshed: bool = False) -> Demo:
        """The shared tree itself: read it or copy it, never write into it (nor open a store
        that refreshes it)."""
        key = (runs, seed, refreshed)
        if key not in self._known:
            name = f"runs={runs},seed={seed}" + (",refreshed" if refreshed else "")
            entry, done = self.folder / name, self.folder / f"{name}.pickle"
            with _locked(self.folder / f"{name}.lock"):
                if not done.exists():
                    shutil.rmtree(entry, ignore_errors=True)  # left half-built by a crashed worker
                    self._build(entry / "tree", runs, seed, refreshed, done)
            injections, summary = pickle.loads(done.read_bytes())
            self._known[key] = Demo(entry / "tree", injections, summary)
        return self._known[key]

    def _build(self, root: Path, runs: int, seed: int, refreshed: bool, done: Path) -> None:
        import metricsduck
        from metricsduck.demo import write_demo

        summary = None
        if refreshed:  # the plain tree (under its own lock: no worker takes them the other way round)
            plain = self.shared(runs=runs, seed=seed)
            shutil.copytree(plain.root, root)
            injections = plain.injections
            with metricsduck.connect(root) as store:
                summary = store.refresh()
            assert summary.failed == [], summary.failed
        else:
            injections = write_demo(root, runs=runs, seed=seed)
        tmp = done.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps((injections, summary)))
        os.replace(tmp, done)  # last: the tree is complete once this file exists

    def copy(self, dest: Path, *, runs: int, seed: int = 0, refreshed: bool = False) -> Demo:
        """A private copy of the tree at `dest` (which must not exist yet), free to change."""
        shared = self.shared(runs=runs, seed=seed, refreshed=refreshed)
        shutil.copytree(shared.root, dest)
        return Demo(Path(dest), shared.injections, shared.summary)


def pytest_configure(config: pytest.Config) -> None:
    # `make test` runs one worker per core (pytest-xdist): DuckDB's one thread per core in
    # each of them, and in the CLI processes and kernels they start, would oversubscribe
    # the cores (METRICSDUCK_THREADS caps every connection metricsduck opens)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("METRICSDUCK_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def built_catalogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's folder of built catalogs (`catalog.built`), shared by its workers and
    the processes they start, instead of the user's cache folder."""
    from metricsduck.catalog.built import CACHE_ENV

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(base / "built_catalogs")
    yield base / "built_catalogs"
    if before is None:
        os.environ.pop(CACHE_ENV)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def demo_trees(tmp_path_factory: pytest.TempPathFactory) -> DemoTrees:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, shared by this session's workers (and no other session)
    return DemoTrees(base / "shared_demo_trees")


@pytest.fixture(scope="session")
def demo_store(demo_trees: DemoTrees, tmp_path_factory: pytest.TempPathFactory):
    """A refreshed six-run demo tree (every injection present) and its open store."""
    import metricsduck

    demo = demo_trees.copy(tmp_path_factory.mktemp("demo_refreshed") / "tree", runs=6, seed=0, refreshed=True)
    with metricsduck.connect(demo.root) as store:
        yield store, demo.injections, demo.summary
