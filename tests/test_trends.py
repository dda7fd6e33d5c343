"""Trends (docs/design.md §6): the `trends` view against numpy oracles, the demo's decline, the CLI.

Every expected number is recomputed here, with numpy or plain Python, from the values the
tests themselves wrote; metricsduck is never asked to compute what it is checked against.
The oracle's x is 0..n-1 within the window, over the cohort-runs whose value is a finite
number (missing, None, NaN and ±inf values are skipped; bools and text are not numbers).
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main
from metricsduck.config import load_config
from metricsduck.errors import InputError

START = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
RUNS = 30
STAGE = "TARGET_RANKING"
CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"
ALPHA = (STAGE, CS, "t_alpha", None)
BETA_A = (STAGE, SS, "t_beta", "AAA")
BETA_B = (STAGE, SS, "t_beta", "BBB")  # three runs only
SHORT = (STAGE, CS, "t_short", None)  # four runs only
OTHER_STAGE = ("FEATURE_SELECTION", CS, "t_alpha", None)  # same target, another stage
EDGE = (STAGE, CS, "t_edge", None)
DEFAULTS = {"window": 20, "min_runs": 5, "min_r2": 0.5, "min_rel_change": 0.05}
REL_TOL, ABS_TOL = 1e-9, 1e-12  # OLS by two different algorithms
TREND_COLUMNS = [
    "stage", "view", "target", "symbol", "baseline_key", "metric", "run_id", "run_started_at",
    "n_runs", "slope", "slope_per_day", "intercept", "r2", "theil_sen_slope", "first_value",
    "last_value", "mean", "direction", "good_direction", "assessment",
]
NUMBERS = ("slope", "slope_per_day", "intercept", "r2", "theil_sen_slope", "mean")


def run_id(i: int) -> str:
    return f"run_{i:02d}"


# --- writing trees ---------------------------------------------------------------------------

def write_tree(root: Path, spec: dict, starts: list[datetime]) -> None:
    """One sidecar per key x run holding every metric that key has in that run."""
    for (stage, view, target, symbol), metrics in spec.items():
        runs = sorted({i for values in metrics.values() for i in values})
        for i in runs:
            folder = root / run_id(i) / "REPRODUCIBILITY" / stage / view / target
            if symbol is not None:
                folder = folder / f"symbol={symbol}"
            metricsduck.write_cohort_metrics(
                folder / "cohort=c1", run_id=run_id(i), run_started_at=starts[i],
                written_at=starts[i] + timedelta(hours=1), stage=stage, view=view,
                target=target, symbol=symbol,
                metrics={m: values[i] for m, values in metrics.items() if i in values},
            )


def oracle_spec(rng: np.random.Generator) -> dict:
    """Several keys and metrics over RUNS runs: exact lines, noise, gaps, non-numbers."""
    def normal(sd: float) -> float:
        return float(rng.normal(0.0, sd))

    every = range(RUNS)
    gappy = {i: 5.0 + 0.3 * i + normal(0.2) for i in every if i != 4}  # run 4: metric absent
    gappy.update({3: None, 10: float("nan"), 17: float("nan"), 21: float("inf"), 22: float("-inf")})
    beta_runs = [i for i in every if i not in (7, 8, 19)]  # the cohort is missing in 3 runs
    return {
        ALPHA: {
            "exact_up": {i: 2.5 + 0.75 * i for i in every},
            "exact_down_neg": {i: -1.0 - 0.125 * i for i in every},
            "noisy": {i: 0.6 + 0.002 * i + normal(0.01) for i in every},
            "noise_only": {i: normal(1.0) for i in every},
            "const": {i: 0.1 for i in every},
            "zero": {i: 0.0 for i in every},
            "gappy": gappy,
            "count": {i: 500 - 3 * i + int(rng.integers(-2, 3)) for i in every},  # ints are numbers
            "flag": {i: i % 3 == 0 for i in every},  # bool: kind 'bool', never trended
            "label": {i: f"v{i}" for i in every},  # text
            "late": {i: 100.0 - 2.0 * i + normal(1.0) for i in range(12, RUNS)},
        },
        BETA_A: {
            "noisy": {i: -3.0 - 0.05 * i + normal(0.3) for i in beta_runs},
            "exact_up": {i: 2.5 + 0.75 * i for i in beta_runs},
        },
        BETA_B: {"noisy": {i: 1.0 + normal(0.1) for i in range(3)}},
        SHORT: {"noisy": {i: 2.0 + 0.1 * i + normal(0.05) for i in range(4)}},
        OTHER_STAGE: {"exact_up": {i: 10.0 - 0.5 * i for i in every}},
    }


def r2_series(level: float, slope: float, r2: float) -> list[float]:
    """Five points (x = 0..4) with OLS slope `slope`, mean `level` and r² `r2`.

    e is orthogonal to 1 and x, so it leaves slope and mean alone and
    r² = 10 slope² / (10 slope² + 4 c²).
    """
    x, e = np.arange(5.0), np.array([1.0, -1.0, 0.0, -1.0, 1.0])
    c = math.sqrt(10 * slope**2 * (1 - r2) / (4 * r2)) if r2 > 0 else 1.0
    return list(level + slope * (x - 2) + c * e)


def line(level: float, slope: float) -> list[float]:
    return [level + slope * (x - 2) for x in range(5)]


# metric -> (values of runs 0..4, direction with default thresholds, with CUSTOM_THRESHOLDS).
# Each sits just above or just below one threshold; r² ≥ 0.5 and |slope|·4 ≥ 0.05·|mean| by
# default, r² ≥ 0.9 and |slope|·4 ≥ 0.2·|mean| in the custom config.
CUSTOM_THRESHOLDS = {"min_r2": 0.9, "min_rel_change": 0.2}
EDGE_CASES = {
    "r2_just_above": (r2_series(10.0, -1.0, 0.5 * (1 + 1e-6)), "decreasing", "flat"),
    "r2_just_below": (r2_series(10.0, -1.0, 0.5 * (1 - 1e-6)), "flat", "flat"),
    "r2_custom_above": (r2_series(10.0, 1.0, 0.9 * (1 + 1e-7)), "increasing", "increasing"),
    "r2_custom_below": (r2_series(10.0, 1.0, 0.9 * (1 - 1e-7)), "increasing", "flat"),
    "rel_just_above": (line(100.0, 1.25 * (1 + 1e-6)), "increasing", "flat"),
    "rel_just_below": (line(100.0, 1.25 * (1 - 1e-6)), "flat", "flat"),
    "rel_neg_mean_above": (line(-100.0, -1.25 * (1 + 1e-6)), "decreasing", "flat"),
    "rel_neg_mean_below": (line(-100.0, -1.25 * (1 - 1e-6)), "flat", "flat"),
    "rel_neg_mean_rising": (line(-100.0, 1.25 * (1 + 1e-6)), "increasing", "flat"),
    "rel_custom_above": (line(100.0, -5.0 * (1 + 1e-6)), "decreasing", "decreasing"),
    "rel_custom_below": (line(100.0, -5.0 * (1 - 1e-6)), "decreasing", "flat"),
    "zero_mean_rising": (line(0.0, 1e-3), "increasing", "increasing"),
    "no_slope": (r2_series(10.0, 0.0, 0.0), "flat", "flat"),
    "const": ([7.25] * 5, "flat", "flat"),
    "zero": ([0.0] * 5, "flat", "flat"),
}


def write_config(folder: Path, name: str, trend: dict) -> metricsduck.Config:
    body = "".join(f"      {k}: {v}\n" for k, v in trend.items())
    path = folder / f"{name}.yaml"
    path.write_text(f"safety:\n  telemetry:\n    trend:\n{body}", encoding="utf-8")
    return load_config(path)


# --- the oracle ------------------------------------------------------------------------------

def is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def theil_sen(y: np.ndarray) -> float:
    n = len(y)
    return float(np.median([(y[b] - y[a]) / (b - a) for a in range(n) for b in range(a + 1, n)]))


def expected_trends(spec: dict, starts: list[datetime], window: int, min_runs: int) -> dict:
    """(stage, view, target, symbol, metric, run_id) -> the trend as of that run."""
    out = {}
    for key, metrics in spec.items():
        for metric, values in metrics.items():
            points = [(i, float(v)) for i, v in sorted(values.items()) if is_number(v)]
            for end in range(min_runs, len(points) + 1):
                pts = points[max(0, end - window):end]
                y = np.array([v for _, v in pts])
                x = np.arange(len(y), dtype=float)
                days = np.array([(starts[i] - starts[pts[0][0]]).total_seconds() / 86400 for i, _ in pts])
                slope, intercept = np.polyfit(x, y, 1)
                constant = bool(np.ptp(y) == 0)
                out[key + (metric, run_id(pts[-1][0]))] = {
                    "n_runs": len(y),
                    "slope": float(slope),
                    "intercept": float(intercept),
                    # numpy has no r² for a constant series (corrcoef divides by 0); the view
                    # gives 1 there, as DuckDB's regr_r2 does when y is constant and x varies.
                    "r2": 1.0 if constant else float(np.corrcoef(x, y)[0, 1] ** 2),
                    "slope_per_day": float(np.polyfit(days, y, 1)[0]),
                    "theil_sen_slope": theil_sen(y),
                    "first_value": float(y[0]),
                    "last_value": float(y[-1]),
                    "mean": float(np.mean(y)),
                    "constant": constant,
                    "scale": float(np.max(np.abs(y))) or 1.0,
                    "run_started_at": starts[pts[-1][0]],
                    "first_run": run_id(pts[0][0]),
                }
    return out


def expected_direction(o: dict, min_r2: float, min_rel: float) -> str | None:
    """docs/design.md §6's rule on the oracle's numbers; None when too close to a threshold to call."""
    if o["constant"]:
        return "flat"
    change, needed = abs(o["slope"]) * (o["n_runs"] - 1), min_rel * abs(o["mean"])
    if abs(o["r2"] - min_r2) <= 1e-9 or abs(change - needed) <= 1e-9 * max(change, needed):
        return None
    if o["r2"] >= min_r2 and change >= needed:
        return "increasing" if o["slope"] > 0 else "decreasing"
    return "flat"


def fetch(store, query: str = "SELECT * FROM trends", params=None) -> list[dict]:
    relation = store.sql(query, params)
    return [dict(zip(relation.columns, r, strict=True)) for r in relation.fetchall()]


def by_place(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        place = (r["stage"], r["view"], r["target"], r["symbol"], r["metric"], r["run_id"])
        assert place not in out, f"two trend rows for {place}"
        out[place] = r
    return out


def close(actual: float, expected: float, scale: float) -> bool:
    return actual is not None and abs(actual - expected) <= REL_TOL * abs(expected) + ABS_TOL * scale


def check_against_oracle(store, expected: dict, min_r2: float, min_rel: float) -> dict:
    """Every row of the view equals the oracle's; returns {direction: count} of checked rows."""
    rows = by_place(fetch(store))
    assert set(rows) == set(expected)
    directions = {"increasing": 0, "decreasing": 0, "flat": 0, None: 0}
    for place, o in expected.items():
        row = rows[place]
        for name in ("n_runs", "first_value", "last_value"):
            assert row[name] == o[name], (place, name, row[name], o[name])
        assert row["run_started_at"] == o["run_started_at"], place
        for name in NUMBERS:
            scale = 1.0 if name == "r2" else o["scale"]
            assert close(row[name], o[name], scale), (place, name, row[name], o[name])
        if o["constant"]:
            # Pinned: a constant series has slope 0, Theil-Sen 0 and r2 1 (DuckDB regr_r2
            # with var(y) = 0 and var(x) > 0), and is flat.
            assert (row["slope"], row["theil_sen_slope"], row["r2"]) == (0.0, 0.0, 1.0), place
        want = expected_direction(o, min_r2, min_rel)
        directions[want] += 1
        if want is not None:
            assert row["direction"] == want, (place, row, o)
    return directions


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oracle_tree(tmp_path_factory):
    """RUNS runs at irregular times (1-3 days apart plus up to 20 h, to the microsecond)."""
    rng = np.random.default_rng(20250303)
    root = tmp_path_factory.mktemp("trend_oracle")
    gaps = np.concatenate([[0], rng.choice([1, 1, 1, 2, 3], size=RUNS - 1)]).cumsum()
    starts = [START + timedelta(days=int(d), seconds=int(rng.integers(0, 20 * 3600)),
                                microseconds=int(rng.integers(0, 10**6))) for d in gaps]
    spec = oracle_spec(rng)
    write_tree(root, spec, starts)
    return root, spec, starts


