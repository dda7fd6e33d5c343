"""Baselines (docs/design.md §4): which earlier cohort-runs every drift row is measured against.

previous_run, rolling (exactly the k prior runs) and last_good_run (marks, then the
`good` column, then audit_valid when configured); runs ordered by (run_started_at,
run_id); first runs get NO_BASELINE; disabled kinds disappear; baselines never cross
views and never compare a run with itself; fingerprint mismatches label, never drop.
Expectations are worked out here in plain Python from what the tests wrote.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import metricsduck
from metricsduck import load_config, write_cohort_metrics
from metricsduck.marks import write_mark

T0 = datetime(2025, 4, 1, 7, 0, tzinfo=timezone.utc)
STAGE, VIEW, TARGET = "TARGET_RANKING", "CROSS_SECTIONAL", "y_will_swing_high_60m_0.05"
KEY = f"{STAGE}:{VIEW}:{TARGET}"
KINDS = ("previous_run", "rolling", "last_good_run")
FIELDS = ("git_commit", "config_hash", "data_fingerprint", "seed")

# Six cohort-runs of one key, listed in their true order. Run ids are deliberately not in
# alphabetical order of time, and m_b / m_c start at the same instant (the tie is broken by
# run_id: m_b first). Sizes of x are distinct so m tells which runs a baseline pooled.
RUNS = [
    # run_id,  day, good,  audit, git,   config_hash, seed, n_x, score
    ("zeta",   1, True,  None,  "aaa", None, 1, 3, 1.0),
    ("alpha",  2, None,  True,  "aaa", "h1", 1, 5, 2.0),
    ("m_b",    3, False, True,  "aaa", "h1", 1, 7, 4.0),
    ("m_c",    3, True,  False, "bbb", "h1", 1, 11, 3.0),
    ("beta",   5, None,  True,  "bbb", "h1", 1, 13, 10.0),
    ("gamma",  6, None,  None,  "bbb", "h2", 2, 17, 5.0),
]
IDS = [r[0] for r in RUNS]


def run_values(ordinal: int) -> np.ndarray:
    """x of the cohort-run at 0-based position `ordinal`: distinct from every other run's."""
    n = RUNS[ordinal][7]
    return np.round(np.random.default_rng(ordinal).normal(ordinal * 0.3, 1.0, n), 6) + ordinal * 1e-7


def write_six_runs(root: Path) -> None:
    # Written in reverse, with written_at decreasing: neither may decide the order.
    for i in reversed(range(len(RUNS))):
        run_id, day, good, audit, git, cfg, seed, _, score = RUNS[i]
        write_cohort_metrics(
            root / run_id / "REPRODUCIBILITY" / STAGE / VIEW / TARGET / "cohort=cr_0",
            run_id=run_id, run_started_at=T0 + timedelta(days=day), written_at=T0 + timedelta(days=30 - i),
            stage=STAGE, view=VIEW, target=TARGET, metrics={"score": score}, samples={"x": run_values(i)},
            good=good, audit_valid=audit, git_commit=git, config_hash=cfg, data_fingerprint="d0", seed=seed,
        )


def config(tmp: Path, name: str, baselines: str) -> metricsduck.Config:
    path = tmp / f"{name}.yaml"
    path.write_text(f"safety:\n  telemetry:\n    baselines:\n{baselines}")
    return load_config(path)


K3 = "      rolling_window_k: 3\n"
# the good column alone decides: the audit verdict, used by default, is tested on its own
GOOD_ONLY = K3 + "      last_good_uses_audit: false\n"


def fetch(store, query: str, params=None) -> list[dict]:
    rel = store.sql(query, params)
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def expected_pairs(effective_good: list, k: int = 3, kinds=KINDS) -> set:
    """{(run_id, kind, baseline_run_id)} that `baselines` must hold (0-based positions)."""
    out = set()
    for i in range(len(RUNS)):
        chosen = {
            "previous_run": [i - 1] if i else [],
            "rolling": list(range(max(0, i - k), i)),
            "last_good_run": [j for j in range(i) if effective_good[j] is True][-1:],
        }
        for kind in kinds:
            out |= {(IDS[i], kind, IDS[j]) for j in chosen[kind]}
    return out


