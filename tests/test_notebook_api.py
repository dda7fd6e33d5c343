"""The notebook API (docs/design.md §10.1): `store.psi_bins(...)` and `store.ecdf(...)`.

Numbers are checked against numpy/scipy oracles fed with the sample values read here,
with pyarrow, straight from the demo tree's `telemetry_samples.parquet` files (never
through a metricsduck view). The tree is the six-run demo, whose last run shifts the
`oof_predictions` of one symbol-specific cohort by +0.15.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck import InputError
from metricsduck.demo import SHIFT_SYMBOL, SHIFT_TARGET, run_id_of
from oracles import ks_statistic, psi_oracle

RUNS = 6
LATEST = run_id_of(RUNS)
SS, CS = "SYMBOL_SPECIFIC", "CROSS_SECTIONAL"
SHIFT = {"view": SS, "target": SHIFT_TARGET, "symbol": SHIFT_SYMBOL}
FILTERS = ("stage", "view", "target", "symbol", "baseline_key", "run", "distribution")
HOSTILE = "x' OR 1=1 --"
PSI_BINS, PSI_EPSILON, ROLLING_K = 10, 1e-4, 10  # the packaged config (docs/design.md §5.2, §4)


@pytest.fixture(scope="module")
def tree(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_trees.copy(tmp_path_factory.mktemp("notebook_api") / "tree", runs=RUNS, seed=0).root


@pytest.fixture(scope="module")
def store(tree: Path):
    with metricsduck.connect(tree) as store:
        yield store


def read_values(tree: Path, run: int, distribution: str, *, view: str, target: str,
                symbol: str | None = None) -> np.ndarray:
    """The finite sample values of one cohort in run `run`, read from its Parquet file."""
    cohort = tree / f"run_{run:02d}" / "REPRODUCIBILITY" / "TARGET_RANKING" / view / target
    if symbol is not None:
        cohort = cohort / f"symbol={symbol}"
    (path,) = cohort.glob("cohort=*/telemetry_samples.parquet")
    table = pq.read_table(path)
    rows = [v for d, v in zip(table["distribution"].to_pylist(), table["value"].to_pylist(), strict=True)
            if d == distribution and v is not None]
    assert rows, f"no {distribution} values in {path}"
    return np.array(rows, dtype=float)


def as_dicts(relation) -> list[dict]:
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


@pytest.fixture(scope="module")
def shift_drift(store) -> dict[tuple[str, str], dict]:
    """The latest run's distribution drift rows of the shifted cohort by (kind, item)."""
    rows = as_dicts(store.drift(run=LATEST, item="distribution", **SHIFT))
    return {(r["baseline_kind"], r["item"]): r for r in rows}


# --- psi_bins ---------------------------------------------------------------------------


def test_psi_bins_of_the_injected_shift_match_the_numpy_oracle(store, tree, shift_drift):
    cur = read_values(tree, RUNS, "oof_predictions", **SHIFT)
    base = read_values(tree, RUNS - 1, "oof_predictions", **SHIFT)
    oracle = psi_oracle(cur, base, PSI_BINS, PSI_EPSILON)
    rows = as_dicts(store.psi_bins(run="latest", baseline="previous_run",
                                   distribution="oof_predictions", **SHIFT))

    assert [r["bin"] for r in rows] == list(range(oracle["bins"]))
    assert {(r["run_id"], r["baseline_run_id"], r["baseline_kind"], r["n"], r["m"]) for r in rows} == {
        (LATEST, run_id_of(RUNS - 1), "previous_run", cur.size, base.size)}
    assert rows[0]["lower_edge"] is None and rows[-1]["upper_edge"] is None
    np.testing.assert_allclose([r["upper_edge"] for r in rows[:-1]], oracle["edges"], rtol=0, atol=1e-15)
    np.testing.assert_allclose([r["lower_edge"] for r in rows[1:]], oracle["edges"], rtol=0, atol=1e-15)
    assert [r["current_count"] for r in rows] == oracle["cur_counts"].tolist()
    assert [r["baseline_count"] for r in rows] == oracle["base_counts"].tolist()
    np.testing.assert_allclose([r["current_share"] for r in rows], oracle["cur_share"], rtol=1e-12)
    np.testing.assert_allclose([r["baseline_share"] for r in rows], oracle["base_share"], rtol=1e-12)
    np.testing.assert_allclose([r["contribution"] for r in rows], oracle["contribution"], rtol=1e-10)
    # The shift moves mass up: the lowest bins empty out, so PSI is far above ALERT (0.2).
    assert rows[0]["current_count"] < rows[0]["baseline_count"]
    assert oracle["psi"] > 1.0
    assert math.fsum(r["contribution"] for r in rows) == pytest.approx(
        shift_drift["previous_run", "oof_predictions"]["psi"], rel=1e-12)


