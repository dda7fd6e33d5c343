"""`metricsduck import`: sidecars backfilled from the pipeline's own JSON files.

The oracle is the demo tree as the tracker wrote it: the same tree with every sidecar
deleted and then imported must hold the same facts (all but `written_at`, which an import
takes from the file's time) and give the same scalar drift. The pipeline's files are
compared byte for byte and by modification time before and after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import metricsduck
from metricsduck.cli import main
from metricsduck.importer import import_tree

RUNS = 5  # the tree test_demo.py uses, built once per session
PIPELINE_FILES = ("metadata.json", "metrics.json", "audit_report.json")
FACT_COLUMNS = ("run_id, run_started_at, stage, view, target, symbol, cohort_id, baseline_key, git_commit, "
                "config_hash, data_fingerprint, seed, good, audit_valid, metric, kind, value, value_text")


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def pipeline_state(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*.json")) if p.name in PIPELINE_FILES}


def every_file(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def facts(root: Path) -> list[tuple]:
    with metricsduck.connect(root, use_cache=False) as store:
        return store.sql(f"SELECT {FACT_COLUMNS} FROM facts ORDER BY ALL").fetchall()


def scalar_drift(root: Path) -> list[tuple]:
    with metricsduck.connect(root, use_cache=False) as store:
        return store.sql("SELECT baseline_key, run_id, baseline_kind, baseline_run_id, item, tier, status, "
                         "current_value, baseline_value, rel_delta FROM drift WHERE item_kind = 'metric' "
                         # not the missing-value shares of samples, which the pipeline's JSON lacks
                         "AND item IN (SELECT metric FROM facts) ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def original(demo_trees) -> Path:
    return demo_trees.shared(runs=RUNS, seed=0).root


@pytest.fixture
def bare(original: Path, demo_trees, tmp_path: Path) -> Path:
    """The demo tree as a pipeline without metricsduck leaves it: no sidecar at all."""
    root = demo_trees.copy(tmp_path / "tree", runs=RUNS, seed=0).root
    for path in root.rglob("telemetry_*"):
        path.unlink()
    return root


def test_import_gives_the_facts_and_drift_the_tracker_wrote(original, bare):
    cohorts = 60 * RUNS
    before = pipeline_state(bare)
    files = every_file(bare)

    dry = run("import", bare, "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == [{"item": "would import", "value": cohorts},
                                      {"item": "already had sidecars", "value": 0},
                                      {"item": "could not read", "value": 0}]
    assert every_file(bare) == files  # a dry run writes nothing

    result = run("import", bare, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0] == {"item": "imported", "value": cohorts}
    assert f"`metricsduck refresh {bare}`" in result.stderr
    assert pipeline_state(bare) == before  # read, never changed (bytes and times)

    assert facts(bare) == facts(original)
    assert scalar_drift(bare) == scalar_drift(original)
    with metricsduck.connect(bare, use_cache=False) as store:
        # the demo's audit verdicts and good flags came along: last_good_run skips the bad run
        assert store.sql("SELECT count(*) FROM drift WHERE baseline_kind = 'last_good_run' "
                         "AND baseline_run_id = 'demo_run_04'").fetchall() == [(0,)]

    written = every_file(bare)
    again = import_tree(bare)
    assert (len(again.imported), again.present, again.failed) == (0, cohorts, [])
    assert every_file(bare) == written  # idempotent: the second import writes nothing


def test_bad_folders_are_named_and_the_rest_imported(bare):
    first = next(bare.rglob("cohort=*"))
    (first / "metrics.json").write_bytes((first / "metrics.json").read_bytes()[:40])  # half-written
    second = sorted(bare.rglob("cohort=*"))[1]
    (second / "metrics.json").unlink()
    before = pipeline_state(bare)

    result = run("import", bare, "--format", "json")
    assert result.exit_code == 4
    assert f"could not import {first}: {first / 'metrics.json'}: not readable JSON" in result.stderr
    assert f"could not import {second}: no metrics.json: nothing to import" in result.stderr
    assert json.loads(result.stdout)[0] == {"item": "imported", "value": 60 * RUNS - 2}
    assert pipeline_state(bare) == before
    assert not list(first.glob("telemetry_*")) and not list(second.glob("telemetry_*"))


def test_a_pipeline_tree_without_metadata_takes_identity_from_folders_and_time_from_the_run_id(tmp_path):
    root = tmp_path / "results"
    cohort = root / "2025-12-14_12-00-00" / "REPRODUCIBILITY" / "TARGET_RANKING" / "SYMBOL_SPECIFIC" / "y_up"
    cohort = cohort / "symbol=AAPL" / "cohort=sy_2025Q4_00000000"
    cohort.mkdir(parents=True)
    (cohort / "metrics.json").write_text(json.dumps(
        {"auc": 0.61, "r2": "nan", "fold_scores": [0.6, 0.62, 0.58], "per_model": {"lgbm": {"auc": 0.63}},
         "metric_name": "roc_auc", "predicted": ["up", "down", "up"]}))
    os.utime(cohort / "metrics.json", (1_765_713_600, 1_765_713_600))  # 2025-12-14 12:00:00 UTC

    summary = import_tree(root)
    assert (summary.imported, summary.failed) == ([cohort], [])
    with metricsduck.connect(root) as store:
        rows = store.sql("SELECT run_id, strftime(run_started_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S'), "
                         "baseline_key, cohort_id, metric, kind, value, value_text, "
                         "epoch(written_at) FROM facts ORDER BY metric").fetchall()
        samples = store.sql("SELECT distribution, value, value_text FROM samples ORDER BY ALL").fetchall()
    start = ("2025-12-14_12-00-00", "2025-12-14 12:00:00", "TARGET_RANKING:SYMBOL_SPECIFIC:y_up:AAPL",
             "sy_2025Q4_00000000")
    assert [row[:4] for row in rows] == [start] * 4
    assert [row[4:8] for row in rows] == [("auc", "number", 0.61, None), ("metric_name", "text", None, "roc_auc"),
                                          ("per_model.lgbm.auc", "number", 0.63, None),
                                          ("r2", "number", None, "nan")]
    assert {row[8] for row in rows} == {1_765_713_600}
    # lists of numbers are numeric samples, lists of strings categorical ones
    assert samples == [("fold_scores", 0.58, None), ("fold_scores", 0.6, None), ("fold_scores", 0.62, None),
                       ("predicted", None, "down"), ("predicted", None, "up"), ("predicted", None, "up")]


def test_a_run_without_a_start_time_is_refused_saying_what_to_add(tmp_path):
    cohort = tmp_path / "results" / "nightly" / "REPRODUCIBILITY" / "TR" / "CROSS_SECTIONAL" / "t" / "cohort=c"
    cohort.mkdir(parents=True)
    (cohort / "metrics.json").write_text('{"auc": 0.6}')

    result = run("import", tmp_path / "results")
    assert result.exit_code == 4
    assert ("no run_started_at, and run id 'nightly' is not a timestamp (YYYY-MM-DD_HH-MM-SS); add "
            "run_started_at") in result.stderr
    assert sorted(p.name for p in cohort.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_wrong_folder_is_an_error_not_an_empty_import(tmp_path, make):
    root = tmp_path / "results"
    if make == "empty":
        (root / "notes").mkdir(parents=True)
    result = run("import", root)
    assert result.exit_code == 4
    expected = "no such folder" if make == "missing" else "no cohort=<id> folders below a REPRODUCIBILITY folder"
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1