@pytest.fixture(scope="module")
def oracle_store(oracle_tree):
    root, spec, starts = oracle_tree
    with metricsduck.connect(root) as store:
        yield store, spec, starts


@pytest.fixture(scope="module")
def edge_tree(tmp_path_factory):
    """Five daily runs of one key whose metrics sit just beside the direction thresholds."""
    root = tmp_path_factory.mktemp("trend_edges")
    starts = [START + timedelta(days=i) for i in range(5)]
    spec = {EDGE: {m: dict(enumerate(values)) for m, (values, _, _) in EDGE_CASES.items()}}
    write_tree(root, spec, starts)
    return root, spec, starts


# --- oracles ---------------------------------------------------------------------------------

def test_every_trend_matches_numpy_with_the_default_window(oracle_store):
    store, spec, starts = oracle_store
    expected = expected_trends(spec, starts, DEFAULTS["window"], DEFAULTS["min_runs"])
    directions = check_against_oracle(store, expected, DEFAULTS["min_r2"], DEFAULTS["min_rel_change"])
    # The tree exercises every direction, and almost nothing sits on a threshold.
    assert directions["increasing"] > 10 and directions["decreasing"] > 10 and directions["flat"] > 10
    assert directions[None] <= 2
    # The window slides: 30 runs, window 20, so the last rows hold exactly the last 20 points.
    last = expected[ALPHA + ("exact_up", run_id(RUNS - 1))]
    assert last["n_runs"] == 20 and last["first_run"] == run_id(RUNS - 20)


