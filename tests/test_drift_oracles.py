"""Distribution drift (docs/design.md §5.2-§5.4) proven against oracles written here with numpy and scipy.

Every number of `psi_bins` and `drift_distribution` (edges, counts, shares, contributions,
PSI, psi_critical, KS D and p, tiers, n, m, status) is recomputed in this file from the
values the test itself wrote, never by calling metricsduck code. Random trees cover
several seeds, sizes from 1 to thousands of values, ties, discrete data whose quantiles
land exactly on sample values, empty bins, NaNs, subsampled distributions and rolling
baselines pooling several runs. Stores are module-scoped because connecting costs ~0.5 s.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import metricsduck
from metricsduck import load_config, write_cohort_metrics
from oracles import (
    chi2_95_wilson_hilferty,
    chi2_bins,
    decide,
    effect_tier,
    js_distance,
    ks_p_any,
    ks_p_oracle,
    ks_statistic,
    psi_oracle,
    wasserstein_over_std,
)

T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)
STAGE, VIEW = "TRAINING", "CROSS_SECTIONAL"
KINDS = ("previous_run", "rolling", "last_good_run")
# the statuses of a comparison with values on both sides: it has every number
MEASURED = ("COMPARED", "LOW_N", "INCONCLUSIVE")

# docs/design.md §5 defaults (the packaged config must agree; a custom YAML overrides them below).
DEFAULTS = {
    "psi_bins": 10, "psi_epsilon": 1e-4, "psi_warn": 0.1, "psi_threshold": 0.2,
    "ks_warn": 0.05, "ks_threshold": 0.1, "ks_alpha": 0.02, "psi_alpha": 0.02, "min_samples": 20,
    "ks_exact_max": 10_000, "rolling_window_k": 10,
}
CUSTOM = {
    "psi_bins": 3, "psi_epsilon": 1e-3, "psi_warn": 0.02, "psi_threshold": 0.05,
    "ks_warn": 0.08, "ks_threshold": 0.25, "ks_alpha": 0.3, "psi_alpha": 0.2, "min_samples": 3,
    "ks_exact_max": 500, "rolling_window_k": 2, "wasserstein_warn": 0.3, "wasserstein_threshold": 0.6,
    "js_threshold": 0.2,
}
CUSTOM_YAML = """
safety:
  telemetry:
    baselines:
      rolling_window_k: 2
    drift:
      psi_bins: 3
      psi_epsilon: 1.0e-3
      psi_warn: 0.02
      psi_threshold: 0.05
      ks_warn: 0.08
      ks_threshold: 0.25
      ks_alpha: 0.3
      psi_alpha: 0.2
      min_samples: 3
      ks_exact_max: 500
      wasserstein_warn: 0.3
      wasserstein_threshold: 0.6
      js_threshold: 0.2
