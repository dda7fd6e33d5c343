"""Drift the cache does not hold is computed a batch of runs at a time (`Store.compute_drift`),
and DuckDB works within the memory and spill limits metricsduck sets (docs/design.md §12, docs/architecture.md §5).

The reference for every drift row is `connect(root, use_cache=False)`, whose `drift` is the
plain V005 view over every sidecar, computed in one query.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck import compute as compute_module
from metricsduck.cli import main
from metricsduck.engine import MEMORY_LIMIT_ENV, TEMP_LIMIT_ENV, THREADS_ENV, new_connection
from metricsduck.errors import InputError

ORDER = "ORDER BY baseline_key, run_id, baseline_kind, item_kind, item"


@pytest.fixture(scope="module")
def demo(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-run demo tree, never refreshed (no cache); tests must not write into it."""
    return demo_trees.copy(tmp_path_factory.mktemp("batched") / "results", runs=4, seed=5).root


@pytest.fixture(scope="module")
def plain(demo: Path) -> list[tuple]:
    with metricsduck.connect(demo, use_cache=False) as store:
        rows = store.sql(f"SELECT * FROM drift {ORDER}").fetchall()
    assert not (demo / ".metricsduck" / "cache").exists()
    return rows


def test_a_tree_never_refreshed_gets_the_same_drift_run_by_run(demo: Path, plain: list[tuple],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute_module, "BATCH_COMPARISONS", 1)  # every run a batch of its own
    calls = []
    with metricsduck.connect(demo) as store:
        cohort_runs = store.sql("SELECT count(*) FROM cohort_runs").fetchall()[0][0]
        assert store.compute_drift(progress=lambda done, total: calls.append((done, total))) == cohort_runs
        assert [total for _, total in calls] == [cohort_runs] * 4
        assert [done for done, _ in calls] == sorted(done for done, _ in calls) and calls[-1][0] == cohort_runs
        assert store.sql(f"SELECT * FROM drift {ORDER}").fetchall() == plain
        assert store.compute_drift() == 0  # nothing left to compute
        # the view no longer refers to the computing view once nothing is stale
        definition = store.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'drift'").fetchall()[0][0]
        assert "drift_computed" not in definition
    assert not (demo / ".metricsduck" / "cache").exists(), "computing drift writes nothing"


def test_drift_of_one_run_computes_that_run_only(demo: Path, plain: list[tuple]) -> None:
    with metricsduck.connect(demo) as store:
        latest, count = store.sql("SELECT run_id, cohort_runs FROM runs ORDER BY ordinal DESC LIMIT 1").fetchall()[0]
        relation = store.drift(run="latest")  # computes the latest run's drift first
        assert store.sql("SELECT count(*) FROM drift_fresh").fetchall()[0][0] > 0
        assert store.sql("SELECT count(DISTINCT run_id) FROM drift_fresh").fetchall()[0][0] == 1
        assert store.compute_drift(run=latest) == 0
        got = relation.order("baseline_key, run_id, baseline_kind, item_kind, item").fetchall()
        assert got == [row for row in plain if row[5] == latest]
        assert store.compute_drift() == 3 * count  # the three other runs, each as big as the demo's
        assert store.sql(f"SELECT * FROM drift {ORDER}").fetchall() == plain


