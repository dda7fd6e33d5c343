"""Scalar drift (docs/design.md §5.1): every row of `drift_scalar` against a plain-Python oracle.

The oracle below reads only what this file wrote (the metric values per run) and the
thresholds of docs/design.md §5.1 / the YAML config written here; it never calls metricsduck to
compute an expectation. Named tests then pin the cases of docs/design.md §5.1 (negative
baselines, zero baselines, z, tier boundaries, bools, text, MISSING/NEW, NON_FINITE,
KIND_CHANGED, NO_BASELINE) so a failure reads like the spec.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import metricsduck
from metricsduck import load_config, write_cohort_metrics

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=timezone.utc)
STAGE, VIEW = "FEATURE_SELECTION", "CROSS_SECTIONAL"
KINDS = ("previous_run", "rolling", "last_good_run")
K = 3  # baselines.rolling_window_k in the config below

# Thresholds of docs/design.md §5.1 (defaults), the packaged critical-metric list, and this file's overrides.
RELATIVE, ABSOLUTE = (0.05, 0.20), (0.01, 0.10)
CRITICAL_RELATIVE, CRITICAL_ABSOLUTE = (0.01, 0.03), (0.001, 0.01)
CRITICAL = {"label_window", "horizon", "lookahead_guard_state", "cv_scheme_id", "fold_count", "purge_gap",
            "leakage_flag", "leakage_events_count", "missingness_rate", "winsorization_clip", "outlier_rate"}
OVERRIDES = {
    "custom_rel": {"relative": (0.5, 1.0)},
    "custom_abs": {"absolute": (1.0, 2.0)},
    "fold_count": {"relative": (0.5, 1.0)},   # an override beats the critical tiers
}
# Good directions (docs/design.md §5.5): r2 from the packaged defaults, the others from this
# file; a WARN/ALERT change the good way is IMPROVED with tier OK.
DIRECTIONS = {"r2": "higher_is_better", "auc": "higher_is_better", "loss": "lower_is_better",
              "neg": "both"}
CONFIG_YAML = """
safety:
  telemetry:
    baselines:
      rolling_window_k: 3
    drift:
      overrides:
        custom_rel: {relative: [0.5, 1.0]}
        custom_abs: {absolute: [1.0, 2.0]}
        fold_count: {relative: [0.5, 1.0]}
      direction:
        loss: lower_is_better
        neg: both