def test_rolling_psi_bins_pool_every_earlier_run(store, tree):
    where = {"view": CS, "target": "y_will_peak_30m_0.03"}
    cur = read_values(tree, RUNS, "feature_importance", **where)
    base = np.concatenate([read_values(tree, run, "feature_importance", **where)
                           for run in range(max(1, RUNS - ROLLING_K), RUNS)])
    oracle = psi_oracle(cur, base, PSI_BINS, PSI_EPSILON)
    rows = as_dicts(store.psi_bins(run=LATEST, baseline="rolling", distribution="feature_importance",
                                   **where))

    assert {(r["baseline_run_id"], r["baseline_runs"], r["m"]) for r in rows} == {(None, RUNS - 1, base.size)}
    assert [r["current_count"] for r in rows] == oracle["cur_counts"].tolist()
    assert [r["baseline_count"] for r in rows] == oracle["base_counts"].tolist()
    np.testing.assert_allclose([r["contribution"] for r in rows], oracle["contribution"], rtol=1e-10, atol=1e-15)


def test_psi_bins_method_equals_the_psi_bins_view(store):
    """The method pre-filters pairs for speed; its rows must be the view's rows."""
    columns = ("baseline_key, run_id, baseline_kind, distribution, bin, lower_edge, upper_edge, "
               "baseline_count, current_count, baseline_share, current_share, contribution")
    key = f"TARGET_RANKING:{SS}:{SHIFT_TARGET}:{SHIFT_SYMBOL}"
    from_view = store.sql(f"SELECT {columns} FROM psi_bins WHERE baseline_key = ? "
                          f"ORDER BY ALL", [key]).fetchall()
    from_method = store.psi_bins(baseline_key=key).query(
        "rel", f"SELECT {columns} FROM rel ORDER BY ALL").fetchall()
    # every run but the first has previous_run and rolling; last_good_run skips nothing here
    assert len(from_view) > 3 * PSI_BINS
    assert len(from_method) == len(from_view)
    for got, want in zip(from_method, from_view, strict=True):
        assert got[:9] == want[:9]
        assert got[9:] == pytest.approx(want[9:], rel=1e-12, abs=1e-15)


def test_each_filter_keeps_only_matching_rows(store):
    rows = as_dicts(store.psi_bins(stage="TARGET_RANKING", run="latest", baseline="last_good_run",
                                   distribution="fold_scores", **SHIFT))
    assert rows
    assert {(r["stage"], r["view"], r["target"], r["symbol"], r["run_id"], r["baseline_kind"],
             r["distribution"]) for r in rows} == {
        ("TARGET_RANKING", SS, SHIFT_TARGET, SHIFT_SYMBOL, LATEST, "last_good_run", "fold_scores")}

    latest = store.psi_bins(run="latest", view=CS).aggregate("count(DISTINCT run_id), count(DISTINCT target)")
    assert latest.fetchall() == [(1, 10)]
    everything = store.psi_bins(view=CS).aggregate("count(DISTINCT run_id)").fetchall()
    assert everything == [(RUNS - 1,)]  # the first run has no baseline
    with pytest.raises(InputError, match="run no_such_run: no such run"):
        store.psi_bins(run="no_such_run")


@pytest.mark.parametrize("method", ["psi_bins", "ecdf"])
@pytest.mark.parametrize("name", FILTERS)
def test_filter_values_are_bound_never_pasted(store, method, name):
    # the value is checked against the tree as a bound parameter: refused, quoted verbatim,
    # and the views still answer
    with pytest.raises(InputError, match=f"{name} {re.escape(HOSTILE)}: no such {name}"):
        getattr(store, method)(**{name: HOSTILE})
    assert getattr(store, method)(run="latest", **SHIFT).fetchall()


@pytest.mark.parametrize("method", ["psi_bins", "ecdf"])
def test_bad_filter_values_are_input_errors(store, method):
    with pytest.raises(InputError, match="baseline must be one of previous_run, rolling, last_good_run"):
        getattr(store, method)(baseline="yesterday")
    with pytest.raises(InputError, match="target must be a string, got int 3"):
        getattr(store, method)(target=3)
    with pytest.raises(TypeError):
        getattr(store, method)(tier="ALERT")  # not a filter of bins or CDFs


# --- ecdf -------------------------------------------------------------------------------


