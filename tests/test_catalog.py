"""The SQL catalog: versioned files, the ledger, source binding and the V001 views."""

from __future__ import annotations

import hashlib
import os
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck import ChecksumMismatchError, SqlFileError, write_cohort_metrics
from metricsduck.catalog import discover, migration_states, read_ledger

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
EXTRA_VIEW = textwrap.dedent("""\
    -- V002: a view added after V001 was released.

    -- Every metric name seen in the facts,
    -- one row each.
    CREATE OR REPLACE VIEW metric_names AS
    SELECT DISTINCT metric FROM facts;
""")


def put(root: Path, *, run_id: str, started: datetime, written: datetime | None = None,
        target: str = "t1", symbol: str | None = None, folder: str | None = None, cohort: str = "c1",
        metrics: dict | None = None, samples: dict | None = None, **extra) -> Path:
    """Write one cohort-run's sidecars under `root` (in a run tree named after run_id)."""
    view = "SYMBOL_SPECIFIC" if symbol else "CROSS_SECTIONAL"
    path = root / (folder or run_id) / "REPRODUCIBILITY" / "TARGET_RANKING" / view / target
    path = (path / f"symbol={symbol}" if symbol else path) / f"cohort={cohort}"
    write_cohort_metrics(
        path, run_id=run_id, run_started_at=started, written_at=written or started,
        stage="TARGET_RANKING", view=view, target=target, symbol=symbol,
        metrics=metrics or {"mean_score": 0.5}, samples=samples, **extra)
    return path


@pytest.fixture
def open_store(sql_dir):
    """`connect(root)` over the V001 views (a private copy, as released)."""
    return lambda root, config=None: metricsduck.connect(root, config, sql_dir=sql_dir)


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# --- discovering SQL files -------------------------------------------------------------------

def test_discover_lists_the_files_in_version_order(sql_dir):
    (sql_dir / "V002__extra.sql").write_text(EXTRA_VIEW)
    (sql_dir / "README.md").write_text("not SQL")

    found = discover(sql_dir)

    assert [(m.version, m.name, m.path.name) for m in found] == [
        (1, "sources", "V001__sources.sql"), (2, "extra", "V002__extra.sql")]
    assert found[1].text == EXTRA_VIEW


@pytest.mark.parametrize(
    "name", ["V2__extra.sql", "V002_extra.sql", "V002__Extra.sql", "002__extra.sql",
             "V002__extra-views.sql", "v002__extra.sql"])
def test_a_misnamed_sql_file_is_an_error_naming_it(sql_dir, name):
    (sql_dir / name).write_text("SELECT 1;\n")

    with pytest.raises(SqlFileError) as caught:
        discover(sql_dir)

    assert caught.value.path == sql_dir / name
    assert str(sql_dir / name) in str(caught.value)


def test_a_gap_in_versions_is_an_error_naming_the_file_after_it(sql_dir):
    (sql_dir / "V003__later.sql").write_text(EXTRA_VIEW)

    with pytest.raises(SqlFileError, match="V002") as caught:
        discover(sql_dir)

    assert caught.value.path == sql_dir / "V003__later.sql"


def test_versions_must_start_at_v001(tmp_path):
    (tmp_path / "V002__first.sql").write_text("SELECT 1;\n")

    with pytest.raises(SqlFileError) as caught:
        discover(tmp_path)
    assert caught.value.path == tmp_path / "V002__first.sql"


def test_two_files_with_one_version_are_an_error(sql_dir):
    (sql_dir / "V001__again.sql").write_text("SELECT 1;\n")

    with pytest.raises(SqlFileError):
        discover(sql_dir)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # A binder error on the third line of a statement that starts on line 5.
        ("-- V002: broken on purpose.\nCREATE VIEW ok AS SELECT 1 AS x;\n\n"
         "-- a view whose body names a column that does not exist\n"
         "CREATE VIEW broken AS\nSELECT\n    no_such_column\nFROM ok;\n", 7),
        # A syntax error: DuckDB refuses the whole file before running any statement.
        ("-- V002\nCREATE VIEW ok AS SELECT 1 AS x;\nCREATE VIEW broken AS\nSELEC x FROM ok;\n", 4),
        # A failing first statement of the file.
        ("SELECT * FROM no_such_table;\n", 1),
    ],
    ids=["binder-error", "syntax-error", "first-line"],
)
def test_a_failing_statement_is_reported_with_its_file_and_line(tmp_path, sql_dir, text, line):
    (sql_dir / "V002__broken.sql").write_text(text)

    with pytest.raises(SqlFileError) as caught:
        metricsduck.connect(tmp_path / "tree", sql_dir=sql_dir)

    assert caught.value.path == sql_dir / "V002__broken.sql"
    assert caught.value.line == line
    assert f"V002__broken.sql:{line}:" in str(caught.value)