def test_exact_lines_give_their_slope_and_the_window_start_as_intercept(oracle_store):
    store, _, starts = oracle_store
    rows = by_place(fetch(store))
    for i in range(DEFAULTS["min_runs"] - 1, RUNS):
        first = max(0, i - DEFAULTS["window"] + 1)
        up, down = rows[ALPHA + ("exact_up", run_id(i))], rows[ALPHA + ("exact_down_neg", run_id(i))]
        assert close(up["slope"], 0.75, 1.0) and close(up["theil_sen_slope"], 0.75, 1.0)
        assert close(up["intercept"], 2.5 + 0.75 * first, 1.0)
        assert close(up["r2"], 1.0, 1.0) and up["direction"] == "increasing"
        assert close(down["slope"], -0.125, 1.0) and close(down["intercept"], -1.0 - 0.125 * first, 1.0)
        assert down["direction"] == "decreasing" and down["mean"] < 0
        # The same target in another stage is another baseline key: its own line.
        other = rows[OTHER_STAGE + ("exact_up", run_id(i))]
        assert close(other["slope"], -0.5, 1.0) and other["direction"] == "decreasing"
    # slope_per_day follows the run times, which are irregular: not the per-run slope.
    row = rows[ALPHA + ("exact_up", run_id(RUNS - 1))]
    days = np.array([(s - START).total_seconds() / 86400 for s in starts[RUNS - 20:]])
    assert close(row["slope_per_day"], float(np.polyfit(days, 2.5 + 0.75 * np.arange(10, 30), 1)[0]), 1.0)
    assert not close(row["slope_per_day"], 0.75, 1.0)


