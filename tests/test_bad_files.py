"""Broken sidecars among good ones: reported with path and reason, never fatal.

DuckDB fails a whole read on one bad file; the snapshot isolates bad files by halving the
file list, and leaves out files that read but are not sidecars. The results for the good
cohorts must be exactly those of the same tree without the bad files.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main

START = datetime(2026, 3, 2, tzinfo=timezone.utc)


def write_tree(root: Path) -> None:
    for run in range(4):
        for target in ("a", "b", "c", "d", "e"):
            folder = root / f"run{run}" / "REPRODUCIBILITY" / "TR" / "CROSS_SECTIONAL" / target / "cohort=c"
            metricsduck.write_cohort_metrics(
                folder, run_id=f"run{run}", run_started_at=START + timedelta(days=run),
                written_at=START + timedelta(days=run, hours=1), stage="TR", view="CROSS_SECTIONAL",
                target=target, metrics={"score": 0.5 + 0.01 * run * (target == "a"), "name": "auc"},
                samples={"p": [0.1 * i + 0.01 * run for i in range(30)]})


def break_files(root: Path) -> dict[Path, str]:
    """Damage some sidecars of run 3 in different ways; returns path -> a word of the reason."""
    cohort = root / "run3" / "REPRODUCIBILITY" / "TR" / "CROSS_SECTIONAL"
    facts = {t: cohort / t / "cohort=c" / "telemetry_metrics.parquet" for t in "abcde"}
    samples = cohort / "a" / "cohort=c" / "telemetry_samples.parquet"
    facts["a"].write_bytes(b"")                                         # zero bytes
    facts["b"].write_bytes(facts["b"].read_bytes()[:200])                # truncated
    facts["c"].write_bytes(os.urandom(700))                              # random bytes
    pq.write_table(pa.table({"x": [1, 2, 3]}), facts["d"])              # foreign Parquet
    table = pq.read_table(facts["e"])                                    # a future version
    table = table.set_column(0, "schema_version", pa.array([2] * table.num_rows, pa.int32()))
    pq.write_table(table, facts["e"])
    wrong = pq.read_table(samples).drop_columns(["value"]).append_column(
        "value", pa.array(["not a number"] * pq.read_metadata(samples).num_rows))
    pq.write_table(wrong, samples)                                      # wrong type
    return {facts["a"]: "unreadable", facts["b"]: "unreadable", facts["c"]: "unreadable",
            facts["d"]: "not a metricsduck sidecar", facts["e"]: "schema_version 2 is newer",
            samples: "unreadable"}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[Path, str]]:
    """The same tree twice: one with damaged files, one with those files removed."""
    broken = tmp_path_factory.mktemp("broken")
    write_tree(broken)
    clean = tmp_path_factory.mktemp("clean")
    shutil.copytree(broken, clean, dirs_exist_ok=True)
    damaged = break_files(broken)
    for path in damaged:
        (clean / path.relative_to(broken)).unlink()
    return broken, clean, damaged


def drift_rows(root: Path) -> list[tuple]:
    with metricsduck.connect(root) as store:
        return store.sql("SELECT * EXCLUDE (run_started_at) FROM drift ORDER BY ALL").fetchall()


def test_every_bad_file_is_named_with_its_reason(trees) -> None:
    broken, _, damaged = trees
    with metricsduck.connect(broken) as store:
        bad = {Path(path): reason for path, _, reason in store.bad_files()}
    assert set(bad) == set(damaged)
    for path, word in damaged.items():
        assert word in bad[path], (path, bad[path])


def test_results_for_good_cohorts_equal_the_tree_without_bad_files(trees) -> None:
    broken, clean, _ = trees
    rows = drift_rows(broken)
    assert rows and rows == drift_rows(clean)


def test_cli_names_each_bad_file_on_stderr_and_still_answers(trees) -> None:
    broken, _, damaged = trees
    result = CliRunner().invoke(main, ["drift", str(broken), "--format", "csv"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) > 1
    warnings = [line for line in result.stderr.splitlines() if line.startswith("metricsduck: warning: skipped ")]
    assert len(warnings) == len(damaged)
    for path in damaged:
        assert any(str(path) in line for line in warnings)


def test_status_lists_bad_files(trees) -> None:
    broken, _, damaged = trees
    result = CliRunner().invoke(main, ["status", str(broken), "--format", "csv"])
    assert result.exit_code == 0
    assert f"data,bad files,{len(damaged)}" in result.stdout.splitlines()
    listed = [line for line in result.stdout.splitlines() if line.startswith("bad file,")]
    assert len(listed) == len(damaged)


def test_refresh_completes_over_the_good_files_and_leaves_bad_ones_alone(trees, tmp_path) -> None:
    broken, _, damaged = trees
    copy = tmp_path / "copy"
    shutil.copytree(broken, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with metricsduck.connect(copy) as store:
        summary = store.refresh()
    assert summary.failed == [] and summary.written > 0
    # every file that existed is byte-identical, the damaged ones included
    assert all(p.read_bytes() == data for p, data in before.items())
    damaged_dirs = {copy / p.relative_to(broken).parent for p in damaged if p.name.endswith("metrics.parquet")}
    for folder in damaged_dirs:
        assert not (folder / "telemetry_drift.parquet").exists()
