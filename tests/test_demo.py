"""The demo tree: its layout, its determinism, and drift exactly where the injections say.

Expected values are computed here with numpy/scipy from the stored sidecars, never with
metricsduck's own drift code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import ks_2samp

import metricsduck
from metricsduck.demo import TARGETS, Injection, describe, write_demo
from metricsduck.errors import InputError

RUNS = 5  # the smallest tree with every injection (bad run 4 needs a later run)
STAGE = "TARGET_RANKING"
SYMBOLS = {"AAPL", "MSFT", "NVDA", "TSLA", "AMZN"}
COHORT_FILES = {
    "metadata.json", "metrics.json", "audit_report.json",
    "telemetry_metrics.parquet", "telemetry_metrics.json", "telemetry_samples.parquet",
}
FLOAT_METRICS = {"mean_score", "std_score", "mean_importance", "composite_score", "pos_rate"}
INT_METRICS = {"n_models", "n_features_pre", "n_features_post_prune", "N_effective_cs"}


@pytest.fixture(scope="module")
def tree(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Injection]]:
    demo = demo_trees.copy(tmp_path_factory.mktemp("demo") / "tree", runs=RUNS, seed=0)
    return demo.root, demo.injections


@pytest.fixture(scope="module")
def short_tree(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Injection]]:
    """Two runs with another seed: too short for the bad run and the fingerprint change."""
    demo = demo_trees.copy(tmp_path_factory.mktemp("short") / "tree", runs=2, seed=1)
    return demo.root, demo.injections


@pytest.fixture(scope="module")
def store(tree):
    with metricsduck.connect(tree[0]) as store:
        yield store


@pytest.fixture(scope="module")
def values(store) -> dict[tuple[str, str], list[float]]:
    """`(baseline_key, metric)` -> numeric values, oldest run first (one query: fast)."""
    rows = store.sql(
        "SELECT baseline_key, metric, list(value ORDER BY run_started_at) FROM facts "
        "WHERE kind <> 'text' GROUP BY 1, 2"
    ).fetchall()
    return {(key, metric): list(series) for key, metric, series in rows}


@pytest.fixture(scope="module")
def samples(store) -> dict[tuple[str, str, str], np.ndarray]:
    """`(baseline_key, run_id, distribution)` -> the stored sample values."""
    rows = store.sql(
        "SELECT baseline_key, run_id, distribution, list(value) FROM samples WHERE value_text IS NULL "
        "GROUP BY 1, 2, 3"
    ).fetchall()
    return {(key, run, dist): np.array(v, dtype=float) for key, run, dist, v in rows}


def injection(injections: list[Injection], kind: str) -> Injection:
    (found,) = [i for i in injections if i.kind == kind]
    return found


def run_id(index: int) -> str:
    return f"demo_run_{index:02d}"


def psi(current: np.ndarray, baseline: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """docs/design.md §5.2 PSI: baseline quantile edges, right-closed bins, floored shares."""
    edges = np.unique(np.quantile(baseline, np.arange(1, bins) / bins))

    def shares(values: np.ndarray) -> np.ndarray:
        # side="left" puts a value equal to an edge in the bin below it: right-closed bins.
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
        return np.maximum(counts / values.size, eps)

    cur, base = shares(current), shares(baseline)
    return float(np.sum((cur - base) * np.log(cur / base)))


def key_of(inj: Injection) -> str:
    return ":".join([inj.stage, inj.view, inj.target] + ([inj.symbol] if inj.symbol else []))


def injected_keys(injections: list[Injection]) -> set[str]:
    return {key_of(i) for i in injections if i.target is not None}


# --- layout --------------------------------------------------------------------------------

def test_tree_has_one_folder_per_run_with_60_cohorts_of_six_files(tree):
    root, _ = tree
    assert sorted(p.name for p in root.iterdir()) == [f"run_{i:02d}" for i in range(1, RUNS + 1)]
    for run in range(1, RUNS + 1):
        stage = root / f"run_{run:02d}" / "REPRODUCIBILITY" / STAGE
        assert sorted(p.name for p in stage.iterdir()) == ["CROSS_SECTIONAL", "SYMBOL_SPECIFIC"]
        cs = sorted(stage.glob("CROSS_SECTIONAL/*/cohort=*"))
        ss = sorted(stage.glob("SYMBOL_SPECIFIC/*/symbol=*/cohort=*"))
        assert len(cs) == 10 and len(ss) == 50
        assert {p.parent.name for p in cs} == set(TARGETS)
        assert {p.parent.parent.name for p in ss} == set(TARGETS)
        assert {p.parent.name for p in ss} == {f"symbol={s}" for s in SYMBOLS}
        assert all(len(list(p.parent.iterdir())) == 1 for p in cs + ss)  # one cohort per target
        for cohort in cs + ss:
            assert {p.name for p in cohort.iterdir()} == COHORT_FILES


def test_targets_are_ten_distinct_pipeline_names():
    assert len(set(TARGETS)) == 10
    assert all(t.startswith("y_will_") for t in TARGETS)


def test_runs_have_demo_ids_daily_start_times_and_written_at_one_hour_later(store):
    rows = store.sql(
        "SELECT DISTINCT run_id, run_started_at, written_at FROM cohort_runs ORDER BY run_id"
    ).fetchall()
    first = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    expected = [
        (run_id(i), first + timedelta(days=i - 1), first + timedelta(days=i - 1, hours=1))
        for i in range(1, RUNS + 1)
    ]
    assert [(r, s.astimezone(timezone.utc), w.astimezone(timezone.utc)) for r, s, w in rows] == expected
    counts = store.sql("SELECT run_id, count(*) FROM cohort_runs GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [(run_id(i), 60) for i in range(1, RUNS + 1)]


def test_cohort_ids_are_stable_across_runs(store):
    rows = store.sql(
        "SELECT baseline_key, count(DISTINCT cohort_id), count(*) FROM cohort_runs GROUP BY 1"
    ).fetchall()
    assert len(rows) == 60
    assert all(ids == 1 and n == RUNS for _, ids, n in rows)


def test_every_cohort_run_has_the_twelve_metrics_with_their_kinds(store):
    rows = store.sql(
        "SELECT baseline_key, run_id, list(metric ORDER BY metric), "
        "list(kind ORDER BY metric) FROM facts GROUP BY 1, 2"
    ).fetchall()
    assert len(rows) == 60 * RUNS
    kinds = {m: "number" for m in FLOAT_METRICS | INT_METRICS}
    kinds.update(leakage_flag="bool", metric_name="text", task_type="text")
    for _, _, metrics, metric_kinds in rows:
        assert dict(zip(metrics, metric_kinds, strict=True)) == kinds
    texts = store.sql(
        "SELECT DISTINCT metric, value_text FROM facts WHERE kind = 'text' ORDER BY 1"
    ).fetchall()
    assert texts == [("metric_name", "roc_auc"), ("task_type", "binary_classification")]
    constant = store.sql(
        "SELECT metric, min(value), max(value) FROM facts WHERE metric IN "
        "('n_models', 'leakage_flag') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert constant == [("leakage_flag", 0.0, 0.0), ("n_models", 5.0, 5.0)]


def test_pipeline_files_carry_the_cohort_definition(tree):
    root, _ = tree
    folder = next((root / "run_01" / "REPRODUCIBILITY" / STAGE / "SYMBOL_SPECIFIC").glob(
        "*/symbol=AAPL/cohort=*"))
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["date_start"] == "2025-01-02" and metadata["date_end"] == "2025-12-31"
    assert metadata["n_symbols"] == 1 and metadata["seed"] == 42
    assert metadata["cohort_config"]["view"] == "SYMBOL_SPECIFIC"
    assert folder.name == f"cohort={metadata['cohort_id']}"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["N_effective_cs"] == metadata["N_effective"]
    assert json.loads((folder / "audit_report.json").read_text()) == {"is_valid": True}


# --- determinism ---------------------------------------------------------------------------

def test_same_runs_and_seed_give_byte_identical_trees_and_progress_counts(tmp_path, demo_trees):
    calls: list[tuple[int, int]] = []
    first = write_demo(tmp_path / "a", runs=2, progress=lambda done, total: calls.append((done, total)))
    # the other tree: written by the session's shared build (at another path, maybe in another process)
    second = demo_trees.shared(runs=2, seed=0)
    assert first == second.injections
    assert calls == [(i, 120) for i in range(1, 121)]
    files_a = {p.relative_to(tmp_path / "a"): p for p in (tmp_path / "a").rglob("*") if p.is_file()}
    files_b = {p.relative_to(second.root): p for p in second.root.rglob("*") if p.is_file()}
    assert files_a.keys() == files_b.keys()
    assert len(files_a) == 2 * 60 * len(COHORT_FILES)
    assert all(files_a[rel].read_bytes() == files_b[rel].read_bytes() for rel in files_a)


def test_another_seed_gives_other_values(tree, short_tree):
    def first_run_means(root: Path) -> set[float]:
        tables = (pq.read_table(p) for p in (root / "run_01").rglob("telemetry_metrics.parquet"))
        return {r["value"] for t in tables for r in t.to_pylist() if r["metric"] == "mean_score"}

    seed0, seed1 = first_run_means(tree[0]), first_run_means(short_tree[0])
    assert len(seed0) == len(seed1) == 60
    assert not seed0 & seed1


# --- injections ----------------------------------------------------------------------------

def test_injections_of_a_five_run_tree(tree):
    _, injections = tree
    assert [i.kind for i in injections] == ["bad_run", "fingerprint", "collapse", "improvement", "shift",
                                            "categorical_shift", "trend"]
    assert describe(injections) == [i.description for i in injections]
    assert all(isinstance(line, str) and "\n" not in line and line for line in describe(injections))
    collapse, shift, trend = (injection(injections, k) for k in ("collapse", "shift", "trend"))
    assert (collapse.run_id, collapse.view, collapse.target, collapse.symbol) == (
        run_id(RUNS), "CROSS_SECTIONAL", "y_will_swing_low_60m_0.05", None)
    assert (shift.run_id, shift.view, shift.target, shift.symbol) == (
        run_id(RUNS), "SYMBOL_SPECIFIC", "y_will_swing_high_60m_0.05", "TSLA")
    assert (trend.run_id, trend.view, trend.target, trend.items) == (
        None, "CROSS_SECTIONAL", "y_will_peak_30m_0.03", ("composite_score",))
    improvement = injection(injections, "improvement")
    assert (improvement.run_id, improvement.view, improvement.target, improvement.items) == (
        run_id(RUNS), "CROSS_SECTIONAL", "y_will_valley_120m_0.08", ("mean_score", "composite_score"))
    regime = injection(injections, "categorical_shift")
    assert (regime.run_id, regime.view, regime.target, regime.items) == (
        run_id(RUNS), "CROSS_SECTIONAL", "y_will_breakout_60m_0.04", ("regime",))
    assert len({collapse.target, improvement.target, shift.target, regime.target, trend.target}) == 5
    assert injection(injections, "bad_run").run_id == run_id(4)
    assert injection(injections, "bad_run").items == ()
    assert injection(injections, "fingerprint").run_id == run_id(5)
    assert all(i.stage == STAGE for i in injections)


def test_a_tree_too_short_for_a_bad_run_has_none(short_tree):
    root, injections = short_tree
    assert [i.kind for i in injections] == ["collapse", "improvement", "shift", "categorical_shift", "trend"]
    assert injection(injections, "collapse").run_id == run_id(2)
    # Two runs are below trend.min_runs (5 by default): the description says so.
    assert "needs 5 runs" in injection(injections, "trend").description
    verdicts = set()
    for path in root.rglob("telemetry_metrics.parquet"):
        verdicts |= {(r["good"], r["audit_valid"], r["git_commit"]) for r in pq.read_table(path).to_pylist()}
    assert verdicts == {(True, True, "4f1c2ab")}


def test_collapse_drops_mean_and_composite_and_shifts_fold_scores(tree, values, samples):
    inj = injection(tree[1], "collapse")
    key = key_of(inj)
    for metric in ("mean_score", "composite_score"):
        series = values[(key, metric)]
        assert series[-1] < 0.8 * series[-2]
        assert series[-1] == pytest.approx(0.73 * series[-2], rel=0.02)
        assert np.all(np.abs(np.diff(series[:-1]) / series[:-2]) < 0.02)  # stable before
    mean = values[(key, "mean_score")]
    before = np.sort(samples[(key, run_id(RUNS - 1), "fold_scores")])
    after = np.sort(samples[(key, inj.run_id, "fold_scores")])
    shift = before - after
    assert np.allclose(shift, shift[0])  # every fold moves by the same amount
    assert shift[0] == pytest.approx(mean[-2] - mean[-1], abs=0.01)
    assert ks_2samp(after, before).statistic == 1.0
    # The same target in the other view is untouched: the injection is view-specific.
    other = values[(f"{STAGE}:SYMBOL_SPECIFIC:{inj.target}:AAPL", "mean_score")]
    assert abs(other[-1] / other[-2] - 1) < 0.02


def test_shift_moves_tsla_oof_predictions_by_015_and_nothing_else(tree, values, samples):
    inj = injection(tree[1], "shift")
    key = key_of(inj)
    before = samples[(key, run_id(RUNS - 1), "oof_predictions")]
    after = samples[(key, inj.run_id, "oof_predictions")]
    assert before.size == after.size == 500
    assert after.mean() - before.mean() == pytest.approx(0.15, abs=0.005)
    assert ks_2samp(after, before).statistic > 0.3
    assert psi(after, before) > 0.2
    assert after.max() <= 1.0  # still probabilities
    for metric in FLOAT_METRICS:
        series = values[(key, metric)]
        assert abs(series[-1] / series[-2] - 1) < 0.02
    neighbour = f"{STAGE}:SYMBOL_SPECIFIC:{inj.target}:NVDA"
    assert ks_2samp(samples[(neighbour, inj.run_id, "oof_predictions")],
                    samples[(neighbour, run_id(RUNS - 1), "oof_predictions")]).statistic < 0.05


def test_the_regime_sample_is_text_the_same_every_run_until_the_injected_shift(tree):
    root, injections = tree
    inj = injection(injections, "categorical_shift")

    def regimes(run: int, target: str) -> list[str]:
        (path,) = (root / f"run_{run:02d}" / "REPRODUCIBILITY" / STAGE / "CROSS_SECTIONAL" / target).glob(
            "cohort=*/telemetry_samples.parquet")
        rows = pq.read_table(path).to_pylist()
        assert all(r["value"] is None for r in rows if r["distribution"] == "regime")
        return [r["value_text"] for r in rows if r["distribution"] == "regime"]

    for target in (inj.target, TARGETS[0]):
        series = [regimes(run, target) for run in range(1, RUNS + 1)]
        assert len(series[0]) == 500 and set(series[0]) <= {"calm", "trending", "volatile"}
        assert all(s == series[0] for s in series[:-1])
    before, after = regimes(RUNS - 1, inj.target), regimes(RUNS, inj.target)
    moved = sum(b != a for b, a in zip(before, after, strict=True))
    assert after.count("halted") == 25 and "halted" not in before
    assert after.count("calm") < 0.55 * before.count("calm") and moved >= before.count("calm") // 2
    assert regimes(RUNS, TARGETS[0]) == regimes(RUNS - 1, TARGETS[0])  # only the injected cohort moves


def test_trend_target_declines_steadily_and_each_step_stays_below_warn(tree, values):
    inj = injection(tree[1], "trend")
    series = np.array(values[(key_of(inj), "composite_score")])
    assert series.size == RUNS
    steps = np.diff(series) / series[:-1]
    assert np.all(steps < 0)  # strictly decreasing
    assert np.all(np.abs(steps) < 0.05) and np.all(np.abs(steps) > 0.005)
    assert series[-1] / series[0] == pytest.approx(0.985 ** (RUNS - 1), rel=0.02)
    # docs/design.md §6 would call it decreasing: a good linear fit moving over 5% of the mean.
    slope, intercept = np.polyfit(np.arange(RUNS), series, 1)
    fitted = slope * np.arange(RUNS) + intercept
    r2 = 1 - np.sum((series - fitted) ** 2) / np.sum((series - series.mean()) ** 2)
    assert slope < 0 and r2 >= 0.5 and abs(slope) * (RUNS - 1) >= 0.05 * abs(series.mean())
    for metric in FLOAT_METRICS - {"composite_score"}:  # nothing else changes there
        other = np.array(values[(key_of(inj), metric)])
        assert np.all(np.abs(np.diff(other) / other[:-1]) < 0.02)


def test_stable_cohorts_move_less_than_two_percent_between_runs(tree, values):
    skip = injected_keys(tree[1])
    checked = 0
    for (key, metric), series in values.items():
        series = np.array(series)
        assert series.size == RUNS
        if key in skip and metric in FLOAT_METRICS:
            continue
        if metric in FLOAT_METRICS:
            assert np.all(np.abs(np.diff(series) / series[:-1]) < 0.02), (key, metric)
            checked += 1
        else:
            assert np.all(series == series[0]), (key, metric)  # ints and bools are constant
    assert checked == (60 - len(skip)) * len(FLOAT_METRICS)


def test_stable_distributions_stay_far_below_psi_and_ks_thresholds(tree, samples):
    skip = injected_keys(tree[1])
    keys = {key for key, _, _ in samples}
    assert len(keys) == 60
    for key in sorted(keys - skip):
        for run in range(2, RUNS + 1):
            before, after = (samples[(key, run_id(r), "fold_scores")] for r in (run - 1, run))
            assert before.size == 5 and np.array_equal(np.sort(before), np.sort(after))
            for distribution in ("oof_predictions", "feature_importance"):
                before = samples[(key, run_id(run - 1), distribution)]
                after = samples[(key, run_id(run), distribution)]
                assert psi(after, before) < 0.05, (key, run, distribution)
                assert ks_2samp(after, before, method="asymp").statistic < 0.05, (key, run, distribution)


def test_feature_importance_has_one_value_per_kept_feature(values, samples):
    sizes = {(key, run): s.size for (key, run, dist), s in samples.items() if dist == "feature_importance"}
    assert len(sizes) == 60 * RUNS
    for (key, _run), size in sizes.items():
        assert size == values[(key, "n_features_post_prune")][0]


def test_only_run_four_is_bad_and_git_commit_changes_at_run_five(store, tree):
    rows = store.sql(
        "SELECT run_id, list(DISTINCT good), list(DISTINCT audit_valid), list(DISTINCT git_commit) "
        "FROM cohort_runs GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(rows) == RUNS
    for index, (run, good, audit, commit) in enumerate(rows, start=1):
        assert good == [index != 4] and audit == [index != 4], run
        assert commit == ["4f1c2ab" if index < 5 else "9d8e7f6"], run
    constant = store.sql(
        "SELECT count(DISTINCT (config_hash, data_fingerprint, seed)) FROM cohort_runs "
        "GROUP BY baseline_key"
    ).fetchall()
    assert all(n == 1 for (n,) in constant)
    folder = next((tree[0] / "run_04").rglob("audit_report.json")).parent
    sidecar = pq.read_table(folder / "telemetry_metrics.parquet").to_pylist()
    assert {(r["good"], r["audit_valid"]) for r in sidecar} == {(False, False)}


@pytest.mark.parametrize("runs", [1, 0, -3, True, 2.5, "8"])
def test_fewer_than_two_or_non_whole_runs_are_rejected_before_anything_is_written(tmp_path, runs):
    with pytest.raises(InputError, match="at least 2"):
        write_demo(tmp_path / "demo", runs=runs)
    assert not (tmp_path / "demo").exists()