"""


# --- the oracles (docs/design.md §5, written independently of the SQL) ---------------------

def expected_rows(tree: dict, cfg: dict) -> dict:
    """(baseline_key, run_id, kind, distribution) -> what drift_distribution must say.

    tree: {target: [run, ...]} in run order; run = {"run_id", "good", "samples":
    {distribution: retained finite values}} (a distribution without finite values is an
    empty array; one absent from the run is absent from the dict).
    """
    k = cfg["rolling_window_k"]
    out = {}
    for target, runs in tree.items():
        key = f"{STAGE}:{VIEW}:{target}"
        for i, run in enumerate(runs):
            good_before = [r for r in runs[:i] if r["good"] is True]
            chosen = {
                "previous_run": runs[i - 1:i],
                "rolling": runs[max(0, i - k):i],          # exactly the k prior runs
                "last_good_run": good_before[-1:],
            }
            for kind, base_runs in chosen.items():
                names = set(run["samples"])
                for b in base_runs:
                    names |= set(b["samples"])
                for dist in sorted(names):
                    cur = run["samples"].get(dist, np.empty(0))
                    row = {"n": cur.size, "baseline_runs": len(base_runs),
                           "baseline_run_id": base_runs[0]["run_id"] if base_runs and kind != "rolling" else None}
                    if not base_runs:
                        row.update(status="NO_BASELINE", m=0)
                        out[(key, run["run_id"], kind, dist)] = row
                        continue
                    base = np.concatenate([b["samples"].get(dist, np.empty(0)) for b in base_runs])
                    row["m"] = base.size
                    if cur.size == 0 or base.size == 0:
                        row["status"] = "NO_DATA"
                    else:
                        psi = psi_oracle(cur, base, cfg["psi_bins"], cfg["psi_epsilon"])
                        d = ks_statistic(cur, base)
                        p, method = ks_p_any(d, cur.size, base.size, cfg["ks_exact_max"])
                        critical = chi2_95_wilson_hilferty(psi["bins"] - 1) * (1 / cur.size + 1 / base.size)
                        chi2, chi2_p = chi2_bins(psi["cur_counts"], psi["base_counts"])
                        w = wasserstein_over_std(cur, base)
                        js = js_distance(psi["cur_share"], psi["base_share"])
                        row.update(psi=psi, ks_d=d, ks_p=p, ks_method=method, psi_critical=critical,
                                   chi2=chi2, chi2_p=chi2_p, wasserstein=w, js_distance=js,
                                   **decide(psi["psi"], chi2_p, d, p, cur.size, base.size, cfg, w, js))
                    out[(key, run["run_id"], kind, dist)] = row
    return out


# --- building trees ----------------------------------------------------------------------------

def cohort_dir(root: Path, run_id: str, target: str) -> Path:
    return root / run_id / "REPRODUCIBILITY" / STAGE / VIEW / target / "cohort=c0"


def write_run(root: Path, i: int, target: str, samples: dict, good=None, writer_config=None) -> dict:
    """Write run i of `target`; return the run as the oracle sees it (retained finite values)."""
    run_id = f"run{i:02d}"
    path = cohort_dir(root, run_id, target)
    write_cohort_metrics(
        path, run_id=run_id, run_started_at=T0 + timedelta(days=i), written_at=T0 + timedelta(days=i, hours=1),
        stage=STAGE, view=VIEW, target=target, metrics={"auc": 0.5 + i / 100}, samples=samples,
        good=good, git_commit="abc", seed=7, config=writer_config,
    )
    retained = {}
    for name, values in samples.items():
        arr = np.asarray(values, dtype=float)
        retained[name] = arr[np.isfinite(arr)]
    return {"run_id": run_id, "good": good, "samples": retained, "dir": path}


def random_samples(rng: np.random.Generator, shift: float, big: bool) -> dict:
    sizes = [1, 2, 3, 8, 40, 300, 2500]

    def size() -> int:
        return int(rng.choice(sizes))

    n_nan = size()
    with_nan = rng.normal(shift, 1.0, n_nan)
    with_nan[rng.random(n_nan) < 0.25] = np.nan           # NaNs are excluded, not binned
    return {
        "normal": rng.normal(shift, 1.0, size()),
        # Discrete 0..3: heavy ties, quantiles that land exactly on values (value == edge
        # goes to the lower bin) and, once shifted, empty bins floored at epsilon.
        "ints": rng.integers(0, 4, size()).astype(float) + (1.0 if shift > 0.5 else 0.0),
        "rounded": np.round(rng.gamma(2.0, 1.0 + shift, size()), 1),
        "with_nan": with_nan,
        # Thousands of values (below samples.max_per_distribution: nothing subsampled).
        **({"big": rng.normal(shift, 2.0, int(rng.integers(2000, 4900)))} if big else {}),
    }


def build_random_targets(root: Path, tree: dict, seeds, runs: int, big_seeds=()) -> None:
    for seed in seeds:
        rng = np.random.default_rng(seed)
        target = f"random_{seed}"
        tree[target] = []
        for i in range(runs):
            shift = float(rng.choice([0.0, 0.0, 0.05, 0.3, 0.6, 1.5]))
            good = [True, False, None][int(rng.integers(0, 3))]
            tree[target].append(write_run(root, i, target, random_samples(rng, shift, seed in big_seeds), good=good))


def read_stored(run: dict, distribution: str) -> np.ndarray:
    """The values a samples sidecar retained, read straight from its Parquet file."""
    table = pq.read_table(run["dir"] / "telemetry_samples.parquet", columns=["distribution", "value"])
    table = table.filter(pc.equal(table["distribution"], distribution))
    values = np.asarray(table["value"].to_numpy(zero_copy_only=False), dtype=float)
    return values[np.isfinite(values)]


def fetch(store, query: str, params=None) -> list[dict]:
    rel = store.sql(query, params)
    names = rel.columns
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


# Pinned trees: two runs each, run00 is the baseline (it defines the edges), run01 current.
PINNED = {
    # Baseline 0..9 (m=10): the deciles sit at 0.9*i, strictly between consecutive
    # integers, so each value is alone in its bin: shares 0.1 x 10. The current side puts
    # 1,1,2,2,2,2,2,2,3,3 copies on 0..9 (n=20): shares (.05,.05,.1 x6,.15,.15), so
    # PSI = 2*(-.05)*ln(.5) + 2*(.05)*ln(1.5) = 0.1*ln 3.
    "pin_psi_ln3": (np.arange(10.0), np.repeat(np.arange(10.0), [1, 1, 2, 2, 2, 2, 2, 2, 3, 3])),
    # Baseline 0 x3, 1 x4, 2 x3: B=10 quantiles give edges {0, 0.7, 1, 1.3, 2}; values equal
    # to an edge stay in the lower bin, so the occupied bins hold (0.3, 0.4, 0.3) and the
    # three bins between them are empty on both sides (floored equally: contribution 0).
    # Current 0 x2, 1 x4, 2 x4 gives (0.2, 0.4, 0.4): PSI = .1*ln(3/2) + .1*ln(4/3) = .1*ln 2.
    "pin_psi_ln2": (np.repeat([0.0, 1.0, 2.0], [3, 4, 3]), np.repeat([0.0, 1.0, 2.0], [2, 4, 4])),
    "pin_ks_half": (np.array([3.0, 4, 5, 6, 7, 8]), np.array([1.0, 2, 3, 4, 5])),
    "pin_ks_quarter": (np.array([1.0, 2, 2, 3]), np.array([1.0, 1, 2, 2])),
    # KS tier boundaries: D exactly at ks_threshold (50 of 500 values shifted out: D = 0.1,
    # p ~ 0.01 < alpha) is ALERT; exactly at ks_warn (150 of 3000: D = 0.05, p ~ 0.001) is
    # WARN (p from the KS formula; PSI is checked by the generic oracle test).
    "ks_at_threshold": (np.arange(500.0), np.arange(500.0) + 50),
    "ks_at_warn": (np.arange(3000.0), np.arange(3000.0) + 150),
    # D is exactly 0.1 only where F_cur = 1 and F_base = 0.9 (current: 0..448 and 51 copies
    # of 449): in floats 1 - 0.9 = 0.09999999999999998, which would drop KS below its ALERT
    # threshold; scipy's exact D (an integer over n*m) is 0.1.
    "ks_exact_tenth": (np.arange(500.0), np.concatenate([np.arange(449.0), np.full(51, 449.0)])),
    # n = m = 20, D = 1/20: lambda = (sqrt(10) + .12 + .11/sqrt(10)) / 20 ~ 0.166 < 0.2, so
    # p is exactly 1 (the series alone would give 0.9999999999999998).
    "ks_p_clamped": (np.arange(20.0), np.arange(20.0) + 1),
    # n = m = 8, D = 3/8: where the asymptotic p is 0.14 below the exact one
    "ks_exact_8": (np.arange(8.0), np.arange(8.0) + 3),
    # 0..39 moved up by 4: W1 = 4 exactly, over the baseline's std sqrt((40^2 - 1) / 12)
    "pin_w1": (np.arange(40.0), np.arange(40.0) + 4),
    # a constant baseline and a downward shift: every value lands in the lowest bin on both
    # sides, so PSI is 0 and W1 has no spread to scale by; KS (D = 1) sees it
    "const_down": (np.full(40, 3.0), np.full(40, 2.0)),
}
LN3_TENTH = 0.10986122886681
LN2_TENTH = 0.0693147181


def build_pinned(root: Path, tree: dict, names) -> None:
    for name in names:
        base, cur = PINNED[name]
        tree[name] = [write_run(root, 0, name, {"x": base}, good=True), write_run(root, 1, name, {"x": cur})]


def build_no_data(root: Path, tree: dict) -> None:
    """Distributions whose current or baseline side has no finite value."""
    tree["nodata"] = [
        write_run(root, 0, "nodata", {"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0]}, good=True),
        # x: only NaN/inf (one placeholder row keeps the counts); y: offered empty.
        write_run(root, 1, "nodata", {"x": [math.nan, math.inf], "y": []}),
        # y is absent from this run altogether; x is back.
        write_run(root, 2, "nodata", {"x": [1.0, 2.0]}),
    ]


def build_subsampled(root: Path, tree: dict, tmp: Path) -> None:
    """More values than samples.max_per_distribution: the oracle reads the kept rows back."""
    cfg_path = tmp / "small_samples.yaml"
    cfg_path.write_text("safety:\n  telemetry:\n    samples:\n      max_per_distribution: 200\n")
    small = load_config(cfg_path)
    rng = np.random.default_rng(99)
    runs = []
    for i in range(3):
        run = write_run(root, i, "subsampled", {"x": rng.normal(0.2 * i, 1, 1000)}, good=True, writer_config=small)
        run["samples"]["x"] = read_stored(run, "x")
        assert run["samples"]["x"].size == 200
        runs.append(run)
    tree["subsampled"] = runs


@pytest.fixture(scope="module")
def default_tree(tmp_path_factory):
    """Random targets (6 seeds x 5 runs), pinned values, NO_DATA cases; default config."""
    tmp = tmp_path_factory.mktemp("default")
    root = tmp / "RESULTS"
    tree: dict = {}
    build_random_targets(root, tree, seeds=range(6), runs=5, big_seeds=(0, 1))
    build_pinned(root, tree, list(PINNED))
    build_no_data(root, tree)
    build_subsampled(root, tree, tmp)
    store = metricsduck.connect(root)
    yield Snapshot(store, expected_rows(tree, DEFAULTS), tree, DEFAULTS)
    store.close()


@pytest.fixture(scope="module")
def custom_tree(tmp_path_factory):
    """B=3, epsilon 1e-3, k=2 and custom PSI/KS thresholds from a YAML config."""
    tmp = tmp_path_factory.mktemp("custom")
    root = tmp / "RESULTS"
    tree: dict = {}
    build_random_targets(root, tree, seeds=range(10, 14), runs=5)
    # (0.3, 0.4, 0.3) vs (0.2, 0.4, 0.4) with B=3. With B=3 a baseline's first bin always
    # holds at least a third of it (the 1/3 quantile is >= the value at index floor((m-1)/3)),
    # so it cannot hold 0.3 or 0.2. PSI is symmetric in its two sides and blind to the
    # order of the bins, so we pin the same pair of share vectors as baseline (0.4, 0.4, 0.2)
    # (the second reversed) and current (0.3, 0.4, 0.3): baseline 0,1,2,3,4,5,6,6,8,9 has
    # edges exactly 3 and 6 (positions (m-1)/3 = 3.0 and 6.0); bins (-inf,3], (3,6], (6,inf)
    # hold 4, 4 (the 6 tied twice) and 2 values; current 0,1,2 | 4,5,5,6 | 7,8,9.
    base = np.array([0.0, 1, 2, 3, 4, 5, 6, 6, 8, 9])
    cur = np.array([0.0, 1, 2, 4, 5, 5, 6, 7, 8, 9])
    tree["pin_psi_ln2_b3"] = [write_run(root, 0, "pin_psi_ln2_b3", {"x": base}, good=True),
                              write_run(root, 1, "pin_psi_ln2_b3", {"x": cur})]
    cfg_path = tmp / "custom.yaml"
    cfg_path.write_text(CUSTOM_YAML)
    store = metricsduck.connect(root, config=load_config(cfg_path))
    yield Snapshot(store, expected_rows(tree, CUSTOM), tree, CUSTOM)
    store.close()


DIST_QUERY = "SELECT * FROM drift_distribution ORDER BY baseline_key, run_id, baseline_kind, distribution"
BINS_QUERY = "SELECT * FROM psi_bins ORDER BY baseline_key, run_id, baseline_kind, distribution, bin"


class Snapshot:
    """A store with its drift_distribution and psi_bins rows fetched once (each query over a
    whole tree costs seconds), plus what the oracle expects of them."""

    def __init__(self, store, expected: dict, tree: dict, cfg: dict) -> None:
        self.store, self.expected, self.tree, self.cfg = store, expected, tree, cfg
        self.dist = rows_by_key(fetch(store, DIST_QUERY))
        self.bins = rows_by_key(fetch(store, BINS_QUERY), many=True)

    def row(self, target: str, run_id: str = "run01", kind: str = "previous_run", dist: str = "x") -> dict:
        return self.dist[(f"{STAGE}:{VIEW}:{target}", run_id, kind, dist)]

    def bin_rows(self, target: str, run_id: str = "run01", kind: str = "previous_run", dist: str = "x") -> list:
        return self.bins[(f"{STAGE}:{VIEW}:{target}", run_id, kind, dist)]

    def tree_values(self, key: tuple) -> np.ndarray:
        """The current side's values of one (baseline_key, run_id, kind, distribution)."""
        target = key[0].split(":")[2]
        run = next(r for r in self.tree[target] if r["run_id"] == key[1])
        return run["samples"].get(key[3], np.empty(0))