def test_the_sql_command_computes_stale_drift_before_a_query_reading_it(
        demo: Path, plain: list[tuple], monkeypatch: pytest.MonkeyPatch) -> None:
    computed = []
    real = compute_module.compute_drift

    def compute_drift(store, runs=None, progress=None):
        computed.append(real(store, runs, progress))
        return computed[-1]

    monkeypatch.setattr(compute_module, "compute_drift", compute_drift)
    runner = CliRunner()
    facts = runner.invoke(main, ["sql", str(demo), "select count(*) AS n from facts", "--format", "json"])
    assert facts.exit_code == 0, facts.output
    assert computed == [] and "computing drift" not in facts.stderr  # no drift read, none computed

    result = runner.invoke(main, ["sql", str(demo), "SELECT count(*) AS n FROM Drift", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": len(plain)}]
    cohort_runs = len({(row[4], row[5]) for row in plain})  # (baseline_key, run_id): each has rows
    assert computed == [cohort_runs]
    assert f"computing drift: {cohort_runs}/{cohort_runs}" in result.stderr
    assert not (demo / ".metricsduck" / "cache").exists(), "computing drift writes nothing"


def test_cached_and_computed_drift_together_equal_the_plain_view(tmp_path: Path, demo_trees) -> None:
    root = demo_trees.copy(tmp_path / "results", runs=4, seed=5).root
    with metricsduck.connect(root) as store:
        runs = [r for (r,) in store.sql("SELECT run_id FROM runs ORDER BY ordinal").fetchall()]
        store.refresh(runs=runs[:2])  # the cache holds the drift of the first two runs
    with metricsduck.connect(root, use_cache=False) as store:
        expected = store.sql(f"SELECT * FROM drift {ORDER}").fetchall()
    with metricsduck.connect(root) as store:
        held = store.sql("SELECT count(*) FROM cache_drift").fetchall()[0][0]
        assert held == store.sql("SELECT count(*) FROM cohort_runs WHERE run_id IN (?, ?)", runs[:2]).fetchall()[0][0]
        assert store.compute_drift() == store.sql("SELECT count(*) FROM cohort_runs").fetchall()[0][0] - held
        assert store.sql(f"SELECT * FROM drift {ORDER}").fetchall() == expected
        store.refresh()  # the computed rows of stale runs are no reason to skip them
        assert store.status()[-1] == ("cache", "cohort-runs to refresh", "0")
        assert store.sql(f"SELECT * FROM drift {ORDER}").fetchall() == expected


# --- memory and spill limits -------------------------------------------------------------------

def setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]


def test_connections_get_the_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = duckdb.connect()
    reference.execute("SET memory_limit = '300MB'")
    reference.execute("SET max_temp_directory_size = '2GB'")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "300MB")
    monkeypatch.setenv(TEMP_LIMIT_ENV, "2GB")
    con = new_connection()
    for name in ("memory_limit", "max_temp_directory_size"):
        assert setting(con, name) == setting(reference, name)


def test_default_limits_leave_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default DuckDB may take 80% of the memory and 90% of the free disk; metricsduck
    gives it half the memory and a quarter of the spill folder's free space."""
    import os
    import shutil

    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.delenv(TEMP_LIMIT_ENV, raising=False)
    con = new_connection()
    reference = duckdb.connect()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    reference.execute(f"SET memory_limit = '{memory // 2 // 2**20}MB'")
    assert setting(con, "memory_limit") == setting(reference, "memory_limit")
    free = shutil.disk_usage(setting(con, "temp_directory")
                             if Path(setting(con, "temp_directory")).exists() else "/tmp").free
    reference.execute(f"SET max_temp_directory_size = '{max(free // 4 // 2**20, 1024)}MB'")
    # free space moves while the suite runs: compare the leading digits only
    assert setting(con, "max_temp_directory_size").split(".")[0] == \
        setting(reference, "max_temp_directory_size").split(".")[0]


