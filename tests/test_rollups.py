"""Rollups (docs/design.md §7) proven against oracles written here, and the files of refresh.

Every expected number (counts, mean, sample std, quantiles, min/max, tier counts, ALERT
shares, worst items, population PSI/KS) is recomputed in this file with plain Python,
numpy and scipy from the metrics the test itself wrote (tier counts and worst items from
the rows of the `drift` view, which other test files prove), never with metricsduck code.
One small tree (two stages, CROSS_SECTIONAL and SYMBOL_SPECIFIC views, three runs, numeric,
bool and text metrics, NaN and None values, a target that appears late) is written twice at
two paths and refreshed once per copy; most tests share it, so the file stays fast.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck import load_config, write_cohort_metrics
from metricsduck.cli import main
from oracles import chi2_bins, decide, ks_p_any, ks_statistic, psi_oracle

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
RUNS = ("run_1", "run_2", "run_3")
TR, FS = "TARGET_RANKING", "FEATURE_SELECTION"
CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"
SYMBOLS = ("AAPL", "MSFT", "NVDA")
LAYOUT = {  # stage -> view -> cohorts (target, symbol)
    TR: {
        CS: [(t, None) for t in ("cs_a", "cs_b", "cs_c", "cs_d")],
        SS: [(t, s) for t in ("ss_1", "ss_2", "ss_3") for s in SYMBOLS],
    },
    FS: {CS: [(t, None) for t in ("fs_a", "fs_b", "fs_c")]},
}
LATE = (TR, CS, "cs_d", None)  # first written in run_2: no trend, a 4-vs-3 population
NUMERIC = ("auc", "loss", "n_features")  # kind 'number': population drift compares these
STATS = ("count", "mean", "std", "min", "p10", "median", "p90", "max")
KINDS = ("previous_run", "rolling", "last_good_run")
TIERS = ("OK", "WARN", "ALERT")
PREFIX = "telemetry"
# trend.min_runs 3 (default 5) so that the third run has trends and the first two none
CONFIG_YAML = "safety:\n  telemetry:\n    trend:\n      min_runs: 3\n"
# docs/design.md §5 defaults, used by population drift too
DRIFT = {"psi_bins": 10, "psi_epsilon": 1e-4, "psi_warn": 0.1, "psi_threshold": 0.2,
         "ks_warn": 0.05, "ks_threshold": 0.1, "ks_alpha": 0.02, "psi_alpha": 0.02,
         "min_samples": 20, "ks_exact_max": 10_000}
MEASURED = ("COMPARED", "LOW_N", "INCONCLUSIVE")  # the statuses with numbers


# --- the oracles -----------------------------------------------------------------------------
# PSI / KS from tests/oracles.py (docs/design.md §5.2-§5.4, independent of the SQL); tiers with the defaults.


def metric_stats(values: list[float]) -> dict:
    """count, mean, sample std, min, p10, median, p90, max of the finite values (None when
    undefined: every statistic of no value, the std of one)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"count": 0.0, **{s: None for s in STATS[1:]}}
    q10, q50, q90 = np.quantile(arr, [0.1, 0.5, 0.9])
    return {
        "count": float(arr.size), "mean": float(np.mean(arr)),
        "std": float(np.std(arr, ddof=1)) if arr.size > 1 else None,
        "min": float(arr.min()), "p10": float(q10), "median": float(q50), "p90": float(q90),
        "max": float(arr.max()),
    }