# --- the ledger ------------------------------------------------------------------------------

def test_init_records_version_name_and_sha256(tmp_path, sql_dir):
    before = datetime.now(timezone.utc)

    path = metricsduck.init(tmp_path / "tree", sql_dir=sql_dir)

    assert path == tmp_path / "tree" / ".metricsduck" / "catalog.duckdb"
    expected = hashlib.sha256((sql_dir / "V001__sources.sql").read_bytes()).hexdigest()
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT version, name, sha256, applied_at FROM metricsduck_ledger").fetchall()
    ((version, name, sha256, applied_at),) = rows
    assert (version, name, sha256) == (1, "sources", expected)
    assert before - timedelta(seconds=1) <= applied_at <= datetime.now(timezone.utc)


def test_an_edited_applied_file_is_refused_by_connect_and_init(tmp_path, sql_dir):
    root = tmp_path / "tree"
    path = metricsduck.init(root, sql_dir=sql_dir)
    catalog_bytes = path.read_bytes()
    edited = sql_dir / "V001__sources.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")

    with pytest.raises(ChecksumMismatchError, match="V001__sources.sql") as caught:
        metricsduck.connect(root, sql_dir=sql_dir)
    assert str(edited) in str(caught.value)
    with pytest.raises(ChecksumMismatchError, match="V001__sources.sql"):
        metricsduck.init(root, sql_dir=sql_dir)

    assert path.read_bytes() == catalog_bytes  # the refused init replaced nothing
    assert [state for _, state in migration_states(discover(sql_dir), read_ledger(path))] == ["changed"]


def test_a_new_version_is_pending_until_init_applies_it(tmp_path, sql_dir):
    root = tmp_path / "tree"
    path = metricsduck.init(root, sql_dir=sql_dir)
    (first,) = read_ledger(path)
    (sql_dir / "V002__extra.sql").write_text(EXTRA_VIEW)

    states = migration_states(discover(sql_dir), read_ledger(path))
    assert [(m.label, state) for m, state in states] == [
        ("V001__sources.sql", "applied"), ("V002__extra.sql", "pending")]

    metricsduck.init(root, sql_dir=sql_dir)

    ledger = read_ledger(path)
    assert [(e.version, e.name) for e in ledger] == [(1, "sources"), (2, "extra")]
    assert ledger[0].applied_at == first.applied_at  # V001 keeps its original time
    assert ledger[1].applied_at >= first.applied_at
    assert ledger[1].sha256 == hashlib.sha256(EXTRA_VIEW.encode()).hexdigest()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metric_names").fetchall() == [(0,)]


def test_connect_applies_pending_versions_in_memory_without_touching_the_catalog(tmp_path, sql_dir):
    root = tmp_path / "tree"
    path = metricsduck.init(root, sql_dir=sql_dir)
    catalog_bytes = path.read_bytes()
    (sql_dir / "V002__extra.sql").write_text(EXTRA_VIEW)

    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        assert store.sql("SELECT count(*) FROM metric_names").fetchall() == [(0,)]

    assert path.read_bytes() == catalog_bytes
    assert [e.version for e in read_ledger(path)] == [1]