def fingerprint_diff(i: int, j: int) -> set:
    """Fields set on both sides that differ (docs/design.md §5.5 sanity)."""
    cur = dict(zip(FIELDS, (RUNS[i][4], RUNS[i][5], "d0", RUNS[i][6]), strict=True))
    base = dict(zip(FIELDS, (RUNS[j][4], RUNS[j][5], "d0", RUNS[j][6]), strict=True))
    return {f for f in FIELDS if cur[f] is not None and base[f] is not None and cur[f] != base[f]}


def baseline_pairs(store) -> set:
    return {(r["run_id"], r["baseline_kind"], r["baseline_run_id"]) for r in fetch(store, "SELECT * FROM baselines")}


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """The six-run tree with k=3 (marks are tested on a tree of their own)."""
    tmp = tmp_path_factory.mktemp("six")
    root = tmp / "RESULTS"
    write_six_runs(root)
    store = metricsduck.connect(root, config=config(tmp, "k3", GOOD_ONLY))
    yield tmp, root, store
    store.close()


GOOD_COLUMN = [True, None, False, True, None, None]


def test_runs_are_ordered_by_start_time_then_run_id(six):
    _, _, store = six
    rows = fetch(store, "SELECT run_id, ordinal FROM cohort_runs WHERE baseline_key = ? ORDER BY ordinal", [KEY])
    assert [r["run_id"] for r in rows] == IDS          # m_b before m_c: same instant, run_id decides
    assert [r["ordinal"] for r in rows] == list(range(1, 7))


def test_previous_rolling_and_last_good_use_exactly_the_expected_runs(six):
    _, _, store = six
    rows = fetch(store, "SELECT * FROM baselines")
    # previous: the run just before (none skipped); rolling: the 3 runs just before;
    # last good: the latest earlier run whose good column is true (zeta, then m_c).
    assert baseline_pairs(store) == expected_pairs(GOOD_COLUMN)
    for r in rows:
        assert r["baseline_ordinal"] < r["ordinal"] and r["baseline_run_id"] != r["run_id"]
        assert r["current_view"] == r["baseline_view"] == VIEW
        i, j = IDS.index(r["run_id"]), IDS.index(r["baseline_run_id"])
        assert set((r["fingerprint_diff"] or "").split(",")) - {""} == fingerprint_diff(i, j)
    last_good = {r["run_id"]: r["baseline_run_id"] for r in rows if r["baseline_kind"] == "last_good_run"}
    assert last_good == {"alpha": "zeta", "m_b": "zeta", "m_c": "zeta", "beta": "m_c", "gamma": "m_c"}


def test_rolling_pools_scalars_and_samples_of_exactly_the_k_prior_runs(six):
    _, _, store = six
    scalar = {r["run_id"]: r for r in fetch(
        store, "SELECT * FROM drift_scalar WHERE baseline_kind = 'rolling' AND metric = 'score'")}
    dist = {r["run_id"]: r for r in fetch(
        store, "SELECT * FROM drift_distribution WHERE baseline_kind = 'rolling' AND distribution = 'x'")}
    for i in range(1, len(RUNS)):
        window = list(range(max(0, i - 3), i))
        scores = [RUNS[j][8] for j in window]
        s = scalar[IDS[i]]
        assert (s["baseline_runs"], s["baseline_run_id"], s["baseline_n"]) == (len(window), None, len(window))
        assert s["baseline_value"] == pytest.approx(statistics.fmean(scores), rel=1e-12)
        assert s["baseline_std"] == (pytest.approx(statistics.stdev(scores), rel=1e-12) if len(scores) > 1 else None)
        # Pooled samples: m is the sum of exactly those runs' sizes, and KS D is scipy's on them.
        pooled = np.concatenate([run_values(j) for j in window])
        d = dist[IDS[i]]
        assert (d["n"], d["m"], d["baseline_runs"]) == (RUNS[i][7], pooled.size, len(window))
        assert abs(d["ks_d"] - scipy.stats.ks_2samp(run_values(i), pooled).statistic) <= 1e-12
    # gamma pools m_b, m_c, beta: 7 + 11 + 13 values, mean score (4 + 3 + 10) / 3.
    assert dist["gamma"]["m"] == 31 and scalar["gamma"]["baseline_value"] == pytest.approx(17 / 3)