def rows_by_key(rows: list[dict], many: bool = False) -> dict:
    out: dict = {}
    for row in rows:
        key = (row["baseline_key"], row["run_id"], row["baseline_kind"], row["distribution"])
        if not many:
            assert key not in out, f"two rows for {key}"
            out[key] = row
        else:
            out.setdefault(key, []).append(row)
    return out


def check_distribution_rows(snap: Snapshot) -> None:
    actual, expected = snap.dist, snap.expected
    # One row per cohort-run x kind x distribution, no more, no fewer (never silence).
    assert set(actual) == set(expected)
    compared = 0
    for key, exp in expected.items():
        row = actual[key]
        assert row["status"] == exp["status"], key
        assert (row["n"], row["m"]) == (exp["n"], exp["m"]), key
        assert row["baseline_runs"] == exp["baseline_runs"], key
        assert row["baseline_run_id"] == exp["baseline_run_id"], key
        if exp["status"] in ("NO_BASELINE", "NO_DATA"):
            assert row["psi"] is None and row["ks_d"] is None and row["ks_p"] is None, key
            assert row["tier"] is None, key
            continue
        compared += 1
        assert row["psi"] == pytest.approx(exp["psi"]["psi"], rel=1e-12, abs=1e-15), key
        assert row["psi_bins"] == exp["psi"]["bins"], key
        assert abs(row["ks_d"] - exp["ks_d"]) <= 1e-12, key
        if max(exp["n"], exp["m"]) <= 10000:  # scipy's exact mode: D = h/lcm(n, m), rounded once
            assert row["ks_d"] == exp["ks_d"], key
        assert row["ks_method"] == exp["ks_method"], key
        if exp["ks_method"] == "exact":  # scipy's lattice-path count, to 1e-10 (docs/design.md §5.3)
            assert abs(row["ks_p"] - exp["ks_p"]) <= 1e-10, key
        else:
            assert row["ks_p"] == pytest.approx(exp["ks_p"], rel=1e-12, abs=1e-14), key
        if exp["ks_p"] == 1.0:  # lambda < 0.2 (or D = 0) is exactly 1, not the series' 1 - 1e-13
            assert row["ks_p"] == 1.0, key
        assert row["psi_critical"] == pytest.approx(exp["psi_critical"], rel=1e-12), key
        assert row["chi2"] == pytest.approx(exp["chi2"], rel=1e-10, abs=1e-12), key
        assert abs(row["chi2_p"] - exp["chi2_p"]) <= 1e-10, key
        assert row["psi_significant"] == (exp["chi2_p"] < snap.cfg["psi_alpha"]), key
        if exp["wasserstein"] is None:
            assert row["wasserstein"] is None, key
        else:
            assert row["wasserstein"] == pytest.approx(exp["wasserstein"], rel=1e-9, abs=1e-12), key
        assert row["js_distance"] == pytest.approx(exp["js_distance"], rel=1e-9, abs=1e-9), key
        assert row["distance_tier"] == exp["distance_tier"], key
        assert (row["psi_tier"], row["ks_tier"], row["tier"]) == (exp["psi_tier"], exp["ks_tier"], exp["tier"]), key
        assert row["current_view"] == row["baseline_view"] == VIEW
    assert compared > 20