def finite_number(value) -> float | None:
    """What a metric contributes to the statistics: bools 1/0, finite numbers; else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


# --- the tree ----------------------------------------------------------------------------------

def present(run_index: int, stage: str, view: str, target: str, symbol) -> bool:
    return not ((stage, view, target, symbol) == LATE and run_index == 0)


def cohort_facts(run_index: int, stage: str, view: str, target: str, symbol) -> tuple[dict, dict]:
    """The metrics and samples of one cohort-run, a pure function of where and when it is."""
    rng = np.random.default_rng(zlib.crc32(f"{stage}|{view}|{target}|{symbol}|{run_index}".encode()))
    auc = round(0.6 + 0.05 * float(rng.standard_normal()), 6)
    if target == "ss_1" and run_index == 2:
        auc += 0.3                      # a whole target's symbols move: population drift
    if target == "cs_b" and run_index == 2:
        auc *= 1.5                      # a scalar ALERT
    loss: float | None = round(float(rng.uniform(0.2, 0.4)), 6)
    if symbol == "NVDA" or (target == "ss_3" and run_index == 1):
        loss = math.nan                 # NVDA never has a loss; ss_3 has none in run_2
    if (target, symbol, run_index) in (("ss_2", "MSFT", 0), ("cs_c", None, 2)):
        loss = None                     # ss_2 in run_1: a single loss (std undefined)
    metrics = {
        "auc": auc,
        "loss": loss,
        "n_features": int(rng.integers(10, 14)),       # ties
        "passed": bool(rng.random() < 0.6),
        "model": "xgb" if (target == "fs_b" and run_index == 2) else "lgbm",
    }
    shift = 1.0 if (target in ("cs_a", "ss_2") and run_index == 2) else 0.0
    return metrics, {"oof": np.round(rng.normal(shift, 1.0, 300), 4)}


def cohort_folder(root: Path, run_id: str, stage: str, view: str, target: str, symbol) -> Path:
    folder = root / run_id / "REPRODUCIBILITY" / stage / view / target
    if symbol is not None:
        folder = folder / f"symbol={symbol}"
    return folder / "cohort=c0"


def all_cohorts():
    for i, run_id in enumerate(RUNS):
        for stage, views in LAYOUT.items():
            for view, cohorts in views.items():
                for target, symbol in cohorts:
                    if present(i, stage, view, target, symbol):
                        yield i, run_id, stage, view, target, symbol


def write_tree(root: Path) -> list[dict]:
    """Write the tree; return one record per cohort-run (the oracles' facts)."""
    records = []
    for i, run_id, stage, view, target, symbol in all_cohorts():
        metrics, samples = cohort_facts(i, stage, view, target, symbol)
        write_cohort_metrics(
            cohort_folder(root, run_id, stage, view, target, symbol),
            run_id=run_id, run_started_at=T0 + timedelta(days=i),
            written_at=T0 + timedelta(days=i, hours=1), stage=stage, view=view, target=target,
            symbol=symbol, metrics=metrics, samples=samples, git_commit="abc", seed=1, good=True,
        )
        records.append({"run_index": i, "run_id": run_id, "stage": stage, "view": view,
                        "target": target, "symbol": symbol, "metrics": metrics})
    return records


def fetch(store, query: str, params=None) -> list[dict]:
    relation = store.sql(query, params)
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def outputs(root: Path) -> dict[str, Path]:
    """Every file refresh writes (telemetry_* but the pipeline's sidecars), by relative path."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob(f"{PREFIX}_*"))
            if not p.name.startswith((f"{PREFIX}_metrics.", f"{PREFIX}_samples."))}


def sort_key(row: dict) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in row.values())


class Tree:
    def __init__(self, root: Path, records: list[dict], store, summary) -> None:
        self.root, self.records, self.store, self.summary = root, records, store, summary


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The same tree written at two paths, each refreshed once; the first store stays open."""
    base = tmp_path_factory.mktemp("rollups")
    config_path = base / "config.yaml"
    config_path.write_text(CONFIG_YAML)
    config = load_config(config_path)
    built = []
    for name in ("first", "second"):
        root = base / name / "RESULTS"
        records = write_tree(root)
        store = metricsduck.connect(root, config)
        summary = store.refresh()
        built.append(Tree(root, records, store, summary))
    first = built[0]
    # what the idempotence test compares against: bytes and mtime of every output
    first.snapshot = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in outputs(first.root).items()}
    first.config, first.config_path = config, config_path
    first.drift = fetch(first.store, "SELECT run_id, stage, view, target, symbol, baseline_key, "
                                     "baseline_kind, item_kind, item, tier, tier_rank, psi, rel_delta "
                                     "FROM drift")
    first.rollup = fetch(first.store, "SELECT * FROM rollup_view")
    first.stage = fetch(first.store, "SELECT * FROM rollup_stage")
    first.population = fetch(first.store, "SELECT * FROM population_drift")
    yield built
    for tree in built:
        tree.store.close()


@pytest.fixture(scope="module")
def tree(trees) -> Tree:
    return trees[0]


# --- expected values ---------------------------------------------------------------------------

def level_groups(records: list[dict]):
    """(run_id, stage, view, level, target, symbol) -> the cohort records of that group."""
    groups: dict = defaultdict(list)
    for r in records:
        base = (r["run_id"], r["stage"], r["view"])
        groups[base + ("view", None, None)].append(r)
        groups[base + ("target", r["target"], None)].append(r)
        if r["symbol"] is not None:
            groups[base + ("symbol", None, r["symbol"])].append(r)
    return groups


def drift_group_keys(row: dict) -> list[tuple]:
    base = (row["run_id"], row["stage"], row["view"])
    keys = [base + ("view", None, None), base + ("target", row["target"], None)]
    if row["symbol"] is not None:
        keys.append(base + ("symbol", None, row["symbol"]))
    return keys


def expected_rollup(tree: Tree) -> dict:
    """(run, stage, view, level, target, symbol, measure, metric, baseline_kind) -> value for
    the counts, metric statistics and tier measures."""
    out: dict = {}
    for key, cohorts in level_groups(tree.records).items():
        out[key + ("cohorts", None, None)] = float(len(cohorts))
        out[key + ("targets", None, None)] = float(len({c["target"] for c in cohorts}))
        out[key + ("symbols", None, None)] = float(len({c["symbol"] for c in cohorts} - {None}))
        names = {m for c in cohorts for m, v in c["metrics"].items() if not isinstance(v, str)}
        for metric in names:
            values = [finite_number(c["metrics"][metric]) for c in cohorts if metric in c["metrics"]]
            for stat, value in metric_stats([v for v in values if v is not None]).items():
                out[key + (stat, metric, None)] = value
    tiers: dict = defaultdict(Counter)
    for row in tree.drift:
        for key in drift_group_keys(row):
            tiers[key + (row["baseline_kind"],)][row["tier"]] += 1
    for (*key, kind), counts in tiers.items():
        for tier in TIERS:
            out[tuple(key) + (f"tier_{tier}", None, kind)] = float(counts[tier])
        tiered = sum(counts[t] for t in TIERS)
        out[tuple(key) + ("alert_share", None, kind)] = counts["ALERT"] / tiered if tiered else None
    return out


