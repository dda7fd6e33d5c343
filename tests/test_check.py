"""`metricsduck check`: each fault of a tree is named once with its path; a sound tree is clean.

Most faults are planted in a copy of a small refreshed tree (five runs of three cohorts,
so it has drift, trend and rollup outputs); the refreshed demo tree shows a real tree is
clean. Every test also holds `check` to its promise of writing nothing.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import metricsduck
from metricsduck.check import Problem, check
from metricsduck.cli import main
from metricsduck.config import load_config
from metricsduck.writer import write_cohort_metrics

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
STAGE_DIR = Path("REPRODUCIBILITY") / "TARGET_RANKING"
CS = STAGE_DIR / "CROSS_SECTIONAL"
SS = STAGE_DIR / "SYMBOL_SPECIFIC"
RUNS = 5  # trend.min_runs: the last run has trend files


def cohort(run: int, target: str = "t_a") -> Path:
    """The folder of one cohort of the small tree, relative to its root."""
    if target == "t_s":
        return Path(f"run_{run}") / SS / "t_s" / "symbol=AAPL" / "cohort=s1"
    return Path(f"run_{run}") / CS / target / f"cohort={target[-1]}1"


def write_tree(root: Path, prefix: str = "telemetry") -> None:
    """Five runs of two cross-sectional cohorts and one symbol-specific one, refreshed."""
    config = None
    if prefix != "telemetry":
        saved = root / ".metricsduck" / "config.yaml"
        saved.parent.mkdir(parents=True)
        saved.write_text(f"safety:\n  telemetry:\n    files:\n      prefix: {prefix}\n", "utf-8")
        config = load_config(saved)
    for run in range(1, RUNS + 1):
        for target in ("t_a", "t_b", "t_s"):
            write_cohort_metrics(
                root / cohort(run, target), run_id=f"run_{run}",
                run_started_at=START + timedelta(days=run), written_at=START + timedelta(days=run, hours=1),
                stage="TARGET_RANKING", view="SYMBOL_SPECIFIC" if target == "t_s" else "CROSS_SECTIONAL",
                target=target, symbol="AAPL" if target == "t_s" else None,
                metrics={"mean_score": 0.6 - 0.02 * run, "task_type": "binary"}, git_commit="abc1234",
                samples={"oof": [0.01 * (i % 37) + 0.001 * run for i in range(80)]}, config=config,
            )
    with metricsduck.connect(root, config) as store:
        store.refresh()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check_template") / "results"
    write_tree(root)
    return root


@pytest.fixture
def tree(template: Path, tmp_path: Path) -> Path:
    """A private copy of the small refreshed tree, free to damage."""
    root = tmp_path / "results"
    shutil.copytree(template, root)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: object) -> Result:
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root (hidden ones too) with its bytes and mtime."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def checked(root: Path) -> list[Problem]:
    """The problems of the tree at root, checking that finding them wrote nothing."""
    before = snapshot(root)
    problems = check(root)
    assert snapshot(root) == before, "check changed the tree"
    return problems


def where(problems: list[Problem], root: Path) -> list[tuple[str, str]]:
    """`(path relative to root, kind)` of each problem."""
    return [(str(Path(p.path).relative_to(root)), p.kind) for p in problems]


def found(root: Path) -> list[tuple[str, str]]:
    return where(checked(root), root)


def rel(folder: Path, name: str) -> str:
    return str(folder / name)


# --- clean trees -----------------------------------------------------------------------------

def test_refreshed_demo_tree_is_clean_and_untouched(demo_store, runner: CliRunner) -> None:
    store, _, _ = demo_store
    before = snapshot(store.root)
    result = run(runner, "check", store.root, "--format", "json")
    assert (result.exit_code, result.stdout) == (0, "[]\n")
    assert snapshot(store.root) == before


def test_small_tree_is_clean(tree: Path, runner: CliRunner) -> None:
    names = {p.name for p in tree.rglob("*")}
    assert {"telemetry_drift.json", "telemetry_trend.json", "telemetry_rollup.json"} <= names
    before = snapshot(tree)
    result = run(runner, "check", tree)
    assert (result.exit_code, result.stdout) == (0, "path  problem  detail\n----  -------  ------\n")
    assert snapshot(tree) == before


def test_an_empty_folder_is_clean_and_a_missing_one_is_an_error(tmp_path: Path, runner: CliRunner) -> None:
    assert found(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    result = runner.invoke(main, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 4
    assert "nope: no such folder; give the results tree" in result.stderr


# --- sidecars ----------------------------------------------------------------------------------

def test_a_truncated_sidecar_is_named(tree: Path) -> None:
    path = tree / cohort(2) / "telemetry_metrics.parquet"
    path.write_bytes(path.read_bytes()[:200])
    problems = checked(tree)
    assert where(problems, tree) == [(rel(cohort(2), "telemetry_metrics.parquet"), "bad_sidecar")]
    assert problems[0].path == str(path) and "unreadable" in problems[0].message


def test_a_foreign_parquet_with_the_sidecar_name_is_named(tree: Path) -> None:
    path = tree / cohort(3, "t_s") / "telemetry_samples.parquet"
    pq.write_table(pa.table({"distribution": ["oof"], "value": [1.0]}), path)
    problems = checked(tree)
    assert where(problems, tree) == [(rel(cohort(3, "t_s"), "telemetry_samples.parquet"), "bad_sidecar")]
    assert "not a metricsduck sidecar" in problems[0].message


def test_a_sidecar_of_another_schema_version_is_named(tree: Path) -> None:
    path = tree / cohort(2, "t_b") / "telemetry_metrics.parquet"
    table = pq.read_table(path)
    older = table.set_column(0, "schema_version", pa.array([0] * table.num_rows, pa.int32()))
    pq.write_table(older.replace_schema_metadata(table.schema.metadata), path)
    problems = checked(tree)
    assert where(problems, tree) == [(rel(cohort(2, "t_b"), "telemetry_metrics.parquet"), "bad_sidecar")]
    assert "schema_version 0 is not 1" in problems[0].message


def test_a_broken_mark_is_named(tree: Path) -> None:
    marks = tree / ".metricsduck" / "marks"
    marks.mkdir(parents=True)
    (marks / "20260101T000000000000Z_deadbeef.parquet").write_bytes(b"PAR1 not really")
    assert found(tree) == [(".metricsduck/marks/20260101T000000000000Z_deadbeef.parquet", "bad_mark")]


def test_a_cohort_moved_under_another_target_is_an_identity_mismatch(tree: Path) -> None:
    moved = cohort(3, "t_b").parent / "cohort=a1"
    (tree / cohort(3, "t_a")).rename(tree / moved)
    problems = checked(tree)
    assert where(problems, tree) == [(rel(moved, "telemetry_metrics.parquet"), "identity_mismatch"),
                                     (rel(moved, "telemetry_samples.parquet"), "identity_mismatch")]
    for problem in problems:
        assert "the target folder is 't_b' but the file says 't_a'" in problem.message


def test_a_symbol_folder_that_disagrees_is_an_identity_mismatch(tree: Path) -> None:
    moved = cohort(4, "t_s").parent.parent / "symbol=MSFT" / "cohort=s1"
    (tree / moved.parent).mkdir()
    (tree / cohort(4, "t_s")).rename(tree / moved)
    problems = checked(tree)
    assert where(problems, tree) == [(rel(moved, "telemetry_metrics.parquet"), "identity_mismatch"),
                                     (rel(moved, "telemetry_samples.parquet"), "identity_mismatch")]
    assert "'symbol=MSFT' but the file says 'symbol=AAPL'" in problems[0].message


def test_a_sidecar_holding_two_cohort_runs_is_named(tree: Path) -> None:
    path = tree / cohort(1) / "telemetry_metrics.parquet"
    other = tree / cohort(2) / "telemetry_metrics.parquet"
    both = pa.concat_tables([pq.read_table(path), pq.read_table(other)])
    pq.write_table(both, path)
    problems = checked(tree)
    assert (rel(cohort(1), "telemetry_metrics.parquet"), "mixed_identity") in where(problems, tree)
    assert "run_id" in next(p.message for p in problems if p.kind == "mixed_identity")


# --- duplicates ----------------------------------------------------------------------------------

def test_a_cohort_run_written_twice_names_both_sidecars(tree: Path) -> None:
    copy = Path("run_2_rerun") / cohort(2).relative_to("run_2")
    shutil.copytree(tree / cohort(2), tree / copy)
    problems = checked(tree)
    assert where(problems, tree) == [
        (rel(cohort(2), "telemetry_metrics.parquet"), "duplicate"),
        (rel(cohort(2), "telemetry_samples.parquet"), "duplicate"),
        (rel(copy, "telemetry_metrics.parquet"), "duplicate"),
        (rel(copy, "telemetry_samples.parquet"), "duplicate"),
    ]
    original, rerun = (p for p in problems if p.path.endswith("metrics.parquet"))
    assert rerun.path in original.message and original.path in rerun.message
    assert "TARGET_RANKING:CROSS_SECTIONAL:t_a / run_2" in original.message
    # equal written_at: the later path wins, as in the facts view
    assert "this one is read" in rerun.message and f"{rerun.path} is read" in original.message


def test_a_cohort_folder_copied_under_a_new_cohort_name(tree: Path) -> None:
    copy = cohort(2).parent / "cohort=a2"
    shutil.copytree(tree / cohort(2), tree / copy)
    problems = found(tree)
    for folder in (cohort(2), copy):
        assert (rel(folder, "telemetry_metrics.parquet"), "duplicate") in problems
    assert (rel(copy, "telemetry_metrics.parquet"), "identity_mismatch") in problems
    assert {kind for _, kind in problems} == {"duplicate", "identity_mismatch"}


# --- mirrors -------------------------------------------------------------------------------------

MIRRORS = [
    cohort(2) / "telemetry_metrics.json",
    cohort(2, "t_s") / "telemetry_drift.json",
    cohort(RUNS, "t_b") / "telemetry_trend.json",
    cohort(3, "t_s").parent.parent.parent / "telemetry_rollup.json",  # view level
    Path("run_3") / STAGE_DIR / "telemetry_rollup.json",  # stage level
]


@pytest.mark.parametrize("mirror", MIRRORS, ids=lambda p: str(p).split("/")[-1] + "@" + str(p).split("/")[-2])
def test_an_edited_mirror_is_named_with_the_first_difference(tree: Path, mirror: Path) -> None:
    document = json.loads((tree / mirror).read_text("utf-8"))
    document["identity"]["run_id"] = "run_9"
    (tree / mirror).write_text(json.dumps(document, indent=2), "utf-8")
    problems = checked(tree)
    assert where(problems, tree) == [(str(mirror), "mirror_mismatch")]
    assert "identity.run_id is \"run_9\" in the mirror, \"run_" in problems[0].message


def test_an_edited_metric_value_is_named(tree: Path) -> None:
    mirror = tree / cohort(1, "t_b") / "telemetry_metrics.json"
    mirror.write_text(mirror.read_text("utf-8").replace('"value": 0.58', '"value": 0.85'), "utf-8")
    [problem] = checked(tree)
    assert (problem.path, problem.kind) == (str(mirror), "mirror_mismatch")
    assert "metrics.mean_score.value is 0.85 in the mirror, 0.58 in the Parquet" in problem.message


def test_a_mirror_that_is_not_json_is_named(tree: Path) -> None:
    (tree / cohort(4) / "telemetry_drift.json").write_text("{not json", "utf-8")
    assert found(tree) == [(rel(cohort(4), "telemetry_drift.json"), "mirror_mismatch")]


@pytest.mark.parametrize("mirror", MIRRORS[:3], ids=lambda p: str(p).split("/")[-1])
def test_a_deleted_mirror_is_named(tree: Path, mirror: Path) -> None:
    (tree / mirror).unlink()
    assert found(tree) == [(str(mirror), "missing_mirror")]


def test_a_mirror_without_its_parquet_is_named(tree: Path) -> None:
    (tree / cohort(RUNS) / "telemetry_trend.parquet").unlink()
    assert found(tree) == [(rel(cohort(RUNS), "telemetry_trend.json"), "mirror_without_parquet")]


def test_schema_ids_are_checked_in_json_and_parquet(tree: Path) -> None:
    mirror = tree / cohort(2) / "telemetry_drift.json"
    text = mirror.read_text("utf-8")
    mirror.write_text(text.replace("metricsduck/drift/v2", "metricsduck/drift/v9"), "utf-8")
    parquet = tree / cohort(RUNS, "t_s") / "telemetry_trend.parquet"
    pq.write_table(pq.read_table(parquet).replace_schema_metadata(None), parquet)
    assert found(tree) == [(rel(cohort(2), "telemetry_drift.json"), "schema_mismatch"),
                           (rel(cohort(RUNS, "t_s"), "telemetry_trend.parquet"), "schema_mismatch")]


# --- orphans and leftovers -------------------------------------------------------------------------

def test_outputs_whose_facts_are_gone_are_orphans(tree: Path) -> None:
    for name in ("telemetry_metrics.parquet", "telemetry_metrics.json"):
        (tree / cohort(RUNS) / name).unlink()
    assert found(tree) == [(rel(cohort(RUNS), name), "orphan") for name in (
        "telemetry_drift.json", "telemetry_drift.parquet", "telemetry_samples.parquet",
        "telemetry_trend.json", "telemetry_trend.parquet")]


def test_a_leftover_temporary_file_is_named(tree: Path) -> None:
    leftover = cohort(3) / ".telemetry_drift.parquet.k2j4h1x9.tmp"
    (tree / leftover).write_bytes(b"half a file")
    assert found(tree) == [(str(leftover), "temp_file")]


def test_the_configured_prefix_names_the_files(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_tree(root, prefix="metrics")
    assert (root / cohort(1) / "metrics_metrics.parquet").exists()
    assert found(root) == []
    (root / cohort(RUNS)).joinpath("metrics_metrics.parquet").unlink()
    (root / cohort(RUNS)).joinpath("metrics_metrics.json").unlink()
    assert {kind for _, kind in found(root)} == {"orphan"}


# --- catalog and config --------------------------------------------------------------------------

def test_an_out_of_date_catalog_is_named_and_not_touched(tree: Path) -> None:
    path = metricsduck.init(tree)
    assert found(tree) == []
    con = duckdb.connect(str(path))
    con.execute("UPDATE metricsduck_catalog SET fingerprint = 'x' WHERE name = 'drift_scalar_of'")
    con.execute("INSERT INTO metricsduck_catalog VALUES ('gone_view', 'VIEW', 'y', 'views/gone_view.sql')")
    con.close()
    before = path.read_bytes()
    problems = checked(tree)
    assert where(problems, tree) == [(".metricsduck/catalog.duckdb", "catalog")]
    assert problems[0].message == ("out of date for 2 definition(s) (drift_scalar_of, gone_view): "
                                   "run `metricsduck init` to rebuild it")
    assert path.read_bytes() == before


def test_a_catalog_that_cannot_be_opened_is_named(tree: Path) -> None:
    (tree / ".metricsduck").mkdir(exist_ok=True)
    (tree / ".metricsduck" / "catalog.duckdb").write_bytes(b"not a database")
    assert found(tree) == [(".metricsduck/catalog.duckdb", "catalog")]


def test_an_invalid_config_is_a_problem_row(tree: Path, tmp_path: Path, runner: CliRunner) -> None:
    config = tmp_path / "safety.yaml"
    config.write_text("safety:\n  telemetry:\n    drift:\n      psi_wrn: 0.1\n", "utf-8")
    before = snapshot(tree)
    result = run(runner, "check", tree, "--config", config, "--format", "json")
    assert result.exit_code == 1
    [row] = json.loads(result.stdout)
    assert (row["path"], row["problem"]) == (str(config), "config")
    assert "psi_wrn" in row["detail"]
    result = run(runner, "check", tree, "--config", tmp_path / "missing.yaml", "--format", "csv")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith(f"{tmp_path / 'missing.yaml'},config,")
    assert snapshot(tree) == before


def test_the_root_saved_config_is_checked_too(tree: Path) -> None:
    saved = tree / ".metricsduck" / "config.yaml"
    saved.write_text("safety: {telemetry: {trend: {window: -1}}}\n", "utf-8")
    assert found(tree) == [(".metricsduck/config.yaml", "config")]


# --- the command -------------------------------------------------------------------------------

def test_json_output_has_one_object_per_problem_and_exit_code_1(tree: Path, runner: CliRunner) -> None:
    (tree / cohort(1, "t_b") / "telemetry_drift.json").unlink()
    (tree / cohort(2, "t_b") / ".telemetry_metrics.json.abc.tmp").write_bytes(b"")
    before = snapshot(tree)
    result = run(runner, "check", tree, "--format", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [list(row) for row in rows] == [["path", "problem", "detail"]] * 2
    assert [(r["path"], r["problem"]) for r in rows] == [
        (str(tree / cohort(1, "t_b") / "telemetry_drift.json"), "missing_mirror"),
        (str(tree / cohort(2, "t_b") / ".telemetry_metrics.json.abc.tmp"), "temp_file"),
    ]
    assert all(r["detail"] for r in rows)
    assert snapshot(tree) == before


def test_problems_can_go_to_a_file(tree: Path, tmp_path: Path, runner: CliRunner) -> None:
    (tree / cohort(1) / "telemetry_metrics.json").unlink()
    out = tmp_path / "problems.csv"
    result = run(runner, "check", tree, "--format", "csv", "-o", out)
    assert (result.exit_code, result.stdout) == (1, "")
    assert out.read_text("utf-8").splitlines()[0] == "path,problem,detail"


def test_problems_are_plain_values_for_python() -> None:
    problem = Problem("a/b.parquet", "orphan", "gone")
    assert problem.row() == ("a/b.parquet", "orphan", "gone")
    assert sorted([Problem("b", "x", ""), problem]) == [problem, Problem("b", "x", "")]