def check_bins(snap: Snapshot) -> None:
    actual, expected = snap.bins, snap.expected
    compared = {k: v for k, v in expected.items() if v["status"] in MEASURED}
    # Bins exist exactly for the pairs where both sides have values.
    assert set(actual) == set(compared)
    for key, exp in compared.items():
        psi = exp["psi"]
        rows = actual[key]
        assert [r["bin"] for r in rows] == list(range(psi["bins"])), key
        edges = psi["edges"].tolist()
        # Edges equal numpy's quantiles exactly (a one-ulp difference would move tied values).
        assert [r["upper_edge"] for r in rows] == edges + [None], key
        assert [r["lower_edge"] for r in rows] == [None] + edges, key
        assert [r["baseline_count"] for r in rows] == psi["base_counts"].tolist(), key
        assert [r["current_count"] for r in rows] == psi["cur_counts"].tolist(), key
        # Shares are the raw count/n (the epsilon floor applies inside the contribution only).
        assert [r["baseline_share"] for r in rows] == pytest.approx(psi["base_share"].tolist(), rel=1e-15, abs=0), key
        assert [r["current_share"] for r in rows] == pytest.approx(psi["cur_share"].tolist(), rel=1e-15, abs=0), key
        expected = pytest.approx(psi["contribution"].tolist(), rel=1e-12, abs=1e-16)
        assert [r["contribution"] for r in rows] == expected, key