def test_first_runs_get_no_baseline_for_every_kind_and_item(six):
    _, _, store = six
    rows = fetch(store, "SELECT baseline_kind, item_kind, item, status, tier, baseline_runs FROM drift "
                        "WHERE run_id = 'zeta' ORDER BY ALL")
    assert [(r["baseline_kind"], r["item_kind"], r["item"]) for r in rows] == [
        (kind, item_kind, item) for kind in sorted(KINDS)
        for item_kind, item in (("distribution", "x"), ("metric", "score"), ("metric", "x.missing_rate"))]
    assert {(r["status"], r["tier"], r["baseline_runs"]) for r in rows} == {("NO_BASELINE", None, 0)}
    # Every later run compares on every kind (zeta is good, so last_good_run exists too).
    later = fetch(store, "SELECT DISTINCT run_id, baseline_kind, status FROM drift WHERE run_id <> 'zeta' "
                         "AND status <> 'LOW_N'")  # the distribution x has fewer values than min_samples
    assert {r["status"] for r in later} == {"COMPARED"}
    assert len(later) == 5 * 3


def test_the_drift_view_is_the_union_of_both_item_kinds(six):
    _, _, store = six
    key = ("baseline_key", "run_id", "baseline_kind")
    dist = {tuple(r[k] for k in key) + (r["distribution"],): r
            for r in fetch(store, "SELECT * FROM drift_distribution")}
    scalar = {tuple(r[k] for k in key) + (r["metric"],): r for r in fetch(store, "SELECT * FROM drift_scalar")}
    drift = fetch(store, "SELECT * FROM drift")
    assert len(drift) == len(dist) + len(scalar)
    for r in drift:
        source = (dist if r["item_kind"] == "distribution" else scalar)[tuple(r[k] for k in key) + (r["item"],)]
        for field in ("tier", "tier_rank", "status", "baseline_run_id", "baseline_runs", "sanity_status",
                      "fingerprint_diff", "current_view", "baseline_view"):
            assert r[field] == source[field], field
        if r["item_kind"] == "distribution":
            assert (r["n"], r["m"], r["psi"], r["ks_d"], r["ks_p"]) == (
                source["n"], source["m"], source["psi"], source["ks_d"], source["ks_p"])


def test_fingerprint_mismatch_is_labelled_not_dropped(six):
    _, _, store = six
    rows = fetch(store, "SELECT * FROM drift ORDER BY run_id, baseline_kind, item_kind, item")
    by = {(r["run_id"], r["baseline_kind"], r["item"]): r for r in rows}
    # m_c vs m_b: only git_commit differs.
    r = by[("m_c", "previous_run", "score")]
    assert (r["sanity_status"], r["fingerprint_diff"]) == ("FINGERPRINT_MISMATCH", "git_commit")
    assert r["tier"] is not None and r["delta"] == pytest.approx(-1.0)      # still compared
    # gamma vs beta: config_hash and seed differ; rolling pools m_b (git aaa) too.
    assert by[("gamma", "previous_run", "x")]["fingerprint_diff"] == "config_hash,seed"
    assert by[("gamma", "previous_run", "x")]["tier"] is not None
    assert by[("gamma", "rolling", "score")]["fingerprint_diff"] == "git_commit,config_hash,seed"
    # alpha vs zeta: config_hash is unset on zeta, so it does not count: no mismatch.
    assert (by[("alpha", "previous_run", "score")]["sanity_status"],
            by[("alpha", "previous_run", "score")]["fingerprint_diff"]) == ("OK", None)
    for r in rows:
        if r["status"] != "NO_BASELINE":
            i = IDS.index(r["run_id"])
            pooled = [IDS.index(b) for (c, k, b) in expected_pairs(GOOD_COLUMN)
                      if c == r["run_id"] and k == r["baseline_kind"]]
            diff = set().union(*(fingerprint_diff(i, j) for j in pooled))
            assert r["sanity_status"] == ("FINGERPRINT_MISMATCH" if diff else "OK")
            assert r["fingerprint_diff"] == (",".join(f for f in FIELDS if f in diff) or None)
        assert r["sanity_status"] != "SELF_COMPARISON"


