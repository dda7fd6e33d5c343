"""`refresh --engine spark` (metricsduck/spark.py) on a real Spark, `local[2]`: the files it
writes are the local refresh's, byte for byte, however many parts the keys are cut into."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main
from metricsduck.errors import InputError
from metricsduck.spark import refresh_spark
from test_sharding import edge_tree

PARTITIONS = (1, 2, 3, 7)
OUTPUTS = ("drift", "trend", "rollup")


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """One Spark session for the module: starting the JVM is most of a small refresh."""
    missing = [what for what, there in (("pyspark", importlib.util.find_spec("pyspark")),
                                        ("java", os.environ.get("JAVA_HOME") or shutil.which("java"))) if not there]
    if missing:
        message = f"{' and '.join(missing)} missing (pip install -e '.[dev]'; apt-get install openjdk-17-jre-headless)"
        if os.environ.get("METRICSDUCK_REQUIRE_SPARK") == "1":
            pytest.fail(f"{message} but METRICSDUCK_REQUIRE_SPARK=1")
        pytest.skip(f"{message}; set METRICSDUCK_REQUIRE_SPARK=1 to make this a failure")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("metricsduck tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def outputs(root: Path) -> dict[str, bytes]:
    """Every drift, trend and rollup file of the tree, by its path inside the tree."""
    found = {}
    for path in sorted(root.rglob("*_*.*")):
        artifact = path.stem.rsplit("_", 1)[-1]
        if artifact in OUTPUTS and ".metricsduck" not in path.parts:
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def assert_same_outputs(expected: dict[str, bytes], got: dict[str, bytes], what: str) -> None:
    assert sorted(got) == sorted(expected), f"{what}: other files ({len(got)} against {len(expected)})"
    differ = [name for name in expected if got[name] != expected[name]]
    assert not differ, f"{what}: {len(differ)} files differ, e.g. {differ[:3]}"


def test_the_demo_tree_refreshed_on_spark_gives_the_local_files_at_every_partition_count(
        spark, demo_trees, tmp_path: Path) -> None:
    expected = outputs(demo_trees.shared(runs=4, refreshed=True).root)
    assert {name.rsplit("_", 1)[-1] for name in expected} >= {"drift.parquet", "drift.json", "rollup.parquet"}
    for count in PARTITIONS:
        root = demo_trees.copy(tmp_path / f"parts{count}", runs=4).root
        summary = refresh_spark(root, spark=spark, partitions=count)
        assert summary.failed == [] and summary.written == len(expected) and len(summary.runs) == 4
        assert_same_outputs(expected, outputs(root), f"demo tree in {count} parts")


def test_an_edge_tree_refreshed_on_spark_gives_the_local_files_at_every_partition_count(
        spark, tmp_path: Path) -> None:
    """Sub-second starts, keys skipping runs, NaN and ±inf, ties, empty and one-value
    distributions, text samples, a bad run's mark, two stages (test_sharding.edge_tree)."""
    local = edge_tree(tmp_path / "local", seed=1)
    with metricsduck.connect(local, use_cache=False) as store:
        summary = store.refresh()
    expected = outputs(local)
    for count in PARTITIONS:
        root = tmp_path / f"parts{count}"
        shutil.copytree(local, root, ignore=lambda _, names: [n for n in names if n.rsplit("_", 1)[-1].split(".")[0]
                                                              in OUTPUTS or n == ".metricsduck"])
        (root / ".metricsduck").mkdir()
        shutil.copytree(local / ".metricsduck" / "marks", root / ".metricsduck" / "marks")
        got = refresh_spark(root, spark=spark, partitions=count)
        assert (got.alerts, got.failed) == (summary.alerts, [])
        assert_same_outputs(expected, outputs(root), f"edge tree in {count} parts")


def test_the_cli_refreshes_on_spark_and_a_second_refresh_writes_nothing(spark, demo_trees, tmp_path: Path) -> None:
    root = demo_trees.copy(tmp_path / "tree", runs=2).root
    runner = CliRunner()
    args = ["refresh", str(root), "--engine", "spark", "--partitions", "2", "--format", "csv"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "runs refreshed,2" in first.stdout and "files failed,0" in first.stdout
    assert "metricsduck: phase 1" in first.stderr
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert "files written,0" in second.stdout
    assert spark.sparkContext._jsc is not None  # the session it found was the test's, and it is kept


@pytest.mark.parametrize(("args", "message"), [
    (["--run", "r1", "--engine", "spark"], "--engine spark refreshes every run; leave out --run"),
    (["--partitions", "2"], "--partitions and --spark-master need --engine spark"),
    (["--engine", "spark", "--partitions", "0"], "0 is not in the range x>=1"),
])
def test_cli_mistakes_are_named(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["refresh", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_root_spark_cannot_write_into_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"s3a://bucket/tree: .* s3a:// root is not supported yet; mount it"):
        refresh_spark("s3a://bucket/tree")
    with pytest.raises(InputError, match="no such folder"):
        refresh_spark(tmp_path / "missing")