def expected_worst(tree: Tree) -> dict:
    """(run, stage, view) -> the (item, baseline_kind, tier, target, symbol) of its worst
    drift rows, worst first, at most ten: higher tier, then larger PSI (or |rel_delta|)."""
    by_view: dict = defaultdict(list)
    for row in tree.drift:
        if row["tier_rank"] is not None and row["tier_rank"] >= 1:
            by_view[(row["run_id"], row["stage"], row["view"])].append(row)
    out = {}
    for key, rows in by_view.items():
        def order(r):
            severity = r["psi"] if r["psi"] is not None else (
                abs(r["rel_delta"]) if r["rel_delta"] is not None else None)
            return (-r["tier_rank"], severity is None, -(severity or 0.0),
                    r["baseline_key"], r["baseline_kind"], r["item_kind"], r["item"])
        rows.sort(key=order)
        out[key] = [(r["item"], r["baseline_kind"], r["tier"], r["target"], r["symbol"]) for r in rows[:10]]
    return out


def expected_population(tree: Tree) -> dict:
    """(run, stage, view, target or None, metric) -> status, n, m and PSI/KS of the metric's
    finite values across symbols (per target) or across targets, vs the previous run."""
    values: dict = defaultdict(list)   # (run_index, stage, view, group) -> records
    for r in tree.records:
        group = r["target"] if r["symbol"] is not None else None
        values[(r["run_index"], r["stage"], r["view"], group)].append(r)

    def finite(records, metric):
        vals = [finite_number(r["metrics"][metric]) for r in records if metric in r["metrics"]]
        return np.array([v for v in vals if v is not None], dtype=float)

    out = {}
    for (i, stage, view, group), records in values.items():
        for metric in NUMERIC:
            cur = finite(records, metric)
            row = {"n": cur.size, "baseline_run_id": RUNS[i - 1] if i else None}
            if i == 0:
                row.update(status="NO_BASELINE", m=0)
            else:
                base = finite(values.get((i - 1, stage, view, group), []), metric)
                row["m"] = base.size
                if cur.size and base.size:
                    psi = psi_oracle(cur, base, DRIFT["psi_bins"], DRIFT["psi_epsilon"])
                    d = ks_statistic(cur, base)
                    p, _ = ks_p_any(d, cur.size, base.size, DRIFT["ks_exact_max"])
                    _, chi2_p = chi2_bins(psi["cur_counts"], psi["base_counts"])
                    decision = decide(psi["psi"], chi2_p, d, p, cur.size, base.size, DRIFT)
                    row.update(status=decision["status"], psi=psi["psi"], psi_bins=psi["bins"], ks_d=d,
                               ks_p=p, tier=decision["tier"])
                else:
                    row["status"] = "NO_DATA"
            out[(RUNS[i], stage, view, group, metric)] = row
    return out


def rollup_key(row: dict) -> tuple:
    return (row["run_id"], row["stage"], row["view"], row["level"], row["target"], row["symbol"],
            row["measure"], row["metric"], row["baseline_kind"])


# --- rollup_view oracles -------------------------------------------------------------------------

def test_counts_statistics_and_tiers_match_the_oracle_at_every_level(tree):
    expected = expected_rollup(tree)
    actual: dict = {}
    for row in tree.rollup:
        if row["measure"] in ("worst_item", "population_psi", "population_ks_d"):
            continue
        key = rollup_key(row)
        assert key not in actual, f"two rows for {key}"
        actual[key] = row["value"]
    # Nothing unexpected; everything defined is there (an undefined statistic, like the std
    # of one value, may be a NULL row or no row).
    assert set(actual) <= set(expected), sorted(set(actual) - set(expected), key=str)[:5]
    missing = [k for k, v in expected.items() if v is not None and k not in actual]
    assert missing == []
    for key, value in expected.items():
        got = actual.get(key)
        if value is None:
            assert got is None, key
        elif key[6] in ("mean", "std", "p10", "median", "p90", "alert_share"):
            assert got == pytest.approx(value, rel=1e-12, abs=1e-15), key
        else:
            assert got == value, key                 # counts, min and max are exact
    # The tree exercises what the measures must handle (guards against a vacuous oracle).
    stats = {k[6]: [] for k in expected}
    for k, v in expected.items():
        stats[k[6]].append(v)
    assert 0.0 in stats["count"] and 1.0 in stats["count"] and None in stats["std"]
    assert {k[3] for k in actual} == {"view", "target", "symbol"}
    assert {k[7] for k in actual if k[7]} == {"auc", "loss", "n_features", "passed"}  # no text
    assert max(v for k, v in expected.items() if k[6] == "tier_ALERT") > 0
    assert max(v for k, v in expected.items() if k[6] == "tier_WARN") > 0
    assert None in [v for k, v in expected.items() if k[6] == "alert_share"]  # first run


def test_symbol_level_exists_only_for_symbol_views_and_counts_across_targets(tree):
    levels = {(r["view"], r["level"]) for r in tree.rollup}
    assert levels == {(CS, "view"), (CS, "target"), (SS, "view"), (SS, "target"), (SS, "symbol")}
    count = {rollup_key(r): r["value"] for r in tree.rollup if r["measure"] in ("cohorts", "targets", "symbols")}
    for run_id in RUNS:
        for symbol in SYMBOLS:
            key = (run_id, TR, SS, "symbol", None, symbol)
            assert [count[key + (m, None, None)] for m in ("cohorts", "targets", "symbols")] == [3, 3, 1]
        key = (run_id, TR, SS, "target", "ss_2", None)
        assert [count[key + (m, None, None)] for m in ("cohorts", "targets", "symbols")] == [3, 1, 3]
        key = (run_id, TR, CS, "view", None, None)
        expected = 3 if run_id == "run_1" else 4
        assert [count[key + (m, None, None)] for m in ("cohorts", "targets", "symbols")] == [expected, expected, 0]