def test_only_finite_numbers_count_and_runs_without_one_are_skipped(oracle_store):
    store, spec, _ = oracle_store
    metrics = {r[0] for r in store.sql("SELECT DISTINCT metric FROM trends").fetchall()}
    assert {"flag", "label"}.isdisjoint(metrics) and {"count", "gappy"} <= metrics
    gappy = by_place(fetch(store, "SELECT * FROM trends WHERE metric = 'gappy' AND target = 't_alpha'"))
    finite = [i for i, v in sorted(spec[ALPHA]["gappy"].items()) if is_number(v)]
    assert {3, 4, 10, 17, 21, 22}.isdisjoint(finite)
    # A row for each run with a finite value from the fifth such run on, none for the others.
    assert {place[-1] for place in gappy} == {run_id(i) for i in finite[4:]}
    row = gappy[ALPHA + ("gappy", run_id(finite[4]))]
    assert row["n_runs"] == 5 and row["first_value"] == spec[ALPHA]["gappy"][finite[0]]
    # A metric that starts late trends from its own fifth value; a cohort missing in some
    # runs counts only the runs it has (x steps over the gap).
    late = fetch(store, "SELECT min(run_id) AS first FROM trends WHERE metric = 'late'")
    assert late[0]["first"] == run_id(12 + 4)
    beta = by_place(fetch(store, "SELECT * FROM trends WHERE symbol = 'AAA' AND metric = 'exact_up'"))
    row = beta[BETA_A + ("exact_up", run_id(9))]  # runs 0-6 and 9: eight points, x = 0..7
    y = np.array([2.5 + 0.75 * i for i in (0, 1, 2, 3, 4, 5, 6, 9)])
    slope, intercept = np.polyfit(np.arange(8.0), y, 1)
    assert row["n_runs"] == 8 and close(row["slope"], slope, 10.0) and close(row["intercept"], intercept, 10.0)
    assert not close(row["slope"], 0.75, 1.0)
    # Keys with fewer than trend.min_runs (5) runs have no trend at all.
    assert fetch(store, "SELECT * FROM trends WHERE target = 't_short' OR symbol = 'BBB'") == []


