"""Categorical (text) samples (docs/design.md §5.7) against oracles written here with scipy.

Every categorical number of `drift` and `category_shares` (counts, shares, the chi-square of
homogeneity and its p, L-infinity, the categories new and gone, tiers, statuses, q-values) is
recomputed from the values the test wrote, with `scipy.stats.chi2_contingency` (its default
Yates correction on 2 x 2 tables included) and numpy, never by calling metricsduck code.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.stats

import metricsduck
from metricsduck import ConfigError, load_config, write_cohort_metrics
from oracles import effect_tier

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
STAGE, VIEW = "TRAINING", "CROSS_SECTIONAL"
DEFAULTS = {"warn": 0.1, "threshold": 0.2, "alpha": 0.02, "min_samples": 20, "rolling_window_k": 10}
CUSTOM_YAML = """
safety:
  telemetry:
    drift:
      min_samples: 5
      categorical:
        warn: 0.05
        threshold: 0.5
        alpha: 0.5
"""
CUSTOM = {**DEFAULTS, "warn": 0.05, "threshold": 0.5, "alpha": 0.5, "min_samples": 5}
DRIFT = ("SELECT * FROM drift WHERE item_kind = 'distribution' "
         "ORDER BY baseline_key, run_id, baseline_kind, item")


def write_run(root: Path, target: str, i: int, samples: dict) -> None:
    run_id = f"run{i:02d}"
    write_cohort_metrics(
        root / run_id / "REPRODUCIBILITY" / STAGE / VIEW / target / "cohort=c0",
        run_id=run_id, run_started_at=T0 + timedelta(days=i), written_at=T0 + timedelta(days=i, hours=1),
        stage=STAGE, view=VIEW, target=target, metrics={"auc": 0.6}, samples=samples, good=True)


# Pinned tables: (baseline values, current values)
PINNED = {
    # 2 x 2: expected 25/25 and 15/15, |O - E| = 5, Yates 4.5: chi2 = 4.5^2 (2/25 + 2/15) = 4.32
    "yates": (["a"] * 20 + ["b"] * 20, ["a"] * 30 + ["b"] * 10),
    # one category on both sides: nothing to test (scipy: chi2 0, p 1)
    "single": (["a"] * 30, ["a"] * 25),
    # a class appears and one disappears: shares a .5/.5 -> .5, c .5 (L-inf .5)
    "new_and_gone": (["a"] * 40 + ["b"] * 40, ["a"] * 40 + ["c"] * 40),
    # too few values on a side: numbers shown, tier OK
    "low_n": (["a"] * 5 + ["b"] * 5, ["b"] * 10),
}


def random_runs(rng: np.random.Generator) -> list[list[str]]:
    """Five runs of draws over a few classes whose probabilities (and set) move at random."""
    runs = []
    for _ in range(5):
        classes = [c for c in "pqrstu" if rng.random() < 0.8] or ["p"]
        p = rng.dirichlet(np.ones(len(classes)) * rng.choice([0.5, 5.0, 50.0]))
        size = int(rng.choice([3, 25, 60, 400, 2000]))
        runs.append(rng.choice(classes, size=size, p=p).tolist())
    return runs


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Pinned pairs, random categorical targets (with a numeric distribution beside them, so
    q-value families mix both kinds), a distribution whose kind changes, and an old-schema
    samples file without the value_text column."""
    root = tmp_path_factory.mktemp("categorical") / "RESULTS"
    values: dict[str, list[dict[str, list]]] = {}
    for name, (base, cur) in PINNED.items():
        values[name] = [{"cls": base}, {"cls": cur}]
    rng = np.random.default_rng(2026)
    for seed in range(6):
        numbers = [rng.normal(rng.choice([0.0, 0.5]), 1, 60).tolist() for _ in range(5)]
        values[f"random_{seed}"] = [{"cls": runs, "x": x} for runs, x in zip(random_runs(rng), numbers, strict=True)]
    # numbers, then text, then numbers again: no comparison across kinds
    values["kind_change"] = [{"cls": [1.0, 2.0] * 15}, {"cls": ["a", "b"] * 15}, {"cls": [1.5, 2.5] * 15}]
    for target, runs in values.items():
        for i, samples in enumerate(runs):
            write_run(root, target, i, samples)
    # a samples sidecar written before value_text existed reads as numbers, as it did
    old = root / "run00" / "REPRODUCIBILITY" / STAGE / VIEW / "random_0" / "cohort=c0" / "telemetry_samples.parquet"
    table = pq.read_table(old)
    keep = table.filter(np.asarray(table["distribution"].to_pylist()) == "x").drop_columns(["value_text"])
    pq.write_table(keep, old)
    values["random_0"][0] = {"x": values["random_0"][0]["x"]}
    with metricsduck.connect(root) as store:
        rows = store.sql(DRIFT).fetchall()
        names = store.sql(DRIFT).columns
        shares = store.sql("SELECT * FROM category_shares ORDER BY ALL").fetchall()
        # the store's helper pre-filters the pairs; its rows must be the view's
        method = store.category_shares().query(
            "c", "SELECT baseline_key, run_id, baseline_kind, distribution, category, baseline_count, "
            "current_count, baseline_share, current_share FROM c ORDER BY ALL").fetchall()
        assert method == shares
        one = store.category_shares(run="run01", baseline="rolling", distribution="cls", target="yates")
        assert one.query("c", "SELECT category, n, m FROM c ORDER BY ALL").fetchall() == [("a", 40, 40), ("b", 40, 40)]
        bad = store.bad_files()
    yield root, values, [dict(zip(names, r, strict=True)) for r in rows], shares, bad