def test_worst_items_are_the_ten_worst_drift_rows_worst_first(tree):
    expected = expected_worst(tree)
    actual: dict = defaultdict(list)
    for row in tree.rollup:
        if row["measure"] == "worst_item":
            assert row["level"] == "view" and row["target"] is None and row["symbol"] is None
            actual[(row["run_id"], row["stage"], row["view"])].append(row)
    assert set(actual) == set(expected)
    bad = Counter((r["run_id"], r["stage"], r["view"]) for r in tree.drift
                  if r["tier_rank"] is not None and r["tier_rank"] >= 1)
    assert bad and min(bad.values()) > 10          # the cap of ten is exercised in every view
    for key, rows in actual.items():
        rows.sort(key=lambda r: r["value"])
        assert [r["value"] for r in rows] == [float(p) for p in range(1, len(rows) + 1)], key
        got = [(r["metric"], r["baseline_kind"]) for r in rows]
        assert got == [(item, kind) for item, kind, *_ in expected[key]], key
        for row, (item, kind, tier, target, symbol) in zip(rows, expected[key], strict=True):
            where = target + (f"/{symbol}" if symbol else "")
            assert row["detail"] == f"{tier} {item} ({kind}) at {where}", row
    # ALERT comes before WARN wherever a view has both
    first = expected[("run_3", TR, CS)][0]
    assert first[2] == "ALERT"


# --- population drift ------------------------------------------------------------------------------

def test_population_drift_matches_the_numpy_scipy_oracle(tree):
    expected = expected_population(tree)
    actual = {}
    for row in tree.population:
        key = (row["run_id"], row["stage"], row["view"], row["target"], row["metric"])
        assert key not in actual, f"two rows for {key}"
        actual[key] = row
    assert set(actual) == set(expected)
    for key, exp in expected.items():
        row = actual[key]
        assert (row["status"], row["n"], row["m"]) == (exp["status"], exp["n"], exp["m"]), key
        assert row["baseline_run_id"] == exp["baseline_run_id"], key
        if exp["status"] not in MEASURED:
            assert row["psi"] is None and row["ks_d"] is None and row["tier"] is None, key
            continue
        assert row["psi"] == pytest.approx(exp["psi"], rel=1e-12, abs=1e-15), key
        assert row["psi_bins"] == exp["psi_bins"], key
        assert row["ks_d"] == pytest.approx(exp["ks_d"], abs=1e-12), key
        assert abs(row["ks_p"] - exp["ks_p"]) <= 1e-10, key
        assert row["tier"] == exp["tier"], key
    statuses = Counter(e["status"] for e in expected.values())
    # a handful of symbols or targets per group: every comparison is LOW_N (tier OK, numbers shown)
    assert set(statuses) == {"NO_BASELINE", "LOW_N", "NO_DATA"}
    # NO_BASELINE exactly in the first run; the late target joins a 4-vs-3 comparison
    assert {k[0] for k, e in expected.items() if e["status"] == "NO_BASELINE"} == {"run_1"}
    late = expected[("run_2", TR, CS, None, "auc")]
    assert (late["n"], late["m"]) == (4, 3)
    # groups: across symbols per target (SYMBOL_SPECIFIC), across targets (CROSS_SECTIONAL)
    assert {k[3] for k in expected if k[2] == SS} == {"ss_1", "ss_2", "ss_3"}
    assert {k[3] for k in expected if k[2] == CS} == {None}
    shifted = expected[("run_3", TR, SS, "ss_1", "auc")]  # the injected shift: shown, too few to tier
    assert (shifted["status"], shifted["tier"], shifted["ks_d"]) == ("LOW_N", "OK", 1.0)


def test_population_drift_is_in_the_view_rollup(tree):
    expected = {k: e for k, e in expected_population(tree).items() if e["status"] in MEASURED}
    actual = {}
    for row in tree.rollup:
        if row["measure"].startswith("population_"):
            level = "view" if row["view"] == CS else "target"
            assert row["level"] == level and row["symbol"] is None, row
            actual[(row["run_id"], row["stage"], row["view"], row["target"], row["metric"],
                    row["measure"])] = (row["value"], row["detail"])
    assert set(actual) == {k + (m,) for k in expected for m in ("population_psi", "population_ks_d")}
    for key, exp in expected.items():
        psi, tier = actual[key + ("population_psi",)]
        assert psi == pytest.approx(exp["psi"], rel=1e-12, abs=1e-15) and tier == exp["tier"]
        ks_d, tier = actual[key + ("population_ks_d",)]
        assert ks_d == pytest.approx(exp["ks_d"], abs=1e-12) and tier == exp["tier"]


# --- the stage rollup never mixes views ----------------------------------------------------------