# --- the oracles themselves -----------------------------------------------------------------------

def test_the_p_value_oracle_is_the_kolmogorov_distribution():
    # Q(lambda) as docs/design.md §5.3 writes it is the Kolmogorov survival function; scipy has it.
    for lam in np.linspace(0.2, 3.0, 57):
        j = np.arange(1, 101)
        q = 2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * j**2 * lam**2))
        assert min(max(q, 0), 1) == pytest.approx(scipy.special.kolmogorov(lam), rel=1e-10, abs=1e-15)
    # And ks_p_oracle applies it at lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) * D.
    n, m, d = 40, 60, 0.25
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    assert ks_p_oracle(d, n, m) == pytest.approx(scipy.special.kolmogorov(lam), rel=1e-10)
    assert ks_p_oracle(0.01, 5, 5) == 1.0  # lambda < 0.2


def test_wilson_hilferty_is_within_one_percent_of_the_exact_chi2_quantile():
    # docs/design.md §5.2 uses the approximation; it is good to 1% from 3 degrees of freedom on
    # (at 1 and 2 it is 2.5% and 0.9% low, which psi_critical inherits for 2-3 bins).
    for df in range(3, 200):
        assert chi2_95_wilson_hilferty(df) == pytest.approx(scipy.stats.chi2.ppf(0.95, df), rel=0.01)


# --- random trees, default config -------------------------------------------------------------------

def test_every_distribution_number_matches_the_oracle(default_tree):
    """n, m, status, PSI, KS D (scipy), KS p, psi_critical, significance and tiers."""
    check_distribution_rows(default_tree)
    statuses = {v["status"] for v in default_tree.expected.values()}
    tiers = {v.get("tier") for v in default_tree.expected.values()}
    # The random trees do exercise every branch.
    assert statuses == {"COMPARED", "LOW_N", "INCONCLUSIVE", "NO_DATA", "NO_BASELINE"}
    assert {"OK", "WARN", "ALERT"} <= tiers
    assert {v.get("ks_method") for v in default_tree.expected.values()} == {None, "exact", "asymptotic"}


def test_every_psi_bin_matches_numpy(default_tree):
    check_bins(default_tree)


def test_the_trees_cover_sizes_ties_edges_and_empty_bins(default_tree):
    """Guard the oracle tests against vacuity: the cases this file means to cover are really there."""
    compared = [v for v in default_tree.expected.values() if v["status"] in MEASURED]
    assert min(v["n"] for v in compared) == 1 and min(v["m"] for v in compared) == 1
    assert max(v["n"] for v in compared) > 2000 and max(v["m"] for v in compared) > 4000
    # Fewer distinct edges than B-1 (ties collapse quantiles), some current value equal
    # to an edge, and bins empty on one side (floored at epsilon).
    assert any(v["psi"]["bins"] < DEFAULTS["psi_bins"] for v in compared)
    assert any(np.isin(default_tree.tree_values(key), v["psi"]["edges"]).any()
               for key, v in default_tree.expected.items() if v["status"] in MEASURED)
    assert any((v["psi"]["cur_counts"] == 0).any() for v in compared)
    assert any((v["psi"]["base_counts"] == 0).any() for v in compared)
    rolling = [v for v in compared if v["baseline_runs"] > 1]
    assert rolling and max(v["baseline_runs"] for v in rolling) == 4


def test_subsampled_distributions_are_compared_on_the_stored_values(default_tree):
    # The oracle read the 200 retained values back from the Parquet files; the view
    # compared exactly those (m = 200 per pooled run).
    rows = [default_tree.row("subsampled", "run02", kind) for kind in KINDS]
    assert [(r["n"], r["m"]) for r in rows] == [(200, 200), (200, 400), (200, 200)]
    runs = default_tree.tree["subsampled"]
    pooled = np.concatenate([runs[0]["samples"]["x"], runs[1]["samples"]["x"]])
    assert abs(rows[1]["ks_d"] - ks_statistic(runs[2]["samples"]["x"], pooled)) <= 1e-12


# --- pinned known values (docs/design.md §5.2, §5.3) ------------------------------------------------

def test_psi_of_uniform_deciles_against_shifted_shares_is_a_tenth_of_ln3(default_tree):
    row = default_tree.row("pin_psi_ln3")
    assert row["psi"] == pytest.approx(LN3_TENTH, abs=1e-14)
    assert row["psi"] == pytest.approx(0.1 * math.log(3), rel=1e-12)
    bins = default_tree.bin_rows("pin_psi_ln3")
    assert [r["baseline_share"] for r in bins] == pytest.approx([0.1] * 10)
    assert [r["current_share"] for r in bins] == pytest.approx([0.05, 0.05] + [0.1] * 6 + [0.15, 0.15])
    assert [r["upper_edge"] for r in bins][:-1] == pytest.approx([0.9 * i for i in range(1, 10)])