def test_ecdf_of_the_injected_shift_matches_numpy_and_scipy(store, tree, shift_drift):
    cur = read_values(tree, RUNS, "oof_predictions", **SHIFT)
    base = read_values(tree, RUNS - 1, "oof_predictions", **SHIFT)
    rows = as_dicts(store.ecdf(run=LATEST, baseline="previous_run", distribution="oof_predictions", **SHIFT))

    values = np.array([r["value"] for r in rows])
    np.testing.assert_array_equal(values, np.union1d(cur, base))  # every distinct value, sorted
    cur_sorted, base_sorted = np.sort(cur), np.sort(base)
    np.testing.assert_allclose([r["current_cdf"] for r in rows],
                               np.searchsorted(cur_sorted, values, side="right") / cur.size, rtol=1e-12)
    np.testing.assert_allclose([r["baseline_cdf"] for r in rows],
                               np.searchsorted(base_sorted, values, side="right") / base.size, rtol=1e-12)
    assert sum(r["current_count"] for r in rows) == cur.size == rows[0]["n"]
    assert sum(r["baseline_count"] for r in rows) == base.size == rows[0]["m"]
    assert rows[-1]["current_cdf"] == rows[-1]["baseline_cdf"] == 1.0

    d = max(abs(r["current_cdf"] - r["baseline_cdf"]) for r in rows)
    assert d == pytest.approx(ks_statistic(cur, base), abs=1e-12)
    assert d == pytest.approx(shift_drift["previous_run", "oof_predictions"]["ks_d"], abs=1e-12)
    assert d > 0.3  # the injected +0.15 shift


def test_ecdf_with_ties_counts_equal_values_once(store, tree):
    """fold_scores are identical in every run of a stable cohort: both CDFs coincide."""
    where = {"view": CS, "target": "y_will_breakout_60m_0.04"}
    cur = read_values(tree, RUNS, "fold_scores", **where)
    rows = as_dicts(store.ecdf(run=LATEST, baseline="rolling", distribution="fold_scores", **where))
    assert [r["value"] for r in rows] == sorted(set(cur.tolist()))
    assert {r["baseline_count"] for r in rows} == {RUNS - 1}  # pooled: each value once per run
    assert all(r["current_cdf"] == r["baseline_cdf"] for r in rows)
    assert ks_statistic(cur, np.tile(cur, RUNS - 1)) == 0.0


# --- conversions and imports --------------------------------------------------------------


def test_relations_convert_to_arrow(store):
    table = store.psi_bins(run="latest", distribution="oof_predictions", **SHIFT).arrow()
    if isinstance(table, pa.RecordBatchReader):  # DuckDB 2 may hand back a stream
        table = table.read_all()
    assert table.num_rows == 3 * PSI_BINS  # three baseline kinds
    assert table.column_names[:4] == ["stage", "view", "target", "symbol"]
    assert table.schema.field("contribution").type == pa.float64()
    assert table.schema.field("bin").type in (pa.int64(), pa.int32())


def test_relations_convert_to_pandas(store):
    pytest.importorskip("pandas")
    frame = store.ecdf(run="latest", baseline="previous_run", distribution="oof_predictions", **SHIFT).df()
    assert len(frame) > 500
    assert frame["current_cdf"].is_monotonic_increasing
    assert frame["baseline_cdf"].is_monotonic_increasing
    assert frame["value"].is_monotonic_increasing and frame["value"].is_unique


def test_importing_metricsduck_does_not_import_plotting_or_pandas():
    code = ("import sys, metricsduck; "
            "print(sorted(m for m in ('matplotlib', 'pandas', 'nbclient') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_registered_data_joins_the_views_and_catalog_names_are_refused(demo_store):
    import pyarrow as pa

    from metricsduck.errors import InputError

    store, _, _ = demo_store
    targets = [t for (t,) in store.sql("SELECT DISTINCT target FROM cohort_runs ORDER BY target").fetchall()]
    owners = pa.table({"target": targets[:2], "owner": ["ana", "bo"]})
    store.register("owners", owners)
    rows = store.sql("SELECT owner, count(*) FROM cohort_runs JOIN owners USING (target) "
                     "GROUP BY owner ORDER BY owner").fetchall()
    expected = {t: n for t, n in store.con.sql(
        "SELECT target, count(*) FROM cohort_runs GROUP BY target").fetchall()}
    assert rows == [("ana", expected[targets[0]]), ("bo", expected[targets[1]])]
    for name in ("drift", "facts_raw"):
        with pytest.raises(InputError, match=f"register '{name}': that is a name of metricsduck's catalog"):
            store.register(name, owners)