def test_rollup_stage_is_one_row_per_view_with_that_views_counts(tree):
    cohorts = Counter((r["run_id"], r["stage"], r["view"]) for r in tree.records)
    tiers: dict = defaultdict(Counter)
    for row in tree.drift:
        tiers[(row["run_id"], row["stage"], row["view"])][row["tier"]] += 1
    keys = [(r["run_id"], r["stage"], r["view"]) for r in tree.stage]
    assert sorted(keys) == sorted(cohorts)            # one row per run x stage x view
    view_counts = {rollup_key(r): r["value"] for r in tree.rollup if r["level"] == "view"}
    for row in tree.stage:
        key = (row["run_id"], row["stage"], row["view"])
        assert row["view"] is not None
        assert row["cohorts"] == cohorts[key] == view_counts[key + ("view", None, None, "cohorts", None, None)]
        counted = tiers[key]
        assert (row["tier_ok"], row["tier_warn"], row["tier_alert"]) == (
            counted["OK"], counted["WARN"], counted["ALERT"]), key
        # ... which are the view rollup's tier counts summed over baseline kinds
        for tier in TIERS:
            assert row[f"tier_{tier.lower()}"] == sum(
                view_counts.get(key + ("view", None, None, f"tier_{tier}", None, kind), 0) for kind in KINDS)
        ranked = [TIERS.index(t) for t in counted if t is not None]
        assert row["worst_tier"] == (TIERS[max(ranked)] if ranked else None), key
        assert row["view_dir"] == str(tree.root / key[0] / "REPRODUCIBILITY" / key[1] / key[2])
    # the stage level holds no statistic: every rollup_view row belongs to exactly one view
    assert all(r["view"] is not None and r["level"] != "stage" for r in tree.rollup)
    assert not {c for c in tree.stage[0] if c.startswith(("mean", "std", "psi", "population", "alert"))}


# --- files -------------------------------------------------------------------------------------------

def json_as_rows(document: dict) -> list[tuple]:
    """Flatten a view rollup JSON back into (level, target, symbol, measure, metric, kind,
    value, detail) tuples."""
    out = []

    def node(level, target, symbol, body):
        for measure, value in body.get("counts", {}).items():
            out.append((level, target, symbol, measure, None, None, value, None))
        for metric, stats in body.get("metrics", {}).items():
            out.extend((level, target, symbol, m, metric, None, v, None) for m, v in stats.items())
        for kind, stats in body.get("tiers", {}).items():
            out.extend((level, target, symbol, m, None, kind, v, None) for m, v in stats.items())
        for metric, entry in body.get("population_drift", {}).items():
            for name in ("psi", "ks_d"):
                out.append((level, target, symbol, f"population_{name}", metric, None, entry[name], entry["tier"]))
        places = [item["place"] for item in body.get("worst_items", [])]
        assert places == sorted(places)
        for item in body.get("worst_items", []):
            out.append((level, target, symbol, "worst_item", item["item"], item["baseline_kind"],
                        float(item["place"]), item["detail"]))

    node("view", None, None, document["view"])
    for target, body in document["targets"].items():
        node("target", target, None, body)
    for symbol, body in document["symbols"].items():
        node("symbol", None, symbol, body)
    return out


def none_last(t: tuple) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in t)


def test_view_rollup_files_hold_the_rollup_view_rows(tree):
    views = sorted({(r["run_id"], r["stage"], r["view"]) for r in tree.records})
    assert len(views) == 9
    for run_id, stage, view in views:
        folder = tree.root / run_id / "REPRODUCIBILITY" / stage / view
        table = pq.read_table(folder / f"{PREFIX}_rollup.parquet")
        assert table.schema.metadata[b"metricsduck.schema"] == b"metricsduck/rollup_view/v1"
        expected = [r for r in tree.rollup if (r["run_id"], r["stage"], r["view"]) == (run_id, stage, view)]
        got = table.to_pylist()
        assert sorted(got, key=sort_key) == sorted(expected, key=sort_key)
        document = json.loads((folder / f"{PREFIX}_rollup.json").read_text("utf-8"))
        assert document["schema"] == "metricsduck/rollup_view/v1"
        assert (document["identity"]["run_id"], document["identity"]["stage"],
                document["identity"]["view"]) == (run_id, stage, view)
        assert document["identity"]["run_started_at"] == (
            T0 + timedelta(days=RUNS.index(run_id))).isoformat().replace("+00:00", "Z")
        targets = {r["target"] for r in tree.records if (r["run_id"], r["stage"], r["view"]) == (run_id, stage, view)}
        assert set(document["targets"]) == targets
        assert set(document["symbols"]) == (set(SYMBOLS) if view == SS else set())
        parquet_rows = [(r["level"], r["target"], r["symbol"], r["measure"], r["metric"],
                         r["baseline_kind"], r["value"], r["detail"]) for r in got]
        assert sorted(json_as_rows(document), key=none_last) == sorted(parquet_rows, key=none_last)