def test_leading_comment_lines_become_the_view_comment(tmp_path, sql_dir):
    (sql_dir / "V002__extra.sql").write_text(
        EXTRA_VIEW + "\nCREATE OR REPLACE VIEW uncommented AS SELECT 1 AS x;\n")

    with metricsduck.connect(tmp_path / "tree", sql_dir=sql_dir) as store:
        comments = dict(store.sql(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())

    assert comments["metric_names"] == "Every metric name seen in the facts, one row each."
    assert comments["uncommented"] is None
    assert comments["facts"].startswith("One row per metric of each cohort-run")


def test_the_persisted_catalog_answers_from_any_directory(tmp_path, sql_dir, monkeypatch):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0, metrics={"mean_score": 0.75, "n_models": 3})
    path = metricsduck.init(root, sql_dir=sql_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT run_id, metric, value FROM facts ORDER BY metric").fetchall()
        settings = dict(con.execute("SELECT key, value FROM settings").fetchall())

    assert rows == [("r1", "mean_score", 0.75), ("r1", "n_models", 3.0)]
    assert settings["drift.psi_bins"] == 10.0
    # no temp files left: only the catalog and the zero-row placeholders of the globs
    assert sorted(os.listdir(root / ".metricsduck")) == ["catalog.duckdb", "empty", "marks"]
    assert sorted(os.listdir(root / ".metricsduck" / "marks")) == ["empty.parquet"]


def test_init_saves_a_user_config_beside_the_catalog(tmp_path, sql_dir, open_store, make_config):
    config = make_config("safety:\n  telemetry:\n    trend:\n      min_runs: 3\n")
    root = tmp_path / "tree"

    metricsduck.init(root, config, sql_dir=sql_dir)

    saved = root / ".metricsduck" / "config.yaml"
    assert saved.read_bytes() == Path(config.source).read_bytes()
    with open_store(root) as store:  # the saved config is used from now on
        assert store.config.get("trend.min_runs") == 3
        assert store.sql("SELECT value FROM settings WHERE key = 'trend.min_runs'").fetchall() == [(3.0,)]


def test_settings_tables_are_filled_from_the_config(tmp_path, sql_dir, make_config):
    config = make_config(
        "safety:\n  telemetry:\n    drift:\n      psi_bins: 20\n"
        "      overrides:\n        mean_score: {relative: [0.1, 0.3]}\n")

    with metricsduck.connect(tmp_path, config, sql_dir=sql_dir) as store:
        assert store.sql("SELECT value FROM settings WHERE key = 'drift.psi_bins'").fetchall() == [
            (20.0,)]
        assert store.sql("SELECT text FROM settings WHERE key = 'root'").fetchall() == [
            (str(tmp_path.resolve()),)]
        assert store.sql(
            "SELECT critical, relative_warn, relative_alert FROM settings_metrics "
            "WHERE metric = 'mean_score'").fetchall() == [(False, 0.1, 0.3)]


def test_status_lists_the_sql_files_of_the_store_without_writing(tmp_path, sql_dir):
    root = tmp_path / "tree"
    metricsduck.init(root, sql_dir=sql_dir)
    (sql_dir / "V002__extra.sql").write_text(EXTRA_VIEW)
    before = all_files(root)

    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        rows = store.status()

    assert [(item, value) for section, item, value in rows if section == "sql"] == [
        ("V001__sources.sql", "applied"), ("V002__extra.sql", "pending")]
    assert all_files(root) == before


# --- the empty tree --------------------------------------------------------------------------

EXPECTED_TYPES = {
    "facts": [
        ("run_id", "VARCHAR"), ("run_started_at", "TIMESTAMP WITH TIME ZONE"),
        ("written_at", "TIMESTAMP WITH TIME ZONE"), ("stage", "VARCHAR"), ("view", "VARCHAR"),
        ("target", "VARCHAR"), ("symbol", "VARCHAR"), ("cohort_id", "VARCHAR"),
        ("baseline_key", "VARCHAR"), ("git_commit", "VARCHAR"), ("config_hash", "VARCHAR"),
        ("data_fingerprint", "VARCHAR"), ("seed", "BIGINT"), ("good", "BOOLEAN"),
        ("audit_valid", "BOOLEAN"), ("metric", "VARCHAR"), ("kind", "VARCHAR"),
        ("value", "DOUBLE"), ("value_text", "VARCHAR"), ("source_file", "VARCHAR"),
    ],
    "samples": [
        ("run_id", "VARCHAR"), ("run_started_at", "TIMESTAMP WITH TIME ZONE"),
        ("written_at", "TIMESTAMP WITH TIME ZONE"), ("stage", "VARCHAR"), ("view", "VARCHAR"),
        ("target", "VARCHAR"), ("symbol", "VARCHAR"), ("cohort_id", "VARCHAR"),
        ("baseline_key", "VARCHAR"), ("distribution", "VARCHAR"), ("n_total", "BIGINT"),
        ("n_missing", "BIGINT"), ("value", "DOUBLE"), ("source_file", "VARCHAR"),
    ],
    "cohort_runs": [
        ("stage", "VARCHAR"), ("view", "VARCHAR"), ("target", "VARCHAR"), ("symbol", "VARCHAR"),
        ("baseline_key", "VARCHAR"), ("run_id", "VARCHAR"),
        ("run_started_at", "TIMESTAMP WITH TIME ZONE"), ("ordinal", "BIGINT"),
        ("cohort_id", "VARCHAR"), ("written_at", "TIMESTAMP WITH TIME ZONE"),
        ("git_commit", "VARCHAR"), ("config_hash", "VARCHAR"), ("data_fingerprint", "VARCHAR"),
        ("seed", "BIGINT"), ("good", "BOOLEAN"), ("audit_valid", "BOOLEAN"),
        ("n_metrics", "BIGINT"), ("source_file", "VARCHAR"),
    ],
    "runs": [
        ("run_id", "VARCHAR"), ("run_started_at", "TIMESTAMP WITH TIME ZONE"),
        ("cohort_runs", "BIGINT"), ("stages", "BIGINT"), ("ordinal", "BIGINT"),
    ],
}


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_an_empty_tree_gives_empty_typed_views_and_creates_nothing(tmp_path, open_store, kind):
    root = tmp_path / "tree"
    if kind == "empty":
        root.mkdir()

    with open_store(root) as store:
        for view, columns in EXPECTED_TYPES.items():
            described = [(row[0], row[1]) for row in store.sql(f"DESCRIBE {view}").fetchall()]
            assert described == columns, view
            assert store.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)], view

    assert root.exists() is (kind == "empty")
    assert all_files(root) == []