def baselines(runs: list, i: int, kind: str, k: int) -> list:
    """The runs a baseline kind compares run i with (every run here is good)."""
    return runs[max(0, i - k):i] if kind == "rolling" else runs[i - 1:i]


def oracle(cur: list[str], base: list[str], cfg: dict) -> dict:
    cats = sorted(set(cur) | set(base))
    cc, bc = Counter(cur), Counter(base)
    table = np.array([[cc[c] for c in cats], [bc[c] for c in cats]])
    if len(cats) < 2:
        chi2, p = 0.0, 1.0
    else:
        result = scipy.stats.chi2_contingency(table)  # Yates' correction when 2 x 2, as scipy defaults
        chi2, p = float(result.statistic), float(result.pvalue)
    n, m = len(cur), len(base)
    linf = float(np.max(np.abs(table[0] / n - table[1] / m)))
    effect = effect_tier(linf, cfg["warn"], cfg["threshold"])
    low_n = min(n, m) < cfg["min_samples"]
    tier = effect if p < cfg["alpha"] and not low_n else "OK"
    status = "LOW_N" if low_n else "INCONCLUSIVE" if tier == "OK" and effect != "OK" else "COMPARED"
    return {"n": n, "m": m, "chi2": chi2, "chi2_p": p, "linf": linf, "tier": tier, "status": status,
            "categories_new": sorted(set(cur) - set(base)), "categories_gone": sorted(set(base) - set(cur)),
            "shares": {c: (bc[c], cc[c], bc[c] / m, cc[c] / n) for c in cats}}


def expected(values: dict, cfg: dict) -> dict:
    out = {}
    for target, runs in values.items():
        for i in range(1, len(runs)):
            for kind in ("previous_run", "rolling", "last_good_run"):
                base_runs = baselines(runs, i, kind, cfg["rolling_window_k"])
                cur = runs[i].get("cls")
                base = [v for r in base_runs for v in r.get("cls", []) if isinstance(v, str)]
                if isinstance(cur, list) and cur and isinstance(cur[0], str) and base:
                    out[(f"{STAGE}:{VIEW}:{target}", f"run{i:02d}", kind)] = oracle(cur, base, cfg)
    return out


def compared(rows: list[dict]) -> dict:
    """The categorical rows of `cls` with values on both sides, by (baseline_key, run_id, kind)."""
    return {(r["baseline_key"], r["run_id"], r["baseline_kind"]): r for r in rows
            if r["item"] == "cls" and r["kind"] == "categorical" and r["status"] not in ("NO_BASELINE", "NO_DATA")}


def test_every_categorical_row_matches_scipy(tree):
    _, values, rows, _, bad = tree
    assert bad == []
    want = expected(values, DEFAULTS)
    got = compared(rows)
    assert set(got) == set(want)
    for key, exp in want.items():
        row = got[key]
        assert (row["n"], row["m"], row["status"], row["tier"]) == (exp["n"], exp["m"], exp["status"], exp["tier"]), key
        assert row["chi2"] == pytest.approx(exp["chi2"], rel=1e-10, abs=1e-12), key
        assert abs(row["chi2_p"] - exp["chi2_p"]) <= 1e-10, key
        assert row["linf"] == pytest.approx(exp["linf"], rel=1e-12, abs=1e-15), key
        assert (row["categories_new"], row["categories_gone"]) == (exp["categories_new"], exp["categories_gone"]), key
        assert row["distance_tier"] == row["tier"], key
        assert row["psi"] is None and row["ks_d"] is None and row["ks_p"] is None, key
    # the random trees reach every status and tier, and both table shapes
    assert {e["status"] for e in want.values()} == {"COMPARED", "LOW_N", "INCONCLUSIVE"}
    assert {e["tier"] for e in want.values()} == {"OK", "WARN", "ALERT"}
    assert any(e["categories_new"] for e in want.values()) and any(e["categories_gone"] for e in want.values())