def test_psi_of_three_tenths_four_tenths_against_shifted_shares_is_a_tenth_of_ln2(default_tree, custom_tree):
    row = default_tree.row("pin_psi_ln2")
    assert row["psi"] == pytest.approx(LN2_TENTH, abs=1e-10)
    assert row["psi"] == pytest.approx(0.1 * math.log(2), rel=1e-12)
    bins = default_tree.bin_rows("pin_psi_ln2")
    assert [r["upper_edge"] for r in bins][:-1] == pytest.approx([0.0, 0.7, 1.0, 1.3, 2.0], abs=1e-15)
    assert [r["baseline_share"] for r in bins] == pytest.approx([0.3, 0, 0.4, 0, 0.3, 0])
    assert [r["current_share"] for r in bins] == pytest.approx([0.2, 0, 0.4, 0, 0.4, 0])
    assert [r["contribution"] for r in bins][1::2] == [0.0, 0.0, 0.0]
    # The same pair of share vectors with psi_bins: 3 from the config (three occupied bins).
    row = custom_tree.row("pin_psi_ln2_b3")
    assert row["psi"] == pytest.approx(LN2_TENTH, abs=1e-10)
    assert row["psi_bins"] == 3
    bins = custom_tree.bin_rows("pin_psi_ln2_b3")
    assert [(r["lower_edge"], r["upper_edge"]) for r in bins] == [(None, 3.0), (3.0, 6.0), (6.0, None)]
    assert [r["baseline_share"] for r in bins] == pytest.approx([0.4, 0.4, 0.2])
    assert [r["current_share"] for r in bins] == pytest.approx([0.3, 0.4, 0.3])


def test_ks_pinned_values(default_tree):
    half, quarter = default_tree.row("pin_ks_half"), default_tree.row("pin_ks_quarter")
    assert half["ks_d"] == pytest.approx(0.5, abs=1e-15)
    assert quarter["ks_d"] == pytest.approx(0.25, abs=1e-15)
    # n*m <= drift.ks_exact_max: the exact p, a share of the C(11, 5) = 462 lattice paths
    # (165 reach |F_cur - F_base| >= 1/2): 5/14, where the asymptotic form says 0.367.
    base, cur = PINNED["pin_ks_half"]
    assert half["ks_method"] == "exact"
    assert abs(half["ks_p"] - scipy.stats.ks_2samp(cur, base, method="exact").pvalue) <= 1e-10
    assert half["ks_p"] == pytest.approx(5 / 14, abs=1e-12)
    assert ks_p_oracle(0.5, 5, 6) == pytest.approx(0.3670013850902252, rel=1e-12)
    # n=m=4, D=1/4: every path reaches it, p = 1 exactly.
    assert (quarter["ks_method"], quarter["ks_p"]) == ("exact", 1.0)
    clamped = default_tree.row("ks_p_clamped")
    assert (clamped["ks_d"], clamped["ks_p"]) == (0.05, 1.0)
    # Too few values to be significant: D is large but p >= alpha, so KS stays OK.
    assert half["ks_tier"] == "OK" and quarter["ks_tier"] == "OK"


def test_small_samples_get_the_exact_p_the_asymptotic_form_underestimates(default_tree):
    # n = m = 8, D = 3/8: 8,496 of the C(16, 8) = 12,870 lattice paths reach it, p = 0.66014;
    # the asymptotic form says 0.51894, 0.14 lower (enough to flip a tier at other sizes).
    row = default_tree.row("ks_exact_8")
    base, cur = PINNED["ks_exact_8"]
    assert row["ks_method"] == "exact" and row["ks_d"] == 0.375
    assert abs(row["ks_p"] - scipy.stats.ks_2samp(cur, base, method="exact").pvalue) <= 1e-10
    assert row["ks_p"] == pytest.approx(0.6601398601398599, abs=1e-12)
    assert row["ks_p"] - ks_p_oracle(0.375, 8, 8) == pytest.approx(0.1412, abs=1e-4)
    # above drift.ks_exact_max (n*m = 250,000 > 10,000) the asymptotic form, as before
    big = default_tree.row("ks_at_threshold")
    assert big["ks_method"] == "asymptotic"
    assert big["ks_p"] == pytest.approx(ks_p_oracle(0.1, 500, 500), rel=1e-12)


def test_ks_tiers_include_their_boundaries(default_tree):
    # D >= ks_threshold (with p < alpha) is ALERT, D >= ks_warn WARN: equality counts.
    at_threshold, at_warn = default_tree.row("ks_at_threshold"), default_tree.row("ks_at_warn")
    assert at_threshold["ks_d"] == 0.1 and at_threshold["ks_p"] < DEFAULTS["ks_alpha"]
    assert at_threshold["ks_tier"] == "ALERT"
    assert at_warn["ks_d"] == 0.05 and at_warn["ks_p"] < DEFAULTS["ks_alpha"]
    assert at_warn["ks_tier"] == "WARN"
    exact = default_tree.row("ks_exact_tenth")
    base, cur = PINNED["ks_exact_tenth"]
    assert exact["ks_d"] == ks_statistic(cur, base) == 0.1
    assert exact["ks_p"] < 0.05 and exact["ks_tier"] == "ALERT"


