"""The SQL catalog: one definition per file, dependency order, fingerprints, the ledger,
the persisted catalog, source binding and the source views."""

from __future__ import annotations

import json
import os
import re
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck import SqlFileError, write_cohort_metrics
from metricsduck.catalog import catalog_states, discover, ledger_changes, persisted_fingerprints, read_ledger

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
EXTRA_VIEW = textwrap.dedent("""\
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

def test_definitions_are_ordered_after_what_they_read(sql_dir):
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW)
    (sql_dir / "views" / "README.md").write_text("not SQL")

    catalog = discover(sql_dir)
    order = [d.name for d in catalog]

    assert len(order) == len(set(order))
    for definition in catalog:
        for dependency in definition.dependencies:
            assert order.index(dependency) < order.index(definition.name), (definition.name, dependency)
    names = catalog["metric_names"]
    assert names.dependencies == ("facts",)
    assert names.text == EXTRA_VIEW
    assert names.doc == "Every metric name seen in the facts, one row each."
    # what the drift view is built on, read off the SQL: not the trend and rollup views
    assert {"baselines_of", "drift_scalar_of", "drift_distribution_of", "two_sample_bins"} <= catalog.closure(["drift"])
    assert not {"trends", "trends_of", "rollup_view", "rollup_view_of", "rollup_stage_of"} & catalog.closure(["drift"])


def test_the_settings_a_definition_reads_are_found_in_its_text(sql_dir):
    catalog = discover(sql_dir)

    assert catalog["trends_of"].settings == (  # settings_metrics: the metrics' good directions
        "drift.critical_metrics", "drift.direction", "drift.overrides",
        "trend.min_r2", "trend.min_rel_change", "trend.min_runs", "trend.window")
    assert "drift.critical_metrics" in catalog["drift_scalar_of"].settings  # reads settings_metrics
    assert "drift.psi_bins" in catalog.reads("drift_computed")
    assert not [key for key in catalog.reads("drift_computed") if key.startswith("trend.")]


@pytest.mark.parametrize(
    ("folder", "name", "text", "message"),
    [
        ("views", "Metric-Names.sql", EXTRA_VIEW, "named <lower_snake_name>.sql"),
        ("views", "other_name.sql", EXTRA_VIEW, "defines 'metric_names', not 'other_name'"),
        ("macros", "metric_names.sql", EXTRA_VIEW, "must hold CREATE OR REPLACE MACRO metric_names"),
        ("views", "metric_names.sql", EXTRA_VIEW + "CREATE OR REPLACE VIEW more AS SELECT 1;\n",
         "holds 2 statements"),
        ("views", "metric_names.sql", "SELECT 1;\n" , "must hold CREATE OR REPLACE VIEW metric_names"),
        ("views", "facts_raw.sql", "CREATE OR REPLACE VIEW facts_raw AS SELECT 1;\n",
         "a second definition of 'facts_raw'"),
        (".", "V012__extra.sql", EXTRA_VIEW, "is not in views/ or macros/"),
        ("views/old", "metric_names.sql", EXTRA_VIEW, "is not in views/ or macros/"),
    ],
    ids=["misnamed", "wrong-name", "wrong-folder", "two-statements", "no-create", "an-input", "top-level",
         "nested"],
)
def test_a_malformed_sql_file_is_an_error_naming_it(sql_dir, folder, name, text, message):
    (sql_dir / folder).mkdir(exist_ok=True)
    (sql_dir / folder / name).write_text(text)

    with pytest.raises(SqlFileError, match=message) as caught:
        discover(sql_dir)

    assert caught.value.path == (sql_dir / folder / name).resolve() or caught.value.path == sql_dir / folder / name
    assert str(caught.value).startswith(str(caught.value.path))


def test_a_second_definition_of_a_name_is_an_error_naming_both_files(sql_dir):
    (sql_dir / "macros" / "facts.sql").write_text("CREATE OR REPLACE MACRO facts() AS 1;\n")

    message = re.escape("a second definition of 'facts' (also views/facts.sql)")
    with pytest.raises(SqlFileError, match=message) as caught:
        discover(sql_dir)

    assert caught.value.path == sql_dir / "macros" / "facts.sql"


def test_a_dependency_cycle_is_an_error_naming_its_files(sql_dir):
    (sql_dir / "views" / "ping.sql").write_text("CREATE OR REPLACE VIEW ping AS SELECT * FROM pong;\n")
    (sql_dir / "views" / "pong.sql").write_text("CREATE OR REPLACE VIEW pong AS SELECT * FROM ping;\n")

    cycle = "dependency cycle: views/ping.sql -> views/pong.sql -> views/ping.sql"
    with pytest.raises(SqlFileError, match=re.escape(cycle)):
        discover(sql_dir)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # A binder error on the third line of a statement that starts on line 2.
        ("-- a view whose body names a column that does not exist\n"
         "CREATE OR REPLACE VIEW broken AS\nSELECT\n    no_such_column\nFROM facts;\n", 4),
        # A syntax error: DuckDB refuses the file before running it.
        ("-- broken\nCREATE OR REPLACE VIEW broken AS\nSELEC x FROM facts;\n", 3),
        # A failing first line.
        ("CREATE OR REPLACE VIEW broken AS SELECT * FROM no_such_table;\n", 1),
    ],
    ids=["binder-error", "syntax-error", "first-line"],
)
def test_a_failing_statement_is_reported_with_its_file_and_line(tmp_path, sql_dir, text, line):
    (sql_dir / "views" / "broken.sql").write_text(text)

    with pytest.raises(SqlFileError) as caught:
        metricsduck.connect(tmp_path, sql_dir=sql_dir)

    assert caught.value.path == sql_dir / "views" / "broken.sql"
    assert caught.value.line == line
    assert f"broken.sql:{line}:" in str(caught.value)


def test_nothing_superseded_is_loaded():
    catalog = discover()
    history = Path(metricsduck.__file__).parent / "sql" / "history"

    assert sorted(p.stem.split(".")[0] for p in history.glob("*.sql")) == [
        "facts", "rollup_view", "samples", "trends", "two_sample_bins"]
    for definition in catalog:  # each name once, from views/ or macros/ only
        assert definition.path.parent.name in ("views", "macros")
    assert len({d.name for d in catalog}) == len(catalog)


# --- fingerprints and the ledger -------------------------------------------------------------

def test_the_ledger_records_every_current_fingerprint():
    """Fails whenever a definition changed and the ledger was not updated: review the
    change, then run `python -m metricsduck.catalog --update-ledger`."""
    changes = ledger_changes(discover(), metricsduck.__version__)

    assert changes == [], (
        f"{len(changes)} definition(s) differ from sql/ledger.json ({metricsduck.__version__}): "
        f"{[name for name, _, _ in changes]}; run `python -m metricsduck.catalog --update-ledger`")


def test_editing_a_view_changes_its_fingerprint_and_those_built_on_it_only(sql_dir):
    before = discover(sql_dir).fingerprints()
    path = sql_dir / "views" / "view_dirs.sql"
    path.write_text(path.read_text().replace("count(*) AS cohorts", "count(*) + 0 AS cohorts"))

    after = discover(sql_dir)
    changed = {name for name, fingerprint in after.fingerprints().items() if before[name] != fingerprint}

    assert changed == {"view_dirs", "rollup_stage_of", "rollup_stage"}
    assert ledger_changes(after, metricsduck.__version__) == [
        (name, before[name], after[name].fingerprint) for name in ("rollup_stage", "rollup_stage_of", "view_dirs")]


def test_comments_and_layout_do_not_change_a_fingerprint(sql_dir):
    before = discover(sql_dir).fingerprints()
    path = sql_dir / "views" / "runs.sql"
    text = path.read_text()
    path.write_text("-- reworded documentation\n" + text.replace("\n    ", "\n        ").replace(
        "FROM cohort_runs", "FROM cohort_runs  -- a remark"))

    assert discover(sql_dir).fingerprints() == before


def test_update_ledger_writes_sorted_fingerprints_per_release(sql_dir):
    from metricsduck.catalog import update_ledger

    catalog = discover(sql_dir)
    update_ledger(catalog, "9.9.9")

    releases = read_ledger(sql_dir)
    assert releases["9.9.9"] == catalog.fingerprints()
    assert metricsduck.__version__ in releases  # earlier releases are kept
    assert list(json.loads((sql_dir / "ledger.json").read_text())["releases"]["9.9.9"]) == sorted(
        catalog.fingerprints())


# --- the persisted catalog -------------------------------------------------------------------

def test_init_records_each_definition_with_its_fingerprint(tmp_path, sql_dir):
    path = metricsduck.init(tmp_path / "tree", sql_dir=sql_dir)

    assert path == tmp_path / "tree" / ".metricsduck" / "catalog.duckdb"
    catalog = discover(sql_dir)
    assert persisted_fingerprints(tmp_path / "tree") == catalog.fingerprints()
    with duckdb.connect(str(path), read_only=True) as con:
        files = dict(con.execute("SELECT name, file FROM metricsduck_catalog").fetchall())
    assert files["drift_scalar"] == "views/drift_scalar.sql"
    assert files["two_sample_bins"] == "macros/two_sample_bins.sql"


def test_an_out_of_date_catalog_is_reported_then_rebuilt_by_init(tmp_path, sql_dir):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0)
    metricsduck.init(root, sql_dir=sql_dir)
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW)
    path = sql_dir / "views" / "runs.sql"
    path.write_text(path.read_text().replace("count(*) AS cohort_runs", "count(*) + 0 AS cohort_runs"))

    states = dict((d.name, s) for d, s in catalog_states(discover(sql_dir), persisted_fingerprints(root)))
    assert states["runs"] == states["metric_names"] == "out of date"
    assert states["facts"] == "current"
    with metricsduck.connect(root, sql_dir=sql_dir) as store:  # never refused: it is derived
        assert store.sql("SELECT count(*) FROM metric_names").fetchall() == [(1,)]

    metricsduck.init(root, sql_dir=sql_dir)

    assert persisted_fingerprints(root) == discover(sql_dir).fingerprints()
    with duckdb.connect(str(root / ".metricsduck" / "catalog.duckdb"), read_only=True) as con:
        assert con.execute("SELECT metric FROM metric_names").fetchall() == [("mean_score",)]


def test_leading_comment_lines_become_the_comment_of_views_and_macros(tmp_path, sql_dir):
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW)
    (sql_dir / "views" / "uncommented.sql").write_text("CREATE OR REPLACE VIEW uncommented AS SELECT 1 AS x;\n")

    with metricsduck.connect(tmp_path, sql_dir=sql_dir) as store:
        comments = dict(store.sql(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
        macros = dict(store.sql("SELECT function_name, comment FROM duckdb_functions() "
                                "WHERE function_name IN ('tier_of', 'two_sample_bins')").fetchall())

    assert comments["metric_names"] == "Every metric name seen in the facts, one row each."
    assert comments["uncommented"] is None
    assert comments["facts"].startswith("One row per metric of each cohort-run")
    assert macros["tier_of"].startswith("The tier of a magnitude")
    assert macros["two_sample_bins"].startswith("two_sample_bins(source): the PSI bins")


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
    # no temp files left: the catalog, the cache init's refresh kept, and the zero-row
    # placeholders of the globs
    assert sorted(os.listdir(root / ".metricsduck")) == ["cache", "catalog.duckdb", "empty", "marks",
                                                         "refresh.lock"]
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


def test_status_shows_each_fingerprint_and_the_persisted_state_without_writing(tmp_path, sql_dir):
    root = tmp_path / "tree"
    metricsduck.init(root, sql_dir=sql_dir)
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW)
    before = all_files(root)

    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        rows = {item: value for section, item, value in store.status() if section == "sql"}
        catalog = store.catalog

    assert len(rows) == len(catalog)
    assert rows["views/metric_names.sql"] == f"{catalog['metric_names'].fingerprint[:12]} out of date"
    assert rows["views/facts.sql"] == f"{catalog['facts'].fingerprint[:12]} current"
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
        ("n_missing", "BIGINT"), ("value", "DOUBLE"), ("value_text", "VARCHAR"), ("source_file", "VARCHAR"),
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


def test_an_empty_tree_gives_empty_typed_views_and_creates_nothing(tmp_path, open_store):
    root = tmp_path / "tree"
    root.mkdir()

    with open_store(root) as store:
        for view, columns in EXPECTED_TYPES.items():
            described = [(row[0], row[1]) for row in store.sql(f"DESCRIBE {view}").fetchall()]
            assert described == columns, view
            assert store.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)], view

    assert all_files(root) == []


# --- the source views ----------------------------------------------------------------------------

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


def test_the_persisted_catalog_shows_the_tree_as_the_last_refresh_left_it(tmp_path, sql_dir):
    root = tmp_path / "tree"
    put(root, run_id="r1", started=T0, metrics={"mean_score": 0.5})
    path = metricsduck.init(root, sql_dir=sql_dir)
    put(root, run_id="r2", started=T0 + timedelta(days=1), metrics={"mean_score": 0.75})

    def runs_and_drift() -> tuple[list, list]:
        with duckdb.connect(str(path), read_only=True) as con:
            return (con.execute("SELECT run_id FROM runs ORDER BY ordinal").fetchall(),
                    con.execute("SELECT run_id, baseline_kind, current_value, baseline_value FROM drift "
                                "WHERE item = 'mean_score' AND baseline_kind = 'previous_run' "
                                "ORDER BY run_id").fetchall())

    assert runs_and_drift() == ([("r1",)], [("r1", "previous_run", 0.5, None)])

    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        store.refresh()

    assert runs_and_drift() == ([("r1",), ("r2",)],
                                [("r1", "previous_run", 0.5, None), ("r2", "previous_run", 0.75, 0.5)])


HAND_WRITTEN_SCHEMA = [  # docs/design.md §3.1, spelled out here rather than taken from the writer
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
    root.mkdir()
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


# --- the built catalog, reused ----------------------------------------------------------------

def _tree_with_drift(root: Path) -> None:
    for day in range(3):
        put(root, run_id=f"r{day}", started=T0 + timedelta(days=day),
            metrics={"mean_score": 0.5 + day / 10}, samples={"oof": [0.1 * day + i / 7 for i in range(12)]})


def _every_definition(store) -> dict[str, list]:
    views = [d.name for d in store.catalog if d.kind == "VIEW"]
    return {name: sorted(map(repr, store.sql(f"SELECT * FROM {name}").fetchall())) for name in views}


def test_the_built_catalog_is_made_once_then_reused_and_reads_what_memory_reads(tmp_path, monkeypatch):
    from metricsduck.catalog.built import BUILT, CACHE_ENV

    root, folder = tmp_path / "tree", tmp_path / "built"
    _tree_with_drift(root)
    monkeypatch.setenv(CACHE_ENV, str(folder))
    with metricsduck.connect(root) as store:
        built = _every_definition(store)
        where = dict(store.sql("SELECT view_name, database_name FROM duckdb_views() WHERE NOT internal").fetchall())
        # a cursor made by the store reads the views by name; a plain cursor starts elsewhere
        assert store.cursor().sql("SELECT count(*) FROM rollup_view").fetchall()[0][0] > 0
        with pytest.raises(duckdb.CatalogException):
            store.con.cursor().sql("SELECT count(*) FROM rollup_view")
    files = sorted(folder.glob("sql-*.duckdb"))
    assert len(files) == 1
    assert {where[d.name] for d in store.catalog if d.kind == "VIEW" and d.name != "drift"} == {BUILT}
    assert where["drift"] == "memory"  # served by the store, over the built views
    made = files[0].stat().st_ino
    with metricsduck.connect(root) as store:  # every view was compared above; one deep one here
        assert sorted(map(repr, store.sql("SELECT * FROM rollup_view").fetchall())) == built["rollup_view"]
    assert [f.stat().st_ino for f in folder.glob("sql-*.duckdb")] == [made], "reused, not rebuilt"

    monkeypatch.setenv(CACHE_ENV, "")  # no folder: every definition applied in memory, as before
    with metricsduck.connect(root) as store:
        assert _every_definition(store) == built
        assert {db for (db,) in store.sql("SELECT DISTINCT database_name FROM duckdb_views() "
                                          "WHERE NOT internal").fetchall()} == {"memory"}


def test_an_edited_definition_or_comment_gets_a_built_file_of_its_own(tmp_path, sql_dir, monkeypatch):
    from metricsduck.catalog.built import CACHE_ENV

    root, folder = tmp_path / "tree", tmp_path / "built"
    _tree_with_drift(root)
    monkeypatch.setenv(CACHE_ENV, str(folder))
    metricsduck.connect(root, sql_dir=sql_dir).close()
    view = sql_dir / "views" / "runs.sql"
    view.write_text(view.read_text().replace("CREATE OR REPLACE", "-- a new last line of the comment\n"
                                             "CREATE OR REPLACE", 1))
    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        comment = store.sql("SELECT comment FROM duckdb_views() WHERE view_name = 'runs'").fetchall()[0][0]
    assert comment.endswith("a new last line of the comment")
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW)
    with metricsduck.connect(root, sql_dir=sql_dir) as store:
        assert store.sql("SELECT * FROM metric_names").fetchall() == [("mean_score",)]
    assert len(list(folder.glob("sql-*.duckdb"))) == 3


def test_a_folder_that_cannot_hold_built_files_leaves_the_definitions_in_memory(tmp_path, monkeypatch):
    from metricsduck.catalog.built import CACHE_ENV

    root = tmp_path / "tree"
    _tree_with_drift(root)
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a_file" / "built"))
    with metricsduck.connect(root) as store:
        assert store.sql("SELECT count(*) FROM rollup_view").fetchall()[0][0] > 0
        assert {db for (db,) in store.sql("SELECT DISTINCT database_name FROM duckdb_views() "
                                          "WHERE NOT internal").fetchall()} == {"memory"}


def test_a_failing_definition_leaves_no_built_file(tmp_path, sql_dir, monkeypatch):
    from metricsduck.catalog.built import CACHE_ENV

    folder = tmp_path / "built"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    (sql_dir / "views" / "metric_names.sql").write_text(EXTRA_VIEW.replace("FROM facts", "FROM no_such_table"))
    with pytest.raises(SqlFileError, match=r"metric_names\.sql"):
        metricsduck.connect(tmp_path, sql_dir=sql_dir)
    assert list(folder.iterdir()) == []


def test_stores_building_the_same_file_at_once_all_get_it(tmp_path, monkeypatch):
    import threading

    from metricsduck.catalog.built import CACHE_ENV

    root, folder = tmp_path / "tree", tmp_path / "built"
    _tree_with_drift(root)
    monkeypatch.setenv(CACHE_ENV, str(folder))
    counts, errors = [], []

    def open_and_count() -> None:
        try:
            with metricsduck.connect(root) as store:
                counts.append(store.sql("SELECT count(*) FROM rollup_view").fetchall()[0][0])
        except Exception as exc:  # noqa: BLE001 - any error of a thread is reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(counts)) == 1 and counts[0] > 0
    assert [p.name.startswith("sql-") for p in folder.iterdir()] == [True]  # no temporary left