# --- the V001 views --------------------------------------------------------------------------

def test_facts_keep_only_the_newest_sidecar_of_a_cohort_run(tmp_path, open_store):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0, written=T0 + timedelta(hours=1), folder="first",
        metrics={"mean_score": 0.5, "dropped_later": 1.0})
    put(root, run_id="r1", started=T0, written=T0 + timedelta(hours=2), folder="rerun",
        metrics={"mean_score": 0.9, "added_later": 2.0})
    put(root, run_id="r1", started=T0, target="t2", metrics={"mean_score": 0.1})

    with open_store(root) as store:
        rows = store.sql(
            "SELECT target, metric, value, source_file FROM facts ORDER BY target, metric").fetchall()
        raw = store.sql("SELECT count(*) FROM facts_raw").fetchall()

    assert [(t, m, v) for t, m, v, _ in rows] == [
        ("t1", "added_later", 2.0), ("t1", "mean_score", 0.9), ("t2", "mean_score", 0.1)]
    assert all("/rerun/" in source for t, _, _, source in rows if t == "t1")
    assert raw == [(5,)]


def test_a_written_at_tie_is_broken_by_the_later_path(tmp_path, open_store):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0, folder="a", metrics={"m": 1.0})
    put(root, run_id="r1", started=T0, folder="b", metrics={"m": 2.0})

    with open_store(root) as store:
        assert store.sql("SELECT value FROM facts").fetchall() == [(2.0,)]


def test_cohort_runs_are_ordered_by_start_time_then_run_id(tmp_path, open_store):
    root = tmp_path / "tree"
    later = T0 + timedelta(days=1)
    # Written out of order on purpose; r_b and r_a start at the same time.
    put(root, run_id="r_c", started=later, folder="c", metrics={"m": 3.0, "n": 1.0},
        git_commit="abc", seed=3, good=False, audit_valid=True)
    put(root, run_id="r_b", started=T0, folder="b")
    put(root, run_id="r_a", started=T0, folder="a")
    put(root, run_id="r_z", started=T0 - timedelta(days=1), folder="z")
    put(root, run_id="r_a", started=T0, folder="a", symbol="AAPL", target="t1")

    with open_store(root) as store:
        rows = store.sql(
            "SELECT baseline_key, run_id, ordinal FROM cohort_runs ORDER BY baseline_key, ordinal"
        ).fetchall()
        (c_row,) = store.sql(
            "SELECT n_metrics, git_commit, seed, good, audit_valid, view, symbol FROM cohort_runs "
            "WHERE run_id = 'r_c'").fetchall()

    cs, ss = "TARGET_RANKING:CROSS_SECTIONAL:t1", "TARGET_RANKING:SYMBOL_SPECIFIC:t1:AAPL"
    assert rows == [(cs, "r_z", 1), (cs, "r_a", 2), (cs, "r_b", 3), (cs, "r_c", 4), (ss, "r_a", 1)]
    assert c_row == (2, "abc", 3, False, True, "CROSS_SECTIONAL", None)


def test_runs_are_counted_and_ordered(tmp_path, open_store):
    root = tmp_path / "tree"
    put(root, run_id="r2", started=T0 + timedelta(days=1), target="t1")
    put(root, run_id="r2", started=T0 + timedelta(days=1), target="t2")
    put(root, run_id="r2", started=T0 + timedelta(days=1), target="t2", symbol="MSFT")
    put(root, run_id="r1", started=T0, target="t1")

    with open_store(root) as store:
        rows = store.sql(
            "SELECT run_id, run_started_at, cohort_runs, stages, ordinal FROM runs ORDER BY ordinal"
        ).fetchall()

    assert rows == [("r1", T0, 1, 1, 1), ("r2", T0 + timedelta(days=1), 3, 1, 2)]