def test_window_and_min_runs_from_yaml(oracle_tree, tmp_path):
    root, spec, starts = oracle_tree
    config = write_config(tmp_path, "window4", {"window": 4, "min_runs": 3})
    with metricsduck.connect(root, config) as store:
        expected = expected_trends(spec, starts, 4, 3)
        check_against_oracle(store, expected, DEFAULTS["min_r2"], DEFAULTS["min_rel_change"])
        rows = by_place(fetch(store))
    # Nine runs in, window 4: exactly the points of runs 5..8.
    row = rows[ALPHA + ("exact_up", run_id(8))]
    assert (row["n_runs"], row["first_value"], row["last_value"]) == (4, 2.5 + 0.75 * 5, 2.5 + 0.75 * 8)
    assert close(row["intercept"], 2.5 + 0.75 * 5, 1.0) and close(row["mean"], 2.5 + 0.75 * 6.5, 1.0)
    noisy = [spec[ALPHA]["noisy"][i] for i in range(5, 9)]
    assert close(rows[ALPHA + ("noisy", run_id(8))]["mean"], float(np.mean(noisy)), 1.0)
    assert max(r["n_runs"] for r in rows.values()) == 4
    # min_runs 3: the first row is at the third run; none before.
    assert {p[-1] for p in rows if p[:5] == ALPHA + ("exact_up",)} == {run_id(i) for i in range(2, RUNS)}
    assert {p[-1] for p in rows if p[:4] == BETA_B} == {run_id(2)}
    assert {p[-1] for p in rows if p[:4] == SHORT} == {run_id(2), run_id(3)}
    assert rows[SHORT + ("noisy", run_id(2))]["n_runs"] == 3


def test_direction_thresholds_just_above_and_below(edge_tree, tmp_path):
    root, spec, starts = edge_tree
    custom = write_config(tmp_path, "thresholds", CUSTOM_THRESHOLDS)
    for config, column, (min_r2, min_rel) in (
        (None, 1, (DEFAULTS["min_r2"], DEFAULTS["min_rel_change"])),
        (custom, 2, (CUSTOM_THRESHOLDS["min_r2"], CUSTOM_THRESHOLDS["min_rel_change"])),
    ):
        with metricsduck.connect(root, config) as store:
            expected = expected_trends(spec, starts, DEFAULTS["window"], DEFAULTS["min_runs"])
            check_against_oracle(store, expected, min_r2, min_rel)
            rows = by_place(fetch(store))
        assert len(rows) == len(EDGE_CASES)
        for metric, case in EDGE_CASES.items():
            o = expected[EDGE + (metric, run_id(4))]
            # The oracle agrees with the table, clear of the 1e-9 no-call band.
            assert expected_direction(o, min_r2, min_rel) == case[column], (metric, o)
            assert rows[EDGE + (metric, run_id(4))]["direction"] == case[column], (metric, config)
    # The series are what they claim: r² and relative change right beside the thresholds.
    fits = {m: expected[EDGE + (m, run_id(4))] for m in EDGE_CASES}
    assert 0 < fits["r2_just_above"]["r2"] - 0.5 < 1e-5 and 0 < 0.5 - fits["r2_just_below"]["r2"] < 1e-5
    assert 0 < fits["r2_custom_above"]["r2"] - 0.9 < 1e-6 and 0 < 0.9 - fits["r2_custom_below"]["r2"] < 1e-6
    for m, needed in (("rel_just_above", 5.0), ("rel_neg_mean_above", 5.0), ("rel_custom_above", 20.0)):
        assert 0 < abs(fits[m]["slope"]) * 4 - needed < 1e-4, m
    for m, needed in (("rel_just_below", 5.0), ("rel_neg_mean_below", 5.0), ("rel_custom_below", 20.0)):
        assert 0 < needed - abs(fits[m]["slope"]) * 4 < 1e-4, m