# --- false discoveries (docs/design.md §5.4) ------------------------------------------------------

Q_QUERY = ("SELECT run_id, stage, baseline_kind, baseline_key, item, ks_p, q_value, tier, status FROM drift "
           "WHERE item_kind = 'distribution' ORDER BY ALL")


def test_q_values_are_benjamini_hochberg_over_each_run_stage_and_kind(default_tree):
    families: dict = {}
    for row in fetch(default_tree.store, Q_QUERY):
        families.setdefault((row["run_id"], row["stage"], row["baseline_kind"]), []).append(row)
    checked = 0
    for members in families.values():
        assert all(r["q_value"] is None for r in members if r["ks_p"] is None)
        tested = [r for r in members if r["ks_p"] is not None]
        if tested:
            want = scipy.stats.false_discovery_control([r["ks_p"] for r in tested], method="bh")
            assert [r["q_value"] for r in tested] == pytest.approx(list(want), rel=1e-12, abs=1e-15)
            checked += len(tested)
    assert checked > 200 and max(len(m) for m in families.values()) > 20
    assert any(r["q_value"] < 0.05 for m in families.values() for r in m if r["q_value"] is not None)


def test_fdr_q_caps_the_tier_of_rows_whose_q_value_exceeds_it(default_tree, tmp_path):
    config = tmp_path / "fdr.yaml"
    config.write_text("safety:\n  telemetry:\n    drift:\n      fdr_q: 0.01\n")
    plain = {(r["run_id"], r["baseline_kind"], r["baseline_key"], r["item"]): r
             for r in fetch(default_tree.store, Q_QUERY)}
    with metricsduck.connect(default_tree.store.root, config=load_config(config)) as store:
        gated = {(r["run_id"], r["baseline_kind"], r["baseline_key"], r["item"]): r for r in fetch(store, Q_QUERY)}
    assert set(gated) == set(plain)
    capped = 0
    for key, row in plain.items():
        if row["tier"] in ("WARN", "ALERT") and row["q_value"] > 0.01:
            assert (gated[key]["tier"], gated[key]["status"]) == ("OK", "INCONCLUSIVE"), key
            capped += 1
        else:
            assert (gated[key]["tier"], gated[key]["status"]) == (row["tier"], row["status"]), key
        assert gated[key]["q_value"] == row["q_value"]
    assert capped > 0 and any(r["tier"] == "ALERT" for r in gated.values())


def test_distances_pinned_values(default_tree):
    row = default_tree.row("pin_w1")
    assert row["wasserstein"] == pytest.approx(4 / math.sqrt((40**2 - 1) / 12), rel=1e-12)
    assert row["distance_tier"] == "OK"  # reported, not tiered by default
    down = default_tree.row("const_down")
    assert (down["psi"], down["wasserstein"], down["ks_d"]) == (0.0, None, 1.0)
    assert (down["ks_tier"], down["tier"], down["status"]) == ("ALERT", "ALERT", "COMPARED")
    ln3 = default_tree.row("pin_psi_ln3")  # shares (.05, .05, .1 x 6, .15, .15) against .1 x 10
    cur, base = np.array([.05, .05] + [.1] * 6 + [.15, .15]), np.full(10, .1)
    mid = (cur + base) / 2
    assert ln3["js_distance"] == pytest.approx(
        math.sqrt(0.5 * np.sum(cur * np.log(cur / mid)) + 0.5 * np.sum(base * np.log(base / mid))), rel=1e-12)


# --- NO_DATA ------------------------------------------------------------------------------------

def test_a_side_without_finite_values_gives_a_no_data_row(default_tree):
    got = {(run, kind, dist): (row["status"], row["n"], row["m"])
           for (key, run, kind, dist), row in default_tree.dist.items() if key.endswith(":nodata")}
    assert got == {
        # run00: the first run has no baseline of any kind
        ("run00", "last_good_run", "x"): ("NO_BASELINE", 3, 0),
        ("run00", "previous_run", "x"): ("NO_BASELINE", 3, 0),
        ("run00", "rolling", "x"): ("NO_BASELINE", 3, 0),
        ("run00", "last_good_run", "y"): ("NO_BASELINE", 2, 0),
        ("run00", "previous_run", "y"): ("NO_BASELINE", 2, 0),
        ("run00", "rolling", "y"): ("NO_BASELINE", 2, 0),
        # run01: current x is NaN/inf only, current y was offered empty
        ("run01", "last_good_run", "x"): ("NO_DATA", 0, 3),
        ("run01", "previous_run", "x"): ("NO_DATA", 0, 3),
        ("run01", "rolling", "x"): ("NO_DATA", 0, 3),
        ("run01", "last_good_run", "y"): ("NO_DATA", 0, 2),
        ("run01", "previous_run", "y"): ("NO_DATA", 0, 2),
        ("run01", "rolling", "y"): ("NO_DATA", 0, 2),
        # run02: the previous run's x has no finite value (baseline side empty), while
        # rolling and last_good pool run00 and compare (2 and 3 values: LOW_N, numbers shown);
        # y is absent now: NO_DATA, still a row.
        ("run02", "last_good_run", "x"): ("LOW_N", 2, 3),
        ("run02", "previous_run", "x"): ("NO_DATA", 2, 0),
        ("run02", "rolling", "x"): ("LOW_N", 2, 3),
        ("run02", "last_good_run", "y"): ("NO_DATA", 0, 2),
        ("run02", "previous_run", "y"): ("NO_DATA", 0, 0),
        ("run02", "rolling", "y"): ("NO_DATA", 0, 2),
    }
    for (key, *_), row in default_tree.dist.items():
        if key.endswith(":nodata") and row["status"] in ("NO_DATA", "NO_BASELINE"):
            assert row["psi"] is None and row["ks_d"] is None and row["ks_p"] is None and row["tier"] is None
    # The missing share drifts as its own scalar (docs/design.md §5.1): both of x's values were
    # non-finite in run01.
    rates = fetch(default_tree.store,
                  "SELECT run_id, current_value FROM drift_scalar WHERE baseline_key = ? "
                  "AND metric = 'x.missing_rate' AND baseline_kind = 'previous_run' ORDER BY run_id",
                  [f"{STAGE}:{VIEW}:nodata"])
    assert [(r["run_id"], r["current_value"]) for r in rates] == [("run00", 0.0), ("run01", 1.0), ("run02", 0.0)]