def test_last_good_uses_audit_valid_by_default(six):
    tmp, root, _ = six
    audit = config(tmp, "audit", K3)
    with metricsduck.connect(root, config=audit) as store:
        # Effective good: the good column first (m_b stays bad though its audit is valid),
        # then audit_valid (alpha and beta become good).
        effective = [True, True, False, True, True, None]
        assert baseline_pairs(store) == expected_pairs(effective)
        rows = fetch(store, "SELECT run_id, baseline_run_id FROM drift_scalar "
                            "WHERE baseline_kind = 'last_good_run' AND metric = 'score' ORDER BY run_id")
        assert {r["run_id"]: r["baseline_run_id"] for r in rows} == {
            "zeta": None, "alpha": "zeta", "m_b": "alpha", "m_c": "alpha", "beta": "m_c", "gamma": "beta"}


def test_disabled_kinds_are_not_computed(six):
    tmp, root, _ = six
    only_rolling = config(tmp, "rolling_only", K3 + "      previous_run: false\n      last_good_run: false\n")
    with metricsduck.connect(root, config=only_rolling) as store:
        assert baseline_pairs(store) == expected_pairs(GOOD_COLUMN, kinds=("rolling",))
        kinds = fetch(store, "SELECT DISTINCT baseline_kind, status FROM drift ORDER BY ALL")
        assert [(r["baseline_kind"], r["status"]) for r in kinds] == [
            ("rolling", "COMPARED"), ("rolling", "LOW_N"), ("rolling", "NO_BASELINE")]


def test_marks_decide_last_good_and_the_latest_mark_wins(tmp_path):
    root = tmp_path / "RESULTS"
    write_six_runs(root)
    cfg = config(tmp_path, "k3", GOOD_ONLY)
    store = metricsduck.connect(root, config=cfg)
    assert baseline_pairs(store) == expected_pairs(GOOD_COLUMN)
    t = datetime(2025, 5, 1, tzinfo=timezone.utc)
    # Written out of time order on purpose: marked_at decides, not the order of writing.
    write_mark(root, "zeta", False, "leak found", marked_at=t + timedelta(hours=2))   # beats good=True
    write_mark(root, "zeta", True, "looked fine", marked_at=t + timedelta(hours=1))
    write_mark(root, "alpha", True, "first look", marked_at=t)
    write_mark(root, "alpha", False, "second look", marked_at=t + timedelta(hours=3))
    write_mark(root, "m_b", True, "rerun ok", marked_at=t)                            # beats good=False
    write_mark(root, "m_c", True, "confirmed", marked_at=t + timedelta(hours=5))
    write_mark(root, "m_c", False, "suspect", marked_at=t + timedelta(hours=4))
    write_mark(root, "beta", True, None, marked_at=t)                                  # good was unset
    effective = [False, False, True, True, True, None]
    expected = expected_pairs(effective)
    # Not before the store looks again (a snapshot); then at once.
    assert baseline_pairs(store) == expected_pairs(GOOD_COLUMN)
    store.reload()
    assert baseline_pairs(store) == expected
    store.close()
    with metricsduck.connect(root, config=cfg) as fresh:
        assert baseline_pairs(fresh) == expected
        marks = {r["run_id"]: r["good"] for r in fetch(fresh, "SELECT run_id, good FROM marks")}
        assert marks == {"zeta": False, "alpha": False, "m_b": True, "m_c": True, "beta": True}
        # alpha and m_b have no good run before them now: NO_BASELINE for last_good_run.
        rows = fetch(fresh, "SELECT run_id, status, baseline_run_id FROM drift_scalar "
                            "WHERE baseline_kind = 'last_good_run' AND metric = 'score' ORDER BY run_id")
        assert {r["run_id"]: (r["status"], r["baseline_run_id"]) for r in rows} == {
            "zeta": ("NO_BASELINE", None), "alpha": ("NO_BASELINE", None), "m_b": ("NO_BASELINE", None),
            "m_c": ("COMPARED", "m_b"), "beta": ("COMPARED", "m_c"), "gamma": ("COMPARED", "beta")}


# --- view isolation ----------------------------------------------------------------------------

ISO_TARGET = "y_will_swing_high_60m_0.05"