def test_r2_exactly_at_the_threshold_counts_however_the_values_round(tmp_path):
    # Both series have r2 = 1/2 exactly; in floats the first gives 0.4999999999999999. The
    # threshold is compared to four ulps, so both are increasing (docs/design.md §6).
    series = {"tenths": [0.0, 0.0, 0.05, 0.0, 0.1], "units": [0.0, 0.0, 1.0, 0.0, 2.0]}
    x = np.arange(5.0)
    for values in series.values():
        fit = scipy.stats.linregress(x, values)
        assert fit.rvalue ** 2 == pytest.approx(0.5, abs=1e-15)
    starts = [START + timedelta(days=i) for i in range(5)]
    write_tree(tmp_path, {EDGE: {m: dict(enumerate(v)) for m, v in series.items()}}, starts)
    with metricsduck.connect(tmp_path) as store:
        rows = {r["metric"]: r for r in fetch(store, "SELECT * FROM trends WHERE run_id = ?", [run_id(4)])}
    assert rows["tenths"]["r2"] < 0.5 <= rows["units"]["r2"]  # the rounding the tolerance absorbs
    assert {m: r["direction"] for m, r in rows.items()} == {"tenths": "increasing", "units": "increasing"}


def test_a_trend_against_the_metrics_good_direction_is_degrading(tmp_path):
    # drift.direction (docs/design.md §5.5): mean_score higher_is_better and brier
    # lower_is_better by default; an unlisted metric is both and gets no assessment.
    falling = [1.0, 0.9, 0.8, 0.7, 0.6]
    starts = [START + timedelta(days=i) for i in range(5)]
    spec = {EDGE: {m: dict(enumerate(falling)) for m in ("mean_score", "brier", "unlisted")}}
    write_tree(tmp_path, spec, starts)
    with metricsduck.connect(tmp_path) as store:
        rows = {r["metric"]: (r["direction"], r["good_direction"], r["assessment"])
                for r in fetch(store, "SELECT * FROM trends WHERE run_id = ?", [run_id(4)])}
    assert rows == {
        "mean_score": ("decreasing", "higher_is_better", "degrading"),
        "brier": ("decreasing", "lower_is_better", "improving"),
        "unlisted": ("decreasing", "both", None),
    }