def test_stores_spilling_at_once_keep_their_own_spill_files(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DuckDB before 2.0 names spill files the same in every instance: in one shared folder a
    second store overwrites the first one's spilled blocks ("Could not read enough bytes",
    seen with duckdb 1.4.4) and, on close, deletes them. DuckDB 2.0 names them per instance,
    so with it only the folder checks below can fail; with 1.x the reads can too. Each
    connection spills to a folder of its own; day-old folders of dead processes are swept."""
    import os
    import subprocess
    import sys
    import time

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64MB")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    day_old = time.time() - 25 * 3600
    left_over = tmp_path / "metricsduck-spill" / f"{dead}-0123456789ab"
    left_over.mkdir(parents=True)
    (left_over / "duckdb_temp_storage-0.tmp").write_bytes(b"x" * 100)
    os.utime(left_over, (day_old, day_old))
    recent = tmp_path / "metricsduck-spill" / f"{dead}-0000000000ab"  # may be another namespace's
    recent.mkdir()
    ours = tmp_path / "metricsduck-spill" / f"{os.getpid()}-feedfeedfeed"  # a live process's
    ours.mkdir()
    os.utime(ours, (day_old, day_old))
    first, second = new_connection(), new_connection()
    assert not left_over.exists() and recent.exists() and ours.exists()
    folders = {setting(con, "temp_directory") for con in (first, second)}
    assert len(folders) == 2 and all(Path(f).parent == tmp_path / "metricsduck-spill" for f in folders)
    # each holds about 3x its memory limit: most of it spilled
    expected = {}
    for seed, con in enumerate((first, second)):
        con.execute(f"CREATE TEMP TABLE big AS SELECT i, hash(i + {seed}) AS h FROM range(12000000) AS r(i)")
        expected[seed] = con.execute("SELECT sum(h % 1000) FROM big").fetchall()
    assert all(Path(f).is_dir() and any(Path(f).iterdir()) for f in folders), "both spilled"
    second.close()
    assert first.execute("SELECT sum(h % 1000) FROM big").fetchall() == expected[0]
    assert hash(expected[0][0]) != hash(expected[1][0])
    first.close()


@pytest.mark.parametrize("variable", [MEMORY_LIMIT_ENV, TEMP_LIMIT_ENV])
def test_a_bad_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, tmp_path: Path) -> None:
    monkeypatch.setenv(variable, "lots")
    with pytest.raises(InputError, match=f"{variable}='lots' is not a size"):
        new_connection()
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 4 and f"{variable}='lots'" in result.stderr


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, tmp_path: Path) -> None:
    monkeypatch.setenv(THREADS_ENV, value)
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 4 and f"{THREADS_ENV}={value!r} is not a number of threads" in result.stderr


def test_the_thread_cap_applies_to_every_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for threads in ("1", "3"):
        monkeypatch.setenv(THREADS_ENV, threads)
        con = new_connection()
        assert con.execute("SELECT current_setting('threads')").fetchall() == [(int(threads),)]
        con.close()


def limits_config(tmp_path: Path, memory: str, temp: str = "auto") -> Path:
    path = tmp_path / "limits.yaml"
    path.write_text(f"safety:\n  telemetry:\n    engine:\n      memory_limit: {memory}\n"
                    f"      temp_directory_size: {temp}\n")
    return path


def test_the_config_sets_the_limits_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.delenv(TEMP_LIMIT_ENV, raising=False)
    config = metricsduck.load_config(limits_config(tmp_path, "300MB", "2GB"))
    reference = duckdb.connect()
    reference.execute("SET memory_limit = '300MB'")
    reference.execute("SET max_temp_directory_size = '2GB'")
    con = new_connection(config)
    for name in ("memory_limit", "max_temp_directory_size"):
        assert setting(con, name) == setting(reference, name)
    with metricsduck.connect(tmp_path, config=config) as store:  # every store's connection
        assert setting(store.con, "memory_limit") == setting(reference, "memory_limit")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "400MB")
    reference.execute("SET memory_limit = '400MB'")
    assert setting(new_connection(config), "memory_limit") == setting(reference, "memory_limit")


@pytest.mark.parametrize("value", ["lots", "12", "-1GB", "4 GB of it"])
def test_a_size_the_config_cannot_mean_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(metricsduck.ConfigError, match=r"engine\.memory_limit must be a size such as 4GB"):
        metricsduck.load_config(limits_config(tmp_path, repr(value)))


def test_the_heaviest_view_spills_within_a_small_memory_limit(demo: Path, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path, plain: list[tuple]) -> None:
    """Every drift row of the tree in one query (drift_computed, no cache) peaks at about 240 MB
    on this tree; with engine.memory_limit 200MB DuckDB spills and gives the same rows (it
    fails below about 170 MB: list aggregates and sorts need their blocks in memory)."""
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setenv(THREADS_ENV, "2")  # memory grows with threads: the figures above are for 2
    profile = tmp_path / "profile.json"
    with metricsduck.connect(demo, config=metricsduck.load_config(limits_config(tmp_path, "200MB")),
                             use_cache=False) as store:
        store.con.execute("SET enable_profiling = 'json'")
        store.con.execute("SET profiling_output = ?", [str(profile)])
        rows = store.con.execute(f"SELECT * FROM drift_computed {ORDER}").fetchall()
        used = json.loads(profile.read_text())["system"]
    assert rows == plain
    assert used["total_bytes_spilled"] > 0 and used["peak_buffer_memory"] <= 200 * 2**20, used


def test_running_out_of_memory_is_exit_7_naming_the_limits(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "40MB")
    result = CliRunner().invoke(main, ["drift", str(demo), "--format", "csv"])
    assert result.exit_code == 7, result.output
    assert "DuckDB ran out of memory or spill space" in result.stderr
    assert f"40MB of memory ({MEMORY_LIMIT_ENV})" in result.stderr and TEMP_LIMIT_ENV in result.stderr
    assert result.stdout == ""


def test_running_out_of_memory_names_the_config_key_that_set_the_limit(
        demo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    config = limits_config(tmp_path, "40MB")
    result = CliRunner().invoke(main, ["drift", str(demo), "--config", str(config), "--format", "csv"])
    assert result.exit_code == 7, result.output
    assert f"40MB of memory (engine.memory_limit in {config})" in result.stderr
    assert "engine.temp_directory_size: auto; set it in the config, or METRICSDUCK_TEMP_LIMIT" in result.stderr


# --- --cached: the cache as of the last refresh, without a walk of the tree ---------------------

def test_cached_only_serves_the_last_refresh_without_walking(tmp_path: Path, demo_trees) -> None:
    import shutil

    from metricsduck.marks import write_mark

    root = demo_trees.copy(tmp_path / "results", runs=3, seed=5).root
    with metricsduck.connect(root, cached_only=True) as store:  # no cache yet: it walks
        assert ("cache", "tree walked", "yes") in store.status()
        runs = [r for (r,) in store.sql("SELECT run_id FROM runs ORDER BY ordinal").fetchall()]
        store.refresh()
    with metricsduck.connect(root) as store:
        before = store.sql(f"SELECT * FROM drift {ORDER}").fetchall()
    write_mark(root, runs[0], False, "outage")  # marks apply to a cached store too
    with metricsduck.connect(root) as store:
        marked = store.sql(f"SELECT * FROM drift {ORDER}").fetchall()
    assert marked != before
    shutil.rmtree(sorted(root.glob("run_*"))[-1])  # the tree changes after the refresh: its last run goes
    with metricsduck.connect(root, cached_only=True) as store:
        assert ("cache", "tree walked", "no: as of the last refresh (--cached)") in store.status()
        assert store.sql(f"SELECT * FROM drift {ORDER}").fetchall() == marked
        with pytest.raises(InputError, match="as of the last refresh"):
            store.refresh()
        store.reload()  # stays as of the last refresh
        assert store.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 3
    with metricsduck.connect(root) as store:  # a walking store sees the run gone
        assert store.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 2
    cli = CliRunner().invoke(main, ["drift", str(root), "--cached", "--run", runs[-1], "--format", "csv"])
    assert cli.exit_code == 0 and cli.stdout.count("\n") == 1 + sum(1 for row in marked if row[5] == runs[-1])
    assert "--cached" not in CliRunner().invoke(main, ["refresh", "--help"]).stdout