def test_samples_view_reads_the_samples_sidecars(tmp_path, open_store):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0, samples={"oof": [0.25, None, 0.75], "none": [None]})

    with open_store(root) as store:
        rows = store.sql("SELECT distribution, n_total, n_missing, value FROM samples "
                         "ORDER BY distribution, value").fetchall()

    assert rows == [("none", 1, 1, None), ("oof", 3, 1, 0.25), ("oof", 3, 1, 0.75)]


def test_the_persisted_catalog_sees_sidecars_written_after_init(tmp_path, sql_dir):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0)
    path = metricsduck.init(root, sql_dir=sql_dir)

    put(root, run_id="r2", started=T0 + timedelta(days=1))

    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT run_id FROM runs ORDER BY ordinal").fetchall() == [("r1",), ("r2",)]


HAND_WRITTEN_SCHEMA = [  # DESIGN §3, spelled out here rather than taken from the writer
    ("schema_version", pa.int32()), ("run_id", pa.string()),
    ("run_started_at", pa.timestamp("us", tz="UTC")), ("written_at", pa.timestamp("us", tz="UTC")),
    ("stage", pa.string()), ("view", pa.string()), ("target", pa.string()),
    ("symbol", pa.string()), ("cohort_id", pa.string()), ("baseline_key", pa.string()),
    ("git_commit", pa.string()), ("config_hash", pa.string()), ("data_fingerprint", pa.string()),
    ("seed", pa.int64()), ("good", pa.bool_()), ("audit_valid", pa.bool_()),
    ("metric", pa.string()), ("kind", pa.string()), ("value", pa.float64()),
    ("value_text", pa.string()),
]


def hand_written_sidecar(path: Path, *, run_id: str, drop: str | None = None,
                         extra: str | None = None) -> None:
    row = {
        "schema_version": 1, "run_id": run_id, "run_started_at": T0, "written_at": T0,
        "stage": "TRAINING", "view": "CROSS_SECTIONAL", "target": "hand", "symbol": None,
        "cohort_id": "c", "baseline_key": "TRAINING:CROSS_SECTIONAL:hand", "git_commit": "g",
        "config_hash": "h", "data_fingerprint": "d", "seed": 1, "good": True, "audit_valid": None,
        "metric": "mean_score", "kind": "number", "value": 0.5, "value_text": None,
    }
    fields = [pa.field(name, kind) for name, kind in HAND_WRITTEN_SCHEMA if name != drop]
    columns = {f.name: [row[f.name]] for f in fields}
    if extra:
        fields.append(pa.field(extra, pa.string()))
        columns[extra] = ["something new"]
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict(columns, schema=pa.schema(fields)),
                   path / "telemetry_metrics.parquet")


def test_sidecars_with_extra_or_missing_columns_read_together(tmp_path, open_store):
    root = tmp_path / "tree"
    hand_written_sidecar(root / "old" / "cohort=c", run_id="r_old", drop="data_fingerprint")
    hand_written_sidecar(root / "new" / "cohort=c", run_id="r_new", extra="future_column")
    put(root, run_id="r_writer", started=T0, data_fingerprint="w")

    with open_store(root) as store:
        rows = store.sql(
            "SELECT run_id, data_fingerprint, git_commit, seed, good, metric, value FROM facts "
            "ORDER BY run_id").fetchall()
        columns = store.sql("SELECT * FROM facts_raw LIMIT 0").columns

    assert rows == [
        ("r_new", "d", "g", 1, True, "mean_score", 0.5),
        ("r_old", None, "g", 1, True, "mean_score", 0.5),
        ("r_writer", "w", None, None, None, "mean_score", 0.5),
    ]
    # the snapshot keeps the columns of schema v1; a newer writer's extra column is not
    # needed by any view and is left out rather than widening every table
    assert "future_column" not in columns


def test_the_packaged_sql_files_apply_to_a_tree(tmp_path):
    root = tmp_path / "tree"
    with metricsduck.connect(root) as store:
        assert store.sql("SELECT count(*) FROM facts").fetchall() == [(0,)]
    put(root, run_id="r1", started=T0, samples={"oof": [0.1, 0.2]})
    put(root, run_id="r2", started=T0 + timedelta(days=1), samples={"oof": [0.3, 0.4]})

    with metricsduck.connect(root) as store:
        views = {name for (name,) in store.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {"facts", "samples", "cohort_runs", "runs"} <= views
        for view in sorted(views):
            store.sql(f"SELECT * FROM {view}").fetchall()  # every packaged view runs
        assert store.sql("SELECT count(*) FROM cohort_runs").fetchall() == [(2,)]
    assert all_files(root / ".metricsduck") == []