def write_view_runs(root: Path, with_symbol_specific: bool) -> None:
    """One target in CROSS_SECTIONAL (scores ~0.5, x ~ N(0,1)) and, optionally, in
    SYMBOL_SPECIFIC for AAPL and MSFT (scores ~100, x ~ N(50,10)): any mix-up would show."""
    for i in range(3):
        run_id = f"run{i}"
        base = root / run_id / "REPRODUCIBILITY" / STAGE
        common = dict(run_id=run_id, run_started_at=T0 + timedelta(days=i), written_at=T0 + timedelta(days=i),
                      stage=STAGE, target=ISO_TARGET, good=True, git_commit="g", seed=1)
        rng = np.random.default_rng(100 + i)
        write_cohort_metrics(base / "CROSS_SECTIONAL" / ISO_TARGET / "cohort=cs", view="CROSS_SECTIONAL",
                             metrics={"score": 0.5 + 0.01 * i, "cv_scheme_id": "kfold"},
                             samples={"x": rng.normal(0.1 * i, 1.0, 300)}, **common)
        if with_symbol_specific:
            for s, symbol in enumerate(("AAPL", "MSFT")):
                rng_s = np.random.default_rng(200 + 10 * i + s)
                write_cohort_metrics(
                    base / "SYMBOL_SPECIFIC" / ISO_TARGET / f"symbol={symbol}" / "cohort=ss",
                    view="SYMBOL_SPECIFIC", symbol=symbol,
                    metrics={"score": 100.0 + 7 * i + s, "cv_scheme_id": "walk_forward"},
                    samples={"x": rng_s.normal(50.0 + i, 10.0, 300)}, **common)


DRIFT_ORDER = "ORDER BY baseline_key, run_id, baseline_kind, item_kind, item"


def test_baselines_never_cross_views(tmp_path):
    mixed_root, cs_root = tmp_path / "mixed", tmp_path / "cs_only"
    write_view_runs(mixed_root, with_symbol_specific=True)
    write_view_runs(cs_root, with_symbol_specific=False)
    with metricsduck.connect(mixed_root) as mixed, metricsduck.connect(cs_root) as cs_only:
        pairs = fetch(mixed, "SELECT b.*, cr.view AS joined_view, cr.symbol AS joined_symbol "
                             "FROM baselines AS b JOIN cohort_runs AS cr "
                             "ON cr.baseline_key = b.baseline_key AND cr.run_id = b.baseline_run_id")
        assert pairs and all(p["current_view"] == p["baseline_view"] == p["view"] == p["joined_view"]
                             and p["joined_symbol"] == p["symbol"] for p in pairs)
        rows = fetch(mixed, f"SELECT * FROM drift {DRIFT_ORDER}")
        assert {r["view"] for r in rows} == {"CROSS_SECTIONAL", "SYMBOL_SPECIFIC"}
        for r in rows:
            if r["status"] != "NO_BASELINE":
                assert r["current_view"] == r["baseline_view"] == r["view"]
            assert r["sanity_status"] != "SELF_COMPARISON"
        # The CS drift is exactly what a tree holding only the CS part gives.
        cs_rows = [r for r in rows if r["view"] == "CROSS_SECTIONAL"]
        alone = fetch(cs_only, f"SELECT * FROM drift {DRIFT_ORDER}")
        assert len(cs_rows) == len(alone) > 0
        for a, b in zip(cs_rows, alone, strict=True):
            assert a.keys() == b.keys()
            for field, value in a.items():
                if isinstance(value, float):
                    assert b[field] == pytest.approx(value, rel=1e-12, abs=1e-15), field
                else:
                    assert b[field] == value, field
        # Each symbol compares with its own history: AAPL score 100 -> 107, MSFT 101 -> 108.
        ss = {(r["symbol"], r["run_id"]): r for r in rows
              if r["view"] == "SYMBOL_SPECIFIC" and r["item"] == "score" and r["baseline_kind"] == "previous_run"}
        assert ss[("AAPL", "run1")]["baseline_value"] == 100.0 and ss[("AAPL", "run1")]["delta"] == 7.0
        assert ss[("MSFT", "run1")]["baseline_value"] == 101.0 and ss[("MSFT", "run1")]["delta"] == 7.0
        # The text differs between views ('kfold' vs 'walk_forward') but never compares across.
        texts = [r for r in rows if r["item"] == "cv_scheme_id" and r["status"] == "COMPARED"]
        assert texts and {r["tier"] for r in texts} == {"OK"}