def test_stage_rollup_files_reference_each_view_rollup_by_relative_path(tree):
    for run_id in RUNS:
        for stage, views in LAYOUT.items():
            folder = tree.root / run_id / "REPRODUCIBILITY" / stage
            table = pq.read_table(folder / f"{PREFIX}_rollup.parquet")
            assert table.schema.metadata[b"metricsduck.schema"] == b"metricsduck/rollup_stage/v1"
            rows = table.to_pylist()
            assert [r["view"] for r in rows] == sorted(views)
            expected = sorted((r for r in tree.stage if (r["run_id"], r["stage"]) == (run_id, stage)),
                              key=lambda r: r["view"])
            for row, exp in zip(rows, expected, strict=True):
                assert "view_dir" not in row          # no absolute path in a stored file
                assert row["rollup"] == f"{row['view']}/{PREFIX}_rollup.parquet"
                assert (folder / row["rollup"]).is_file()
                assert {k: v for k, v in row.items() if k != "rollup"} == {
                    k: v for k, v in exp.items() if k != "view_dir"}
            document = json.loads((folder / f"{PREFIX}_rollup.json").read_text("utf-8"))
            assert document["schema"] == "metricsduck/rollup_stage/v1"
            assert set(document) == {"schema", "identity", "views"}   # no stage-wide statistic
            assert (document["identity"]["run_id"], document["identity"]["stage"]) == (run_id, stage)
            assert set(document["views"]) == set(views)
            for exp in expected:
                entry = document["views"][exp["view"]]
                assert entry["rollup"] == f"{exp['view']}/{PREFIX}_rollup.json"
                assert (folder / entry["rollup"]).is_file()
                assert entry["cohorts"] == exp["cohorts"]
                assert entry["tier_counts"] == {"OK": exp["tier_ok"], "WARN": exp["tier_warn"],
                                                "ALERT": exp["tier_alert"]}
                assert entry["worst_tier"] == exp["worst_tier"]


def test_trend_files_only_where_a_trend_exists(tree):
    runs_of = defaultdict(set)
    for r in tree.records:
        runs_of[(r["stage"], r["view"], r["target"], r["symbol"])].add(r["run_id"])
    # trend.min_runs is 3: only the third cohort-run of a cohort has a trend
    expected = {cohort_folder(tree.root, "run_3", *key) for key, runs in runs_of.items() if len(runs) == 3}
    assert len(expected) == 15 and cohort_folder(tree.root, "run_3", *LATE) not in expected
    for ext in ("parquet", "json"):
        assert {p.parent for p in tree.root.rglob(f"{PREFIX}_trend.{ext}")} == expected
    folder = cohort_folder(tree.root, "run_3", TR, SS, "ss_1", "AAPL")
    document = json.loads((folder / f"{PREFIX}_trend.json").read_text("utf-8"))
    assert document["schema"] == "metricsduck/trend/v2" and "auc" in document["metrics"]
    table = pq.read_table(folder / f"{PREFIX}_trend.parquet")
    assert table.schema.metadata[b"metricsduck.schema"] == b"metricsduck/trend/v2"
    assert table.to_pylist() == fetch(tree.store, "SELECT * FROM trends WHERE baseline_key = ? "
                                      "AND run_id = 'run_3' ORDER BY metric", [f"{TR}:{SS}:ss_1:AAPL"])


def test_first_refresh_wrote_every_output_once(tree):
    cohort_runs = len(tree.records)                        # 47: the late target skips run_1
    views = len({(r["run_id"], r["stage"], r["view"]) for r in tree.records})
    stages = len({(r["run_id"], r["stage"]) for r in tree.records})
    expected = 2 * (cohort_runs + 15 + views + stages)     # drift, trend, view and stage rollups
    assert (cohort_runs, views, stages) == (47, 9, 6)
    assert tree.summary.failed == [] and tree.summary.runs == list(RUNS)
    assert tree.summary.written == expected == len(outputs(tree.root))


def test_the_same_tree_at_two_paths_gives_byte_identical_outputs(trees):
    first, second = trees
    assert first.root != second.root
    a = {str(p.relative_to(first.root)): p.read_bytes() for p in first.root.rglob(f"{PREFIX}_*")}
    b = {str(p.relative_to(second.root)): p.read_bytes() for p in second.root.rglob(f"{PREFIX}_*")}
    assert set(a) == set(b)
    assert {rel for rel in a if "_rollup." in rel or "_trend." in rel or "_drift." in rel} == set(outputs(first.root))
    different = [rel for rel in a if a[rel] != b[rel]]
    assert different == []


# --- idempotence -------------------------------------------------------------------------------------

def test_a_second_refresh_writes_nothing_and_touches_nothing(tree):
    again = tree.store.refresh()
    assert again.runs == [] and again.written == 0
    with metricsduck.connect(tree.root, tree.config) as store:     # a new process would see this
        assert store.refresh().written == 0
        forced = store.refresh(all_runs=True)                      # even recomputing everything
    assert forced.written == 0 and forced.unchanged == len(tree.snapshot) and forced.failed == []
    now = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in outputs(tree.root).items()}
    assert now == tree.snapshot


# --- the lock ------------------------------------------------------------------------------------------