def test_pinned_tables(tree):
    _, _, rows, _, _ = tree
    row = {r["target"]: r for r in rows
           if r["run_id"] == "run01" and r["baseline_kind"] == "previous_run" and r["item"] == "cls"}
    assert row["yates"]["chi2"] == pytest.approx(4.32, rel=1e-12)
    assert row["yates"]["linf"] == pytest.approx(0.25, rel=1e-12)
    assert (row["single"]["chi2"], row["single"]["chi2_p"], row["single"]["linf"]) == (0.0, 1.0, 0.0)
    new_gone = row["new_and_gone"]
    assert (new_gone["categories_new"], new_gone["categories_gone"], new_gone["linf"]) == (["c"], ["b"], 0.5)
    assert (new_gone["tier"], new_gone["status"]) == ("ALERT", "COMPARED")
    assert (row["low_n"]["status"], row["low_n"]["tier"], row["low_n"]["linf"]) == ("LOW_N", "OK", 0.5)


def test_category_shares_hold_each_sides_counts(tree):
    _, values, _, shares, _ = tree
    got: dict = {}
    for key, run, kind, dist, category, base_count, cur_count, base_share, cur_share in shares:
        got.setdefault((key, run, kind), {})[category] = (base_count, cur_count, base_share, cur_share)
        assert dist == "cls"
    want = expected(values, DEFAULTS)
    assert set(got) == set(want)
    for key, exp in want.items():
        assert set(got[key]) == set(exp["shares"]), key
        for category, (base_count, cur_count, base_share, cur_share) in exp["shares"].items():
            assert got[key][category][:2] == (base_count, cur_count), key
            assert got[key][category][2:] == pytest.approx((base_share, cur_share), rel=1e-15), key


def test_a_distribution_whose_kind_changes_is_not_compared_across_kinds(tree):
    _, _, rows, _, _ = tree
    got = {(r["run_id"], r["baseline_kind"]): (r["kind"], r["status"], r["n"], r["m"], r["tier"])
           for r in rows if r["target"] == "kind_change"}
    assert got[("run01", "previous_run")] == ("categorical", "NO_DATA", 30, 0, None)
    assert got[("run02", "previous_run")] == ("distribution", "NO_DATA", 30, 0, None)
    # rolling pools run00's numbers (and run01's text, which it does not count)
    kind, status, n, m, _ = got[("run02", "rolling")]
    assert (kind, n, m) == ("distribution", 30, 30) and status != "NO_DATA"


def test_an_old_samples_file_without_value_text_reads_as_numbers(tree):
    _, values, rows, _, _ = tree
    row = next(r for r in rows if (r["target"], r["run_id"], r["baseline_kind"], r["item"])
               == ("random_0", "run01", "previous_run", "x"))
    assert (row["kind"], row["m"]) == ("distribution", len(values["random_0"][0]["x"]))
    assert row["ks_d"] == pytest.approx(
        scipy.stats.ks_2samp(values["random_0"][1]["x"], values["random_0"][0]["x"]).statistic, abs=1e-12)


def test_q_values_are_benjamini_hochberg_over_ks_and_chi_square_p_values(tree):
    _, _, rows, _, _ = tree
    families: dict = {}
    for row in rows:
        p = row["chi2_p"] if row["kind"] == "categorical" else row["ks_p"]
        if p is None:
            assert row["q_value"] is None
        else:
            families.setdefault((row["run_id"], row["stage"], row["baseline_kind"]), []).append(
                (p, row["q_value"], row["kind"]))
    assert all({kind for *_, kind in m} == {"categorical", "distribution"} for m in families.values())
    for members in families.values():
        p, q, _ = zip(*members, strict=True)
        assert list(q) == pytest.approx(list(scipy.stats.false_discovery_control(p)), rel=1e-12, abs=1e-15)
    assert max(len(m) for m in families.values()) >= 15


def test_categorical_thresholds_come_from_the_config(tree, tmp_path):
    root, values, _, _, _ = tree
    path = tmp_path / "categorical.yaml"
    path.write_text(CUSTOM_YAML)
    with metricsduck.connect(root, config=load_config(path)) as store:
        relation = store.sql(DRIFT)
        rows = [dict(zip(relation.columns, r, strict=True)) for r in relation.fetchall()]
    want = expected(values, CUSTOM)
    got = {key: (r["tier"], r["status"]) for key, r in compared(rows).items()}
    assert got == {k: (e["tier"], e["status"]) for k, e in want.items()}
    default = expected(values, DEFAULTS)
    assert any(default[k]["tier"] != e["tier"] for k, e in want.items())


def test_warn_above_threshold_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("safety:\n  telemetry:\n    drift:\n      categorical:\n"
                    "        warn: 0.3\n        threshold: 0.2\n")
    with pytest.raises(ConfigError, match=r"drift\.categorical\.warn \(0\.3\) is above .*categorical\.threshold"):
        load_config(path)