"""

NAN, INF = math.nan, math.inf

# target -> runs in order: (good, metrics). Run i is run_id f"run{i}", started T0 + i days.
TREE = {
    # Signs, zeros, bools, text, missing/new, kind changes and non-finite values.
    "signs": [
        (True, {"r2": -0.2, "auc": 0.80, "zero": 0.0, "from_zero": 0.0, "flag": False, "leakage_flag": False,
                "cv_scheme_id": "kfold5", "model": "lgbm", "dropped": 1.0, "kind_flip": 1.0, "purge_gap": 5.0,
                "goes_nan": 1.0, "none_metric": None, "horizon": 60,
                "loss": 0.5}),
        (False, {"r2": -0.1, "auc": 0.84, "zero": 0.0, "from_zero": 0.5, "flag": True, "leakage_flag": True,
                 "cv_scheme_id": "purged_kfold5", "model": "xgb", "new_metric": 3.0, "kind_flip": "one",
                 "purge_gap": "five", "goes_nan": NAN, "none_metric": None, "horizon": 60,
                 "loss": 0.3}),
        (None, {"r2": -0.15, "auc": 0.83, "zero": 0.0, "from_zero": 0.5, "flag": True, "leakage_flag": True,
                "cv_scheme_id": "purged_kfold5", "model": "xgb", "new_metric": 3.3, "kind_flip": "one",
                "purge_gap": "five", "goes_nan": 2.0, "none_metric": 1.0, "horizon": 61,
                "loss": 0.45}),
        (True, {"r2": 0.1, "auc": 0.70, "zero": -0.5, "from_zero": 0.5, "flag": False, "leakage_flag": True,
                "cv_scheme_id": "purged_kfold5", "model": "xgb", "new_metric": 3.3, "kind_flip": "one",
                "purge_gap": "five", "goes_nan": INF, "none_metric": 1.0, "horizon": 61,
                "loss": 0.46}),
    ],
    # Tier boundaries: |rel| < warn is OK, < alert WARN, else ALERT; baselines of 100 make
    # delta/100 the exact double of the threshold (105 -> 0.05, 120 -> 0.2).
    "bounds": [
        (True, {"m_ok": 100.0, "m_warn_lo": 100.0, "m_warn_hi": 100.0, "m_alert": 100.0, "m_neg_warn": 100.0,
                "m_neg_alert": 100.0, "a_ok": 0.0, "a_warn": 0.0, "a_alert": 0.0,
                "horizon": 100.0, "label_window": 100.0, "winsorization_clip": 100.0,
                "outlier_rate": 0.0, "missingness_rate": 0.0, "leakage_events_count": 0.0,
                "custom_rel": 100.0, "custom_abs": 0.0, "fold_count": 10.0}),
        (None, {"m_ok": 104.99, "m_warn_lo": 105.0, "m_warn_hi": 119.99, "m_alert": 120.0, "m_neg_warn": 95.0,
                "m_neg_alert": 80.0, "a_ok": 0.009, "a_warn": 0.01, "a_alert": -0.1,
                "horizon": 101.0, "label_window": 103.0, "winsorization_clip": 100.99,
                "outlier_rate": 0.001, "missingness_rate": 0.01, "leakage_events_count": 0.0009,
                "custom_rel": 150.0, "custom_abs": 1.5, "fold_count": 12.0}),
    ],
    # Rolling statistics over exactly the k=3 prior runs; a metric present in some runs only.
    "rolling": [
        (True, {"x": 1.0, "const": 2.0, "neg": -1.0, "sparse": 1.0}),
        (True, {"x": 2.0, "const": 2.0, "neg": -2.0}),
        (False, {"x": 4.0, "const": 2.0, "neg": -4.0, "sparse": 3.0}),
        (None, {"x": 3.0, "const": 2.0, "neg": -3.0}),
        (True, {"x": 10.0, "const": 2.0, "neg": -10.0, "sparse": 7.0}),
        (False, {"x": 5.0, "const": 2.5, "neg": -5.0, "sparse": 4.0}),
    ],
}


# --- the oracle ----------------------------------------------------------------------------------

def encode(value):
    """(kind, value, text) as docs/design.md §3.1 stores a metric: bools 1/0, non-finite as text."""
    if isinstance(value, bool):
        return "bool", 1.0 if value else 0.0, None
    if value is None:
        return "number", None, None
    if isinstance(value, str):
        return "text", None, value
    if math.isnan(value):
        return "number", None, "nan"
    if math.isinf(value):
        return "number", None, "inf" if value > 0 else "-inf"
    return "number", float(value), None


def pairs_for(metric: str) -> tuple[tuple, tuple]:
    critical = metric in CRITICAL
    rel = OVERRIDES.get(metric, {}).get("relative", CRITICAL_RELATIVE if critical else RELATIVE)
    ab = OVERRIDES.get(metric, {}).get("absolute", CRITICAL_ABSOLUTE if critical else ABSOLUTE)
    return rel, ab


def tier_of(magnitude: float, pair: tuple) -> str:
    return "OK" if magnitude < pair[0] else "WARN" if magnitude < pair[1] else "ALERT"


def changed_tier(metric: str) -> str:
    return "ALERT" if metric in CRITICAL else "WARN"


def compare(metric: str, kind: str, cur, entries: list) -> dict:
    """One metric of one cohort-run against the baseline entries (oldest first)."""
    row = {"is_critical": metric in CRITICAL, "delta": None, "rel_delta": None, "rel_delta_status": None,
           "z": None, "baseline_value": None, "baseline_std": None, "baseline_text": None}
    if entries:
        finite = [e[1] for e in entries if e[1] is not None]
        row["baseline_value"] = statistics.fmean(finite) if finite else None
        row["baseline_std"] = statistics.stdev(finite) if len(finite) >= 2 else None
        row["baseline_text"] = entries[-1][2]                  # the latest baseline run's text
    row["kind"] = cur[0] if cur else entries[-1][0]
    row["current_value"], row["current_text"] = (cur[1], cur[2]) if cur else (None, None)
    if cur is None:
        return {**row, "status": "MISSING", "tier": "WARN"}
    if not entries:
        return {**row, "status": "NEW", "tier": "OK"}
    if cur[0] != entries[-1][0]:
        return {**row, "status": "KIND_CHANGED", "tier": changed_tier(metric)}
    if cur[0] == "text":
        return {**row, "status": "COMPARED", "tier": "OK" if cur[2] == entries[-1][2] else changed_tier(metric)}
    base = row["baseline_value"]
    if cur[1] is None or base is None:
        same = cur[1] is None and base is None and cur[2] == row["baseline_text"]
        return {**row, "status": "NON_FINITE", "tier": "OK" if same else changed_tier(metric)}
    delta = cur[1] - base
    if base != 0:
        rel, rel_status = delta / abs(base), "defined"
    elif cur[1] == 0:
        rel, rel_status = 0.0, "both_zero"
    else:
        rel, rel_status = None, "undefined_zero_baseline"
    rel_pair, abs_pair = pairs_for(metric)
    tier = tier_of(abs(rel), rel_pair) if rel is not None else tier_of(abs(delta), abs_pair)
    std = row["baseline_std"]
    z = delta / std if kind == "rolling" and std is not None and std > 0 else None
    good = DIRECTIONS.get(metric, "both")
    better = delta > 0 if good == "higher_is_better" else delta < 0 if good == "lower_is_better" else False
    improved = tier != "OK" and better
    return {**row, "status": "IMPROVED" if improved else "COMPARED", "tier": "OK" if improved else tier,
            "delta": delta, "rel_delta": rel, "rel_delta_status": rel_status, "z": z, "good_direction": good}


def expected_rows() -> dict:
    out = {}
    for target, runs in TREE.items():
        key = f"{STAGE}:{VIEW}:{target}"
        for i, (_, metrics) in enumerate(runs):
            good_before = [j for j in range(i) if runs[j][0] is True]
            chosen = {"previous_run": list(range(i - 1, i)) if i else [],
                      "rolling": list(range(max(0, i - K), i)),
                      "last_good_run": good_before[-1:]}
            for kind, base in chosen.items():
                run_id = f"run{i}"
                if not base:
                    for metric, value in metrics.items():
                        kind_, v, t = encode(value)
                        out[(key, run_id, kind, metric)] = {
                            "status": "NO_BASELINE", "tier": None, "kind": kind_, "current_value": v,
                            "current_text": t, "baseline_value": None, "delta": None, "rel_delta": None,
                            "z": None, "baseline_runs": 0, "baseline_run_id": None}
                    continue
                names = set(metrics).union(*(runs[j][1] for j in base))
                for metric in names:
                    cur = encode(metrics[metric]) if metric in metrics else None
                    entries = [encode(runs[j][1][metric]) for j in base if metric in runs[j][1]]
                    row = compare(metric, kind, cur, entries)
                    row["baseline_runs"] = len(base)
                    row["baseline_run_id"] = None if kind == "rolling" else f"run{base[0]}"
                    out[(key, run_id, kind, metric)] = row
    return out


# --- the store -------------------------------------------------------------------------------------

def write_tree(root: Path) -> None:
    for target, runs in TREE.items():
        for i, (good, metrics) in enumerate(runs):
            write_cohort_metrics(
                root / f"run{i}" / "REPRODUCIBILITY" / STAGE / VIEW / target / "cohort=c1",
                run_id=f"run{i}", run_started_at=T0 + timedelta(days=i), written_at=T0 + timedelta(days=i),
                stage=STAGE, view=VIEW, target=target, metrics=metrics, good=good, git_commit="abc", seed=1,
            )


@pytest.fixture(scope="module")
def scalar(tmp_path_factory):
    """drift_scalar rows of the tree above, keyed (baseline_key, run_id, kind, metric)."""
    tmp = tmp_path_factory.mktemp("scalar")
    root = tmp / "RESULTS"
    write_tree(root)
    (tmp / "config.yaml").write_text(CONFIG_YAML)
    store = metricsduck.connect(root, config=load_config(tmp / "config.yaml"))
    rel = store.sql("SELECT * FROM drift_scalar")
    rows = {}
    for values in rel.fetchall():
        row = dict(zip(rel.columns, values, strict=True))
        key = (row["baseline_key"], row["run_id"], row["baseline_kind"], row["metric"])
        assert key not in rows, f"two rows for {key}"
        rows[key] = row
    drift = store.sql("SELECT * FROM drift WHERE item_kind = 'metric'")
    drift_rows = [dict(zip(drift.columns, values, strict=True)) for values in drift.fetchall()]
    yield rows, drift_rows
    store.close()


def row(scalar, target: str, run: int, kind: str, metric: str) -> dict:
    return scalar[0][(f"{STAGE}:{VIEW}:{target}", f"run{run}", kind, metric)]


def approx(value):
    return None if value is None else pytest.approx(value, rel=1e-12, abs=1e-15)


# --- tests ----------------------------------------------------------------------------------------

def test_every_scalar_row_matches_the_plain_python_oracle(scalar):
    rows, _ = scalar
    expected = expected_rows()
    assert set(rows) == set(expected)          # one row per cohort-run x kind x metric
    for key, exp in expected.items():
        got = rows[key]
        for field in ("status", "tier", "kind", "current_text", "baseline_runs", "baseline_run_id"):
            assert got[field] == exp[field], (key, field)
        if "good_direction" in exp:
            assert got["good_direction"] == exp["good_direction"], key
        for field in ("current_value", "delta", "rel_delta", "z"):
            assert got[field] == approx(exp[field]), (key, field)
        if exp["kind"] != "text":
            assert got["baseline_value"] == approx(exp["baseline_value"]), key
        if exp["status"] != "NO_BASELINE":
            if exp["kind"] != "text":  # a text row has no numeric baseline to check
                assert got["baseline_std"] == approx(exp["baseline_std"]), key
            assert got["baseline_text"] == exp["baseline_text"], key
            assert got["rel_delta_status"] == exp["rel_delta_status"], key
            assert got["is_critical"] == exp["is_critical"], key
            assert got["current_view"] == got["baseline_view"] == VIEW
            assert got["sanity_status"] == "OK"
    # Every status and tier the rules know occurs in this tree.
    assert {e["status"] for e in expected.values()} == {
        "COMPARED", "IMPROVED", "NEW", "MISSING", "KIND_CHANGED", "NON_FINITE", "NO_BASELINE"}
    assert {e["tier"] for e in expected.values()} == {None, "OK", "WARN", "ALERT"}


def test_rel_delta_keeps_the_sign_for_negative_baselines(scalar):
    # R² from -0.2 to -0.1 is an improvement: rel = 0.1 / |-0.2| = +0.5, not -0.5, and with
    # r2 higher_is_better it is IMPROVED (an ALERT-sized change the good way), tier OK.
    r = row(scalar, "signs", 1, "previous_run", "r2")
    assert r["delta"] == pytest.approx(0.1) and r["rel_delta"] == pytest.approx(0.5)
    assert (r["rel_delta_status"], r["status"], r["tier"]) == ("defined", "IMPROVED", "OK")
    # the fall back is a degradation: it alerts
    r = row(scalar, "signs", 2, "previous_run", "r2")
    assert (r["status"], r["tier"]) == ("COMPARED", "ALERT")
    # loss (lower_is_better in this file's config): 0.5 -> 0.3 improves, 0.3 -> 0.45 alerts,
    # 0.45 -> 0.46 (+2%) is below WARN either way
    assert [(r["status"], r["tier"]) for r in (row(scalar, "signs", i, "previous_run", "loss") for i in (1, 2, 3))] == [
        ("IMPROVED", "OK"), ("COMPARED", "ALERT"), ("COMPARED", "OK")]
    # And -0.1 -> -0.15 is a fall of half of 0.1: rel -0.5.
    assert row(scalar, "signs", 2, "previous_run", "r2")["rel_delta"] == pytest.approx(-0.5)
    # A negative rolling mean: neg over runs 1..3 is mean -3, current -10: rel (-7)/3.
    assert row(scalar, "rolling", 4, "rolling", "neg")["rel_delta"] == pytest.approx(-7 / 3)


def test_zero_baselines(scalar):
    both = row(scalar, "signs", 1, "previous_run", "zero")
    assert (both["rel_delta"], both["rel_delta_status"], both["tier"]) == (0.0, "both_zero", "OK")
    # 0 -> 0.5: rel undefined, so the absolute tiers decide (|0.5| >= 0.10: ALERT).
    undefined = row(scalar, "signs", 1, "previous_run", "from_zero")
    assert undefined["rel_delta"] is None
    assert (undefined["rel_delta_status"], undefined["delta"], undefined["tier"]) == (
        "undefined_zero_baseline", 0.5, "ALERT")
    # 0 -> -0.5 the other way round.
    down = row(scalar, "signs", 3, "previous_run", "zero")
    assert (down["rel_delta_status"], down["delta"], down["tier"]) == ("undefined_zero_baseline", -0.5, "ALERT")


@pytest.mark.parametrize("metric, tier, critical", [
    ("m_ok", "OK", False), ("m_warn_lo", "WARN", False), ("m_warn_hi", "WARN", False),
    ("m_alert", "ALERT", False), ("m_neg_warn", "WARN", False), ("m_neg_alert", "ALERT", False),
    ("a_ok", "OK", False), ("a_warn", "WARN", False), ("a_alert", "ALERT", False),
    # critical metrics: relative [0.01, 0.03], absolute [0.001, 0.01]
    ("horizon", "WARN", True), ("label_window", "ALERT", True), ("winsorization_clip", "OK", True),
    ("outlier_rate", "WARN", True), ("missingness_rate", "ALERT", True), ("leakage_events_count", "OK", True),
    # overrides: custom_rel [0.5, 1.0] relative (default would ALERT at +50%), custom_abs
    # [1, 2] absolute (default would ALERT at 1.5), fold_count critical but overridden.
    ("custom_rel", "WARN", False), ("custom_abs", "WARN", False), ("fold_count", "OK", True),
])
def test_tier_boundaries_with_default_critical_and_override_thresholds(scalar, metric, tier, critical):
    for kind in KINDS:  # one prior run: all three kinds compare against it
        r = row(scalar, "bounds", 1, kind, metric)
        assert (r["tier"], r["is_critical"], r["status"]) == (tier, critical, "COMPARED"), kind


def test_rolling_uses_mean_and_sample_std_of_exactly_the_k_prior_runs(scalar):
    # run4: x of runs 1, 2, 3 = 2, 4, 3 -> mean 3, sample std 1; current 10: z = 7.
    r = row(scalar, "rolling", 4, "rolling", "x")
    assert (r["baseline_runs"], r["baseline_run_id"], r["baseline_n"]) == (3, None, 3)
    assert r["baseline_value"] == pytest.approx(3.0) and r["baseline_std"] == pytest.approx(1.0)
    assert r["z"] == pytest.approx(7.0) and r["rel_delta"] == pytest.approx(7 / 3)
    # run5: runs 2, 3, 4 (run 1 has left the window).
    r = row(scalar, "rolling", 5, "rolling", "x")
    assert r["baseline_value"] == pytest.approx(17 / 3)
    assert r["baseline_std"] == pytest.approx(statistics.stdev([4.0, 3.0, 10.0]))
    # z needs n >= 2 and std > 0: a constant metric has std 0; run1 pools one run.
    assert row(scalar, "rolling", 5, "rolling", "const")["z"] is None
    assert row(scalar, "rolling", 5, "rolling", "const")["baseline_std"] == 0.0
    assert row(scalar, "rolling", 1, "rolling", "x")["z"] is None
    # sparse is in runs 0, 2, 4, 5: run5's window (runs 2-4) holds two values, 3 and 7.
    r = row(scalar, "rolling", 5, "rolling", "sparse")
    assert (r["baseline_n"], r["baseline_value"]) == (2, 5.0)
    assert r["z"] == pytest.approx(-1 / statistics.stdev([3.0, 7.0]))
    # z is a rolling statistic only.
    assert row(scalar, "rolling", 4, "previous_run", "x")["z"] is None


def test_bools_are_compared_as_one_and_zero(scalar):
    flag = row(scalar, "signs", 1, "previous_run", "flag")
    assert (flag["kind"], flag["current_value"], flag["baseline_value"]) == ("bool", 1.0, 0.0)
    assert (flag["rel_delta_status"], flag["tier"], flag["is_critical"]) == ("undefined_zero_baseline", "ALERT", False)
    back = row(scalar, "signs", 3, "previous_run", "flag")
    assert (back["delta"], back["rel_delta"], back["tier"]) == (-1.0, -1.0, "ALERT")
    assert row(scalar, "signs", 1, "previous_run", "leakage_flag")["is_critical"] is True


def test_text_metrics(scalar):
    model = row(scalar, "signs", 1, "previous_run", "model")
    assert (model["kind"], model["current_text"], model["baseline_text"]) == ("text", "xgb", "lgbm")
    assert (model["status"], model["tier"], model["delta"]) == ("COMPARED", "WARN", None)
    # A critical text metric changing is ALERT; unchanged text is OK.
    assert row(scalar, "signs", 1, "previous_run", "cv_scheme_id")["tier"] == "ALERT"
    assert row(scalar, "signs", 2, "previous_run", "cv_scheme_id")["tier"] == "OK"
    assert row(scalar, "signs", 2, "previous_run", "model")["tier"] == "OK"
    # kind_flip was 1.0 in run0 and 'one' since run1: run2's rolling window (runs 0, 1)
    # still holds the old number, but the text is unchanged since the latest baseline run,
    # so it is OK (a text is compared by its text alone).
    flip = row(scalar, "signs", 2, "rolling", "kind_flip")
    assert (flip["status"], flip["kind"], flip["baseline_text"], flip["tier"]) == ("COMPARED", "text", "one", "OK")


def test_missing_new_kind_changed_and_non_finite(scalar):
    missing = row(scalar, "signs", 1, "previous_run", "dropped")
    assert (missing["status"], missing["tier"], missing["current_value"], missing["baseline_value"]) == (
        "MISSING", "WARN", None, 1.0)
    new = row(scalar, "signs", 1, "previous_run", "new_metric")
    assert (new["status"], new["tier"], new["current_value"], new["baseline_value"]) == ("NEW", "OK", 3.0, None)
    flip = row(scalar, "signs", 1, "previous_run", "kind_flip")
    assert (flip["status"], flip["tier"], flip["kind"]) == ("KIND_CHANGED", "WARN", "text")
    assert row(scalar, "signs", 1, "previous_run", "purge_gap")[("tier")] == "ALERT"   # critical
    # NaN now (current side), NaN before (baseline side), inf now; None on both sides.
    for run, cur_text in ((1, "nan"), (2, None), (3, "inf")):
        r = row(scalar, "signs", run, "previous_run", "goes_nan")
        assert (r["status"], r["tier"], r["delta"], r["current_text"]) == ("NON_FINITE", "WARN", None, cur_text)
    assert row(scalar, "signs", 1, "previous_run", "none_metric")["status"] == "NON_FINITE"
    assert row(scalar, "signs", 1, "previous_run", "none_metric")["tier"] == "OK"     # None both times


def test_first_runs_have_no_baseline_for_every_enabled_kind(scalar):
    rows, _ = scalar
    for target, runs in TREE.items():
        first = {(k, m): r for (key, run, k, m), r in rows.items()
                 if key.endswith(f":{target}") and run == "run0"}
        assert set(first) == {(k, m) for k in KINDS for m in runs[0][1]}
        for r in first.values():
            assert (r["status"], r["tier"], r["baseline_runs"], r["delta"]) == ("NO_BASELINE", None, 0, None)
    # last_good_run stays NO_BASELINE after run0 until a good run exists before.
    assert row(scalar, "signs", 1, "last_good_run", "auc")["baseline_run_id"] == "run0"
    assert row(scalar, "signs", 3, "last_good_run", "auc")["baseline_run_id"] == "run0"


def test_the_drift_view_carries_every_scalar_row(scalar):
    rows, drift_rows = scalar
    assert len(drift_rows) == len(rows)
    for d in drift_rows:
        s = rows[(d["baseline_key"], d["run_id"], d["baseline_kind"], d["item"])]
        for field in ("tier", "status", "delta", "rel_delta", "z", "current_value", "baseline_value"):
            assert d[field] == s[field], field
        assert d["tier_rank"] == {None: None, "OK": 0, "WARN": 1, "ALERT": 2}[d["tier"]]