def test_a_constant_series_is_flat_with_r2_one(edge_tree):
    root, _, _ = edge_tree
    with metricsduck.connect(root) as store:
        rows = fetch(store, "SELECT metric, slope, intercept, r2, theil_sen_slope, mean, direction "
                            "FROM trends WHERE metric IN ('const', 'zero') ORDER BY metric")
    assert rows == [
        {"metric": "const", "slope": 0.0, "intercept": 7.25, "r2": 1.0, "theil_sen_slope": 0.0,
         "mean": 7.25, "direction": "flat"},
        {"metric": "zero", "slope": 0.0, "intercept": 0.0, "r2": 1.0, "theil_sen_slope": 0.0,
         "mean": 0.0, "direction": "flat"},
    ]


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory):
    """30 runs x 150 noisy metrics: enough rows that DuckDB aggregates them in parallel."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("trend_wide")
    for i in range(30):
        metricsduck.write_cohort_metrics(
            root / run_id(i) / "cohort=c1", run_id=run_id(i),
            run_started_at=START + timedelta(days=i, hours=float(rng.uniform(0, 20))),
            written_at=START, stage=STAGE, view=CS, target="t_wide",
            metrics={f"m{k:03d}": float(rng.normal(k, 1 + k)) for k in range(150)},
        )
    return root


def test_the_same_query_gives_the_same_bits(wide_tree):
    # Without ORDER BY inside its float aggregates, this view gives other last bits on
    # most repeats of this query (parallel partial sums combine in any order).
    query = "SELECT * FROM trends ORDER BY baseline_key, metric, run_id"

    def bits(rows) -> list[tuple]:
        return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows]

    with metricsduck.connect(wide_tree) as store:
        first = bits(store.sql(query).fetchall())
        assert len(first) == 150 * (30 - DEFAULTS["min_runs"] + 1)
        assert first == bits(store.sql(query).fetchall())
        for threads in (4, 4, 4, 1):
            store.con.execute(f"SET threads = {threads}")
            assert bits(store.sql(query).fetchall()) == first, threads


# --- the demo tree ---------------------------------------------------------------------------

def test_the_demo_decline_is_decreasing_from_min_runs_on_and_nothing_else_moves(demo_store):
    store, injections, _ = demo_store
    trend = next(i for i in injections if i.kind == "trend")
    min_runs = store.config.get("trend.min_runs")
    ordinals = dict(store.sql(
        "SELECT run_id, ordinal FROM cohort_runs WHERE stage = ? AND view = ? AND target = ? "
        "AND symbol IS NOT DISTINCT FROM ?", [trend.stage, trend.view, trend.target, trend.symbol],
    ).fetchall())
    assert len(ordinals) == 6 >= min_runs
    expected = {(trend.stage, trend.view, trend.target, trend.symbol, item, run, "decreasing")
                for item in trend.items for run, k in ordinals.items() if k >= min_runs}
    assert len(expected) == len(trend.items) * (6 - min_runs + 1)
    moving = fetch(store, "SELECT * FROM trends WHERE direction <> 'flat'")
    assert {(r["stage"], r["view"], r["target"], r["symbol"], r["metric"], r["run_id"], r["direction"])
            for r in moving} == expected
    # No trend row for the declining metric before min_runs runs exist.
    rows = fetch(store, "SELECT * FROM trends WHERE stage = ? AND view = ? AND target = ? AND metric = ?",
                 [trend.stage, trend.view, trend.target, trend.items[0]])
    assert {r["run_id"] for r in rows} == {run for run, k in ordinals.items() if k >= min_runs}
    # And the numbers are numpy's, from the stored values (runs a day apart: per day = per run).
    values = [v for (v,) in store.sql(
        "SELECT f.value FROM facts AS f JOIN cohort_runs AS c USING (baseline_key, run_id) "
        "WHERE f.stage = ? AND f.view = ? AND f.target = ? AND f.metric = ? ORDER BY c.ordinal",
        [trend.stage, trend.view, trend.target, trend.items[0]]).fetchall()]
    latest = max(rows, key=lambda r: ordinals[r["run_id"]])
    y = np.array(values)
    slope, intercept = np.polyfit(np.arange(len(y), dtype=float), y, 1)
    assert latest["n_runs"] == len(y) == 6
    assert close(latest["slope"], slope, 1.0) and close(latest["intercept"], intercept, 1.0)
    assert close(latest["slope_per_day"], slope, 1.0) and close(latest["theil_sen_slope"], theil_sen(y), 1.0)
    assert close(latest["r2"], float(np.corrcoef(np.arange(6), y)[0, 1] ** 2), 1.0)
    assert np.all(np.diff(y) < 0)


# --- store.trends and the CLI ----------------------------------------------------------------

def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def latest_run(store) -> str:
    return store.sql("SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1").fetchall()[0][0]


def test_store_trends_filters(demo_store):
    store, injections, _ = demo_store
    trend = next(i for i in injections if i.kind == "trend")
    latest = latest_run(store)
    rows = fetch_relation(store.trends(target=trend.target, view=trend.view, run="latest"))
    assert rows and {(r["target"], r["view"], r["run_id"]) for r in rows} == {(trend.target, trend.view, latest)}
    everything = fetch(store)
    assert len(rows) == sum(1 for r in everything if (r["target"], r["view"], r["run_id"]) == (
        trend.target, trend.view, latest))
    down = fetch_relation(store.trends(direction="decreasing"))
    assert down == [r for r in sorted(everything, key=lambda r: r["run_started_at"], reverse=True)
                    if r["direction"] == "decreasing"]
    with pytest.raises(InputError, match=r"no such metric .*; did you mean composite_score"):
        store.trends(metric="composite_score' OR '1'='1")
    with pytest.raises(InputError, match="direction"):
        store.trends(direction="sideways")


def test_store_trends_of_a_run_are_the_rows_of_the_view(demo_store):
    """With a run, store.trends computes that run's trends only (trends_of); the rows, in
    order, are those of the whole `trends` view filtered to the run."""
    store, _, _ = demo_store
    order = "ORDER BY run_started_at DESC, run_id, direction = 'flat', baseline_key, metric"
    runs = [r for (r,) in store.sql("SELECT DISTINCT run_id FROM trends ORDER BY run_id").fetchall()]
    assert len(runs) >= 2
    for run in runs:
        expected = store.sql(f"SELECT * FROM trends WHERE run_id = $run {order}", {"run": run}).fetchall()
        assert store.trends(run=run).fetchall() == expected, run
    latest = store.sql(f"SELECT * FROM trends WHERE run_id = '{latest_run(store)}' {order}").fetchall()
    assert store.trends(run="latest").fetchall() == latest
    with pytest.raises(InputError, match="run no_such_run: no such run"):
        store.trends(run="no_such_run")


def fetch_relation(relation) -> list[dict]:
    return [dict(zip(relation.columns, r, strict=True)) for r in relation.fetchall()]


def test_cli_trend_latest_decreasing_json(demo_store):
    store, injections, _ = demo_store
    trend = next(i for i in injections if i.kind == "trend")
    latest = latest_run(store)
    result = invoke("trend", store.root, "--run", "latest", "--direction", "decreasing", "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [(r["view"], r["target"], r["symbol"], r["metric"], r["run_id"], r["direction"]) for r in records] == [
        (trend.view, trend.target, trend.symbol, item, latest, "decreasing") for item in trend.items]
    assert list(records[0]) == TREND_COLUMNS
    (row,) = fetch(store, "SELECT * FROM trends WHERE run_id = ? AND direction = 'decreasing'", [latest])
    for name in NUMBERS + ("n_runs", "first_value", "last_value"):
        assert records[0][name] == row[name], name  # JSON floats round-trip exactly


def test_cli_trend_filters_are_bound_not_pasted(edge_tree):
    root = edge_tree[0]
    control = invoke("trend", root, "--target", "t_edge", "--format", "json")
    assert control.exit_code == 0, control.output
    assert len(json.loads(control.stdout)) == len(EDGE_CASES)
    for option, value in (
        ("--target", "x' OR 1=1 --"),
        ("--metric", "const' OR '1'='1"),
        ("--run", "latest' OR 1=1 --"),
        ("--view", "CROSS_SECTIONAL\"; DROP VIEW trends; --"),
    ):
        result = invoke("trend", root, option, value, "--format", "json")
        assert result.exit_code == 4, (option, result.output)
        assert f"{option[2:]} {value}: no such {option[2:]}" in result.stderr, option
        assert result.stdout == ""
    again = invoke("trend", root, "--target", "t_edge", "--format", "json")
    assert again.stdout == control.stdout  # nothing was dropped or changed


def test_cli_trend_csv_and_table(edge_tree):
    root = edge_tree[0]
    result = invoke("trend", root, "--run", "latest", "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0] == TREND_COLUMNS
    assert len(table) - 1 == len(EDGE_CASES)
    assert {r[TREND_COLUMNS.index("run_id")] for r in table[1:]} == {run_id(4)}
    directions = {r[TREND_COLUMNS.index("metric")]: r[TREND_COLUMNS.index("direction")] for r in table[1:]}
    assert directions == {m: case[1] for m, case in EDGE_CASES.items()}
    result = invoke("trend", root, "--direction", "increasing")
    assert result.exit_code == 0, result.output
    header, _, *lines = result.stdout.splitlines()
    assert header.split()[:7] == ["run_id", "view", "target", "symbol", "metric", "n_runs", "direction"]
    wanted = sorted(m for m, case in EDGE_CASES.items() if case[1] == "increasing")
    assert sorted(line.split()[3] for line in lines) == wanted  # symbol is blank here


def test_cli_trend_rejects_an_unknown_direction(edge_tree):
    result = invoke("trend", edge_tree[0], "--direction", "sideways")
    assert result.exit_code == 2
    assert "sideways" in result.output and "--direction" in result.output
