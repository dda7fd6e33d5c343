"""Views whose definition replaced a released one keep exactly the rows of the one replaced.

The oracle is always the released text of the replaced definition (kept, never loaded,
under metricsduck/sql/history/), run on the same data.

- V008's `facts` and `samples` against V001's, on adversarial raw tables. V001 found the
  winning sidecar of each cohort-run by ranking every row (dense_rank by written_at DESC,
  source_file DESC, NULLs last); V008 finds it by aggregation. The tables hold duplicates,
  ties on written_at, NULL written_at, NULL keys, several written_at inside one file and
  other schema versions.
- V009's `trends` and `trends_of(scope)` against V006's `trends` (its columns), on a demo tree.
- V011's `rollup_view` against V007's, on a demo tree, whole and for one run; V007 is run
  with the one change made to it on purpose since (population drift with numbers is
  measured whatever its status: a LOW_N or INCONCLUSIVE comparison still has them).
- V010's `two_sample_bins` against V004's (its columns), bit for bit, on adversarial comparisons: ties
  inside a side and across sides, equal values at quantile edges, one or two values, a
  side without finite values, NULLs, -0.0 beside 0.0, and several bin counts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest

from metricsduck.catalog import apply, discover, fill_settings, packaged_sql_dir
from metricsduck.config import load_config
from metricsduck.marks import marks_schema
from metricsduck.snapshot import typed_empty
from metricsduck.writer import metrics_schema, samples_schema

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def _released(version: int, name: str) -> str:
    return (packaged_sql_dir() / "history" / f"{name}.V{version:03d}.sql").read_text()


def released_view(version: int, name: str) -> str:
    """The body of view `name` as the released file V<version> defined it."""
    return re.search(rf"CREATE OR REPLACE VIEW {name} AS\n(.*?);\n", _released(version, name), re.S).group(1)


def released_macro(version: int, name: str) -> str:
    """The table macro `name` as the released file V<version> defined it, renamed
    `<name>_v<version>`."""
    text = _released(version, name)
    body = re.search(rf"CREATE OR REPLACE MACRO {name}\(source\) AS TABLE\n(.*?);\n", text, re.S).group(1)
    return f"CREATE MACRO {name}_v{version:03d}(source) AS TABLE\n{body}"


def random_rows(rng: np.random.Generator, columns: list[str], n: int) -> list[dict]:
    keys, runs = ["k1", "k2", None], ["r1", "r2", None]
    written = [T0, T0 + timedelta(hours=1), None]
    files = ["/t/a.parquet", "/t/b.parquet", "/t/c.parquet"]
    rows = []
    for _ in range(n):
        row = {c: None for c in columns}
        row.update(
            schema_version=int(rng.choice([1, 1, 1, 2])),
            baseline_key=keys[rng.integers(0, 3)], run_id=runs[rng.integers(0, 3)],
            written_at=written[rng.integers(0, 3)], source_file=files[rng.integers(0, 3)],
            run_started_at=T0, stage="S", view="V", target=f"t{rng.integers(0, 2)}", cohort_id="c",
        )
        if "metric" in columns:
            row.update(metric=f"m{rng.integers(0, 3)}", kind="number", value=float(rng.normal()))
        else:
            row.update(distribution=f"d{rng.integers(0, 2)}", n_total=5, n_missing=0,
                       value=float(rng.normal()))
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """Every definition applied over raw tables the test fills itself."""
    root = tmp_path_factory.mktemp("sources")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    fill_settings(con, load_config(None), root)
    for name, schema in (("facts_raw", metrics_schema()), ("samples_raw", samples_schema()),
                         ("marks_raw", marks_schema())):
        con.execute(f"CREATE TABLE {name} AS {typed_empty(schema)}")
    for definition in discover():
        apply(con, definition)
    for name in ("facts", "samples"):
        con.execute(f"CREATE VIEW {name}_v001 AS {released_view(1, name)}")
    return con


@pytest.mark.parametrize("raw, view", [("facts_raw", "facts"), ("samples_raw", "samples")])
def test_the_newest_sidecar_wins_exactly_as_in_v001(con: duckdb.DuckDBPyConnection, raw: str, view: str) -> None:
    import pyarrow as pa

    columns = [c[0] for c in con.execute(f"DESCRIBE {raw}").fetchall()]
    rng = np.random.default_rng(8)
    kept = 0
    for trial in range(60):
        rows = random_rows(rng, columns, int(rng.integers(1, 40)))
        con.execute(f"DELETE FROM {raw}")
        con.register("incoming", pa.Table.from_pylist(rows))
        con.execute(f"INSERT INTO {raw} BY NAME SELECT * FROM incoming")
        con.unregister("incoming")
        expected = con.execute(f"SELECT * FROM {view}_v001 ORDER BY ALL").fetchall()
        # the columns V001 had (samples gained value_text since)
        kept_columns = ", ".join(c[0] for c in con.execute(f"DESCRIBE {view}_v001").fetchall())
        assert con.execute(f"SELECT {kept_columns} FROM {view} ORDER BY ALL").fetchall() == expected, f"trial {trial}"
        kept += len(expected)
    assert kept > 300  # the trials kept rows, not only dropped them


def test_written_at_ties_and_nulls(con: duckdb.DuckDBPyConnection) -> None:
    """Pinned cases: a tie on written_at goes to the later path; a file without written_at
    loses to one with it; if none has one, the later path wins; rows of the winning file
    with an older written_at are not kept (V001's ranking keeps only the top rank)."""
    con.execute("DELETE FROM facts_raw")
    t1, t2 = T0, T0 + timedelta(hours=1)
    rows = [  # (baseline_key, run_id, written_at, source_file, metric)
        ("tie", "r", t1, "/a", "m_a"), ("tie", "r", t1, "/b", "m_b"),
        ("null", "r", None, "/a", "m_a"), ("null", "r", t1, "/b", "m_b"),
        ("none", "r", None, "/a", "m_a"), ("none", "r", None, "/b", "m_b"),
        ("mixed", "r", t2, "/a", "new"), ("mixed", "r", t1, "/a", "old"), ("mixed", "r", t1, "/z", "other"),
    ]
    con.executemany("INSERT INTO facts_raw (schema_version, baseline_key, run_id, written_at, source_file, "
                    "metric, kind) VALUES (1, ?, ?, ?, ?, ?, 'number')", rows)
    got = con.execute("SELECT baseline_key, metric FROM facts ORDER BY ALL").fetchall()
    assert got == [("mixed", "new"), ("none", "m_b"), ("null", "m_b"), ("tie", "m_b")]
    assert got == con.execute("SELECT baseline_key, metric FROM facts_v001 ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from metricsduck.demo import write_demo

    root = tmp_path_factory.mktemp("replaced") / "results"
    write_demo(root, runs=7, seed=2)
    return root


def test_rollup_view_keeps_the_rows_of_v007(demo_root: Path) -> None:
    """Uncached, so the drift it reads is computed by the views, not served from a cache."""
    import metricsduck

    with metricsduck.connect(demo_root, use_cache=False) as store:
        body = released_view(7, "rollup_view")
        measured = "FROM population_drift WHERE status = 'COMPARED'"
        assert body.count(measured) == 1
        body = body.replace(measured, "FROM population_drift WHERE psi IS NOT NULL")
        store.sql(f"CREATE VIEW rollup_view_v007 AS {body}")
        expected = store.sql("SELECT * FROM rollup_view_v007 ORDER BY ALL").fetchall()
        assert len(expected) > 10_000 and store.sql("SELECT * FROM rollup_view ORDER BY ALL").fetchall() == expected
        assert {row[7] for row in expected} >= {"worst_item", "tier_ALERT", "population_psi", "median"}
        one_run = "SELECT * FROM {} WHERE run_id = (SELECT max(run_id) FROM runs) AND level = 'target' ORDER BY ALL"
        released = store.sql(one_run.format("rollup_view_v007")).fetchall()
        assert store.sql(one_run.format("rollup_view")).fetchall() == released


def test_trends_keep_the_rows_of_v006_for_every_scope(demo_root: Path) -> None:
    import metricsduck

    with metricsduck.connect(demo_root, use_cache=False) as store:
        store.sql(f"CREATE VIEW trends_v006 AS {released_view(6, 'trends')}")
        expected = store.sql("SELECT * FROM trends_v006 ORDER BY ALL").fetchall()
        v006 = ", ".join(store.sql("SELECT * FROM trends_v006 LIMIT 0").columns)  # since: good_direction, assessment
        assert len(expected) > 500 and store.sql(f"SELECT {v006} FROM trends ORDER BY ALL").fetchall() == expected
        # a scope: the latest run's cohort-runs of half the keys, and one cohort-run of an older run
        store.sql("CREATE TABLE scope AS SELECT baseline_key, run_id FROM cohort_runs "
                  "WHERE (run_id = (SELECT max(run_id) FROM cohort_runs) AND hash(baseline_key) % 2 = 0) "
                  "OR (baseline_key, run_id) = (SELECT (baseline_key, run_id) FROM cohort_runs "
                  "WHERE ordinal = 6 ORDER BY baseline_key LIMIT 1)")
        chosen = store.sql("SELECT * FROM trends_v006 SEMI JOIN scope USING (baseline_key, run_id) "
                           "ORDER BY ALL").fetchall()
        assert 0 < len(chosen) < len(expected) and len({row[6] for row in chosen}) == 2
        assert store.sql(f"SELECT {v006} FROM trends_of('scope') ORDER BY ALL").fetchall() == chosen


def random_comparisons(rng: np.random.Generator) -> list[dict]:
    """Rows (pair_id, distribution, side, value) of a few comparisons of random shapes."""
    rows = []
    for pair in range(int(rng.integers(1, 8))):
        for distribution in ("d0", "d1")[: int(rng.integers(1, 3))]:
            shape = rng.choice(["normal", "few levels", "tiny", "one side", "signed zero"])
            for side in ("current", "baseline"):
                size = int(rng.integers(1, 4)) if shape == "tiny" else int(rng.integers(1, 300))
                if shape == "normal":
                    values = rng.normal(0.3 if side == "current" else 0.0, 1.0, size).round(2)
                elif shape == "few levels":  # ties inside a side, across sides and at the edges
                    values = rng.integers(0, 4, size).astype(float)
                elif shape == "signed zero":
                    values = rng.choice([-0.0, 0.0, 1.0, -1.0], size)
                else:
                    values = rng.normal(0.0, 1.0, size)
                values = [None if rng.random() < 0.05 else float(v) for v in values]
                if shape == "one side" and side == "baseline":
                    values = [None] * len(values)
                rows += [{"pair_id": pair, "distribution": distribution, "side": side, "value": v}
                         for v in values]
    return rows


@pytest.mark.parametrize("bins", [10, 2, 7])
def test_two_sample_bins_keep_the_rows_of_v004(con: duckdb.DuckDBPyConnection, bins: int) -> None:
    import pyarrow as pa

    con.execute("DROP MACRO TABLE IF EXISTS two_sample_bins_v004")
    con.execute(released_macro(4, "two_sample_bins"))
    con.execute("UPDATE settings SET value = ? WHERE key = 'drift.psi_bins'", [bins])
    rng = np.random.default_rng(bins)
    compared = 0
    try:
        for trial in range(40):
            con.register("comparisons", pa.Table.from_pylist(random_comparisons(rng), schema=pa.schema(
                [("pair_id", pa.int64()), ("distribution", pa.string()), ("side", pa.string()),
                 ("value", pa.float64())])))
            released = con.execute("SELECT * FROM two_sample_bins_v004('comparisons') ORDER BY ALL")
            v004 = ", ".join(c[0] for c in released.description)  # since: wasserstein
            expected = released.fetchall()
            got = con.execute(f"SELECT {v004} FROM two_sample_bins('comparisons') ORDER BY ALL").fetchall()
            assert got == expected, f"trial {trial}"
            compared += len({(row[0], row[1]) for row in expected})
            con.unregister("comparisons")
    finally:
        con.execute("UPDATE settings SET value = 10 WHERE key = 'drift.psi_bins'")
    assert compared > 100  # comparisons with values on both sides, not only empty results