# --- custom thresholds from YAML -----------------------------------------------------------------

def test_custom_bins_epsilon_window_and_thresholds_from_yaml(custom_tree):
    check_distribution_rows(custom_tree)
    check_bins(custom_tree)
    compared = [v for v in custom_tree.expected.values() if v["status"] in MEASURED]
    assert max(v["psi"]["bins"] for v in compared) == 3
    assert max(v["baseline_runs"] for v in compared) == 2        # rolling_window_k: 2
    # The custom thresholds give tiers the defaults would not (so the config is read).
    def psi_effect(v, cfg):
        return effect_tier(v["psi"]["psi"], cfg["psi_warn"], cfg["psi_threshold"])

    def ks_effect(v, cfg):
        return effect_tier(v["ks_d"], cfg["ks_warn"], cfg["ks_threshold"])

    assert any(psi_effect(v, CUSTOM) != psi_effect(v, DEFAULTS) for v in compared)
    assert any(ks_effect(v, CUSTOM) != ks_effect(v, DEFAULTS) for v in compared)
    # min_samples: 3 and ks_exact_max: 500 are read too
    assert {v["status"] for v in compared} >= {"LOW_N", "COMPARED"}
    assert min(v["n"] for v in compared if v["status"] != "LOW_N") == 3
    assert {v["ks_method"] for v in compared if v["n"] * v["m"] > 500} == {"asymptotic"}
    # the distance tiers are set here: they tier, with their evidence
    assert {v["distance_tier"] for v in compared} == {"OK", "WARN", "ALERT"}


# --- property: arbitrary small float lists ---------------------------------------------------------

@pytest.fixture(scope="module")
def property_store(tmp_path_factory):
    """One store reused by every example: each example rewrites the two sidecars and reloads."""
    root = tmp_path_factory.mktemp("property") / "RESULTS"
    write_run(root, 0, "prop", {"x": [0.0]})
    write_run(root, 1, "prop", {"x": [0.0]})
    store = metricsduck.connect(root)
    yield root, store
    store.close()


values = st.one_of(
    st.integers(-3, 3).map(float),                       # ties, and values equal to edges
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.just(math.nan),                                   # excluded, never binned
)

# Drift views are costly to plan (~0.2 s even on two sidecars): two plain queries per example.
PROPERTY_DIST = "SELECT * FROM drift_distribution WHERE run_id = 'run01' AND baseline_kind = 'previous_run'"
PROPERTY_BINS = ("SELECT current_count, baseline_count FROM psi_bins "
                 "WHERE run_id = 'run01' AND baseline_kind = 'previous_run' ORDER BY bin")


@settings(max_examples=30, deadline=None)
@given(base=st.lists(values, min_size=1, max_size=40), cur=st.lists(values, min_size=1, max_size=40))
def test_psi_and_ks_agree_with_the_oracles_on_arbitrary_lists(property_store, base, cur):
    root, store = property_store
    b = write_run(root, 0, "prop", {"x": base})["samples"]["x"]
    c = write_run(root, 1, "prop", {"x": cur})["samples"]["x"]
    store.reload()
    [row] = fetch(store, PROPERTY_DIST)
    if b.size == 0 or c.size == 0:
        assert row["status"] == "NO_DATA" and row["psi"] is None and row["ks_d"] is None
        return
    psi = psi_oracle(c, b, DEFAULTS["psi_bins"], DEFAULTS["psi_epsilon"])
    assert row["psi"] == pytest.approx(psi["psi"], rel=1e-12, abs=1e-15)
    bins = fetch(store, PROPERTY_BINS)
    assert [r["current_count"] for r in bins] == psi["cur_counts"].tolist()
    assert [r["baseline_count"] for r in bins] == psi["base_counts"].tolist()
    d = ks_statistic(c, b)
    assert abs(row["ks_d"] - d) <= 1e-12
    assert row["ks_d"] == d            # both are the exact n*m-th, rounded once
    p, method = ks_p_any(d, c.size, b.size, DEFAULTS["ks_exact_max"])
    assert (row["ks_method"], abs(row["ks_p"] - p) <= 1e-10) == (method, True)
    _, chi2_p = chi2_bins(psi["cur_counts"], psi["base_counts"])
    assert abs(row["chi2_p"] - chi2_p) <= 1e-10
    expected = decide(psi["psi"], chi2_p, d, p, c.size, b.size, DEFAULTS)
    assert {k: row[k] for k in expected} == expected