# Holds the refresh lock until it reads a line on stdin (or its stdin closes), then says
# "released" once the lock is let go.
HOLD = """
import sys
from pathlib import Path
from metricsduck.refresh import refresh_lock
with refresh_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def hold_lock(root: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def in_thread(call) -> tuple[threading.Thread, dict]:
    """Run `call()` in a thread; its result (or exception) lands in the dict when it returns."""
    done: dict = {}

    def run() -> None:
        try:
            done["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            done["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def finished(thread: threading.Thread, done: dict):
    thread.join(300)  # a failure guard only: nothing here waits on the clock
    assert not thread.is_alive(), "the refresh did not return"
    if "error" in done:
        raise done["error"]
    return done["result"]


def test_a_refresh_waits_for_the_lock_and_runs_after_its_release(trees):
    second = trees[1]
    lock = second.root / ".metricsduck" / "refresh.lock"
    holder = hold_lock(second.root)
    messages: list[str] = []
    waiting = threading.Event()

    def on_wait(message: str) -> None:
        messages.append(message)
        waiting.set()

    try:
        thread, done = in_thread(lambda: second.store.refresh(all_runs=True, on_wait=on_wait))
        assert waiting.wait(300)                               # it found the lock held, and said so
        # it really waits for the holder: nothing is done, and the lock still names the holder
        assert done == {} and lock.read_text() == str(holder.pid)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        summary = finished(thread, done)                       # ...and runs after its release
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert len(messages) == 1 and str(lock) in messages[0] and "waiting" in messages[0]
    assert str(holder.pid) in messages[0]                  # says who holds it
    assert summary.failed == [] and summary.runs == list(RUNS) and summary.written == 0


def test_a_lock_left_by_a_killed_process_does_not_block(trees):
    second = trees[1]
    holder = hold_lock(second.root)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    lock = second.root / ".metricsduck" / "refresh.lock"
    assert lock.read_text().strip() == str(holder.pid)     # the dead holder's file is still there
    messages: list[str] = []
    summary = finished(*in_thread(lambda: second.store.refresh(all_runs=True, on_wait=messages.append)))
    assert messages == []                                  # it never waited: on_wait is its only way to
    assert summary.failed == [] and summary.written == 0


def test_a_missing_output_makes_its_run_stale_and_is_written_again(trees):
    second = trees[1]
    victims = {
        "run_2": second.root / "run_2" / "REPRODUCIBILITY" / TR / f"{PREFIX}_rollup.parquet",
        "run_3": cohort_folder(second.root, "run_3", FS, CS, "fs_b", None) / f"{PREFIX}_drift.json",
    }
    before = {run: path.read_bytes() for run, path in victims.items()}
    for path in victims.values():
        path.unlink()
    summary = second.store.refresh()
    assert summary.runs == sorted(victims) and summary.written == 2 and summary.failed == []
    assert {run: path.read_bytes() for run, path in victims.items()} == before
    assert second.store.refresh().runs == []


# --- the tracker -----------------------------------------------------------------------------------------

def test_tracker_generates_the_rollups_of_one_stage_of_one_run(tmp_path):
    root = tmp_path / "RESULTS"
    trackers = {}
    for i, run_id in enumerate(("run_x1", "run_x2")):
        tracker = metricsduck.ReproducibilityTracker(root / run_id, run_id=run_id,
                                                     run_started_at=T0 + timedelta(days=i))
        trackers[run_id] = tracker
        for stage in (TR, FS):
            for target in ("t1", "t2"):
                tracker.save_cohort(stage, CS, target, {"score": 0.5 + i / 10 + len(target) / 100, "ok": True},
                                    cohort_metadata={"cohort_id": "c"}, samples={"p": [i, 1.0, 2.0, 3.0]})
                for symbol in ("AAPL", "MSFT"):
                    tracker.save_cohort(stage, SS, target, {"score": 0.4 + i / 10 + len(symbol) / 100},
                                        symbol=symbol, cohort_metadata={"cohort_id": "c"})
    before = {p for p in root.rglob("*") if p.is_file()}
    summary = trackers["run_x2"].generate_telemetry_rollups(stage="TARGET_RANKING", run_id="run_x2")
    new = {p for p in root.rglob("*") if p.is_file()} - before
    stage_dir = root / "run_x2" / "REPRODUCIBILITY" / TR
    expected = {folder / f"{PREFIX}_rollup.{ext}" for folder in (stage_dir, stage_dir / CS, stage_dir / SS)
                for ext in ("parquet", "json")}
    assert {p for p in new if ".metricsduck" not in p.parts} == expected   # no drift, no trend, no run_x1
    assert summary.runs == ["run_x2"] and summary.written == 6 and summary.failed == []
    rows = pq.read_table(stage_dir / SS / f"{PREFIX}_rollup.parquet").to_pylist()
    assert {(r["run_id"], r["stage"], r["view"]) for r in rows} == {("run_x2", TR, SS)}
    # population drift compared with run_x1, which lives beside run_x2: the parent was read
    population = [r for r in rows if r["measure"] == "population_psi"]
    assert {(r["target"], r["metric"]) for r in population} == {("t1", "score"), ("t2", "score")}
    values = {"run_x1": [0.4 + len(s) / 100 for s in ("AAPL", "MSFT")],
              "run_x2": [0.5 + len(s) / 100 for s in ("AAPL", "MSFT")]}
    oracle = psi_oracle(np.array(values["run_x2"]), np.array(values["run_x1"]), 10, 1e-4)["psi"]
    assert all(r["value"] == pytest.approx(oracle, rel=1e-12) for r in population)
    cs = {r["measure"]: r["value"] for r in pq.read_table(stage_dir / CS / f"{PREFIX}_rollup.parquet").to_pylist()
          if r["level"] == "view" and r["metric"] is None and r["baseline_kind"] is None}
    assert (cs["cohorts"], cs["targets"], cs["symbols"]) == (2, 2, 0)
    stage_doc = json.loads((stage_dir / f"{PREFIX}_rollup.json").read_text("utf-8"))
    assert set(stage_doc["views"]) == {CS, SS}
    # the same bytes as a full refresh of the tree writes
    written = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in expected}
    with metricsduck.connect(root) as store:
        store.refresh(all_runs=True)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in expected} == written
    # the default run is the tracker's own; a stage that could escape the tree is refused
    trackers["run_x1"].generate_telemetry_rollups(FS)
    assert (root / "run_x1" / "REPRODUCIBILITY" / FS / f"{PREFIX}_rollup.json").is_file()
    with pytest.raises(metricsduck.InputError):
        trackers["run_x1"].generate_telemetry_rollups("../x")


def test_the_tracker_rollups_count_the_alerts_the_drift_view_holds(tmp_path):
    """A pipeline gates on `generate_telemetry_rollups().alerts`: they are the run's ALERT rows
    of that stage, by item kind, as `drift` has them (not zero because no cohort file was written)."""
    root = tmp_path / "RESULTS"
    rng = np.random.default_rng(5)
    trackers = []
    for i in range(3):
        tracker = metricsduck.ReproducibilityTracker(root / f"run_{i}", run_id=f"run_{i}",
                                                     run_started_at=T0 + timedelta(days=i))
        for stage in (TR, FS):
            for target in ("t1", "t2", "t3"):
                shift = 3.0 if i == 2 and target != "t3" else 0.0  # the last run moves two targets
                tracker.save_cohort(stage, CS, target, {"score": 0.5 + shift / 10, "loss": 1.0 + rng.normal(0, 1e-3)},
                                    cohort_metadata={"cohort_id": "c"},
                                    samples={"p": rng.normal(shift, 1.0, 200)})
        trackers.append(tracker)
    summary = trackers[2].generate_telemetry_rollups(stage=TR)
    with metricsduck.connect(root) as store:
        expected = dict(store.sql("SELECT item_kind, count(*) FROM drift WHERE run_id = 'run_2' AND stage = ? "
                                  "AND tier = 'ALERT' GROUP BY item_kind", [TR]).fetchall())
    assert expected.get("metric", 0) > 0 and expected.get("distribution", 0) > 0
    assert summary.alerts == {"metric": expected["metric"], "distribution": expected["distribution"]}


# --- the rollup command ------------------------------------------------------------------------------------

def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_rollup_command_levels_filters_and_exit_codes(tree):
    root, config = str(tree.root), str(tree.config_path)
    result = run_cli("rollup", root, "--config", config, "--level", "stage", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == len(tree.stage) == 9
    by_key = {(r["run_id"], r["stage"], r["view"]): r for r in tree.stage}
    for row in rows:
        exp = by_key[(row["run_id"], row["stage"], row["view"])]
        assert (row["cohorts"], row["tier_alert"], row["worst_tier"]) == (
            exp["cohorts"], exp["tier_alert"], exp["worst_tier"])
    # newest run first
    assert [r["run_id"] for r in rows] == sorted((r["run_id"] for r in rows), reverse=True)

    result = run_cli("rollup", root, "--config", config, "--level", "target", "--view", SS, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    expected = [r for r in tree.rollup if r["level"] == "target" and r["view"] == SS]
    assert len(rows) == len(expected) > 0
    assert {(r["level"], r["view"], r["stage"]) for r in rows} == {("target", SS, TR)}
    assert {r["target"] for r in rows} == {"ss_1", "ss_2", "ss_3"}

    result = run_cli("rollup", root, "--config", config, "--run", "latest", "--stage", FS, "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["run_id", "run_started_at", "stage", "view"]
    assert len(lines) - 1 == sum(1 for r in tree.rollup
                                 if r["run_id"] == "run_3" and r["stage"] == FS and r["level"] == "view")
    assert all(line.startswith("run_3,") for line in lines[1:])

    # --measure: the worst items of one view, in place order
    result = run_cli("rollup", root, "--config", config, "--run", "latest", "--stage", TR, "--view", CS,
                     "--measure", "worst_item", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["metric"], r["baseline_kind"]) for r in rows] == [
        (item, kind) for item, kind, *_ in expected_worst(tree)[("run_3", TR, CS)]]
    assert [r["value"] for r in rows] == list(range(1, len(rows) + 1))

    # filters are bound parameters: a hostile value is refused by name and breaks nothing
    result = run_cli("rollup", root, "--config", config, "--view", f"{SS}' OR '1'='1", "--format", "json")
    assert result.exit_code == 4 and f"did you mean {SS}?" in result.stderr, result.output
    result = run_cli("rollup", root, "--config", config, "--level", "stage", "--stage",
                     "x'); DROP VIEW rollup_stage; --")
    assert result.exit_code == 4 and "no such stage" in result.stderr, result.output
    result = run_cli("rollup", root, "--config", config, "--level", "stage", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout), result.output
    assert len(fetch(tree.store, "SELECT * FROM rollup_stage")) == 9   # nothing was dropped
    # a measure does not apply to the stage container: bad input, exit 4
    result = run_cli("rollup", root, "--config", config, "--level", "stage", "--measure", "p90")
    assert result.exit_code == 4 and "measure" in result.stderr
    # usage errors exit 2
    assert run_cli("rollup", root, "--level", "cohort").exit_code == 2
    assert run_cli("rollup", root, "--format", "xml").exit_code == 2
    assert run_cli("rollup").exit_code == 2
