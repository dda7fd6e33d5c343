"""Shared fixtures: a cohort folder, one cohort-run's identity, configs and SQL folders."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from metricsduck.catalog import packaged_sql_dir
from metricsduck.config import Config, load_config

RUN_STARTED_AT = datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)
WRITTEN_AT = datetime(2025, 2, 3, 9, 30, 15, 123456, tzinfo=timezone.utc)
TARGET = "y_will_swing_high_60m_0.05"


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """A cross-sectional cohort folder (not yet created) in the layout of DESIGN §2."""
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
    """A private SQL folder holding a copy of the packaged V001 only."""
    folder = tmp_path / "sql"
    folder.mkdir()
    shutil.copy(packaged_sql_dir() / "V001__sources.sql", folder / "V001__sources.sql")
    return folder


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory):
    """A refreshed six-run demo tree (every injection present) and its open store."""
    import metricsduck
    from metricsduck.demo import write_demo

    root = tmp_path_factory.mktemp("demo_refreshed")
    injections = write_demo(root, runs=6, seed=0)
    with metricsduck.connect(root) as store:
        summary = store.refresh()
        yield store, injections, summary
