"""Drift on the demo tree and the drift files `refresh` writes beside each cohort.

The demo documents where it injected drift; these tests hold the views to it: ALERT exactly
there, OK everywhere else, and files whose Parquet and JSON both carry the view's rows.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck.demo import ALERTING

LATEST = "demo_run_06"


def where(injection) -> tuple:
    return (injection.view, injection.target, injection.symbol)


def rows(store, query: str, params=None) -> list[dict]:
    relation = store.sql(query, params)
    return [dict(zip(relation.columns, r, strict=True)) for r in relation.fetchall()]


def test_injected_drift_is_alert_exactly_where_the_demo_put_it(demo_store) -> None:
    store, injections, _ = demo_store
    expected = {
        where(i) + (item,)
        for i in injections if i.kind in ALERTING for item in i.items
    }
    assert len(expected) == 4  # mean_score, composite_score; oof_predictions; regime
    for kind in ("previous_run", "rolling", "last_good_run"):
        alerts = rows(store, "SELECT view, target, symbol, item, run_id FROM drift "
                             "WHERE tier = 'ALERT' AND baseline_kind = ?", [kind])
        assert {(r["view"], r["target"], r["symbol"], r["item"]) for r in alerts} == expected, kind
        assert {r["run_id"] for r in alerts} == {LATEST}


def test_the_injected_improvement_is_improved_not_an_alert(demo_store) -> None:
    store, injections, _ = demo_store
    improvement = next(i for i in injections if i.kind == "improvement")
    found = rows(store, "SELECT item, baseline_kind, status, tier, rel_delta, good_direction FROM drift "
                        "WHERE run_id = ? AND view = ? AND target = ? AND item_kind = 'metric' "
                        "AND list_contains(?, item)",
                 [LATEST, improvement.view, improvement.target, list(improvement.items)])
    assert {(r["item"], r["baseline_kind"]) for r in found} == {
        (item, kind) for item in improvement.items for kind in ("previous_run", "rolling", "last_good_run")}
    for r in found:  # a 30% gain: ALERT-sized, in the good direction
        assert (r["status"], r["tier"], r["good_direction"]) == ("IMPROVED", "OK", "higher_is_better"), r
        assert 0.25 < r["rel_delta"] < 0.35, r


def test_stable_cohorts_stay_ok(demo_store) -> None:
    store, injections, _ = demo_store
    injected = {where(i) for i in injections if i.kind in ALERTING}
    trend = next(i for i in injections if i.kind == "trend")
    not_ok = rows(store, "SELECT view, target, symbol, item, baseline_kind, tier FROM drift "
                         "WHERE tier <> 'OK'")
    for row in not_ok:
        place = (row["view"], row["target"], row["symbol"])
        if place in injected:
            continue
        # The slow decline adds up against the rolling mean of earlier runs: WARN at most.
        assert place == where(trend) and row["item"] in trend.items, row
        assert row["baseline_kind"] == "rolling" and row["tier"] == "WARN", row


def test_last_good_run_skips_the_bad_run(demo_store) -> None:
    store, injections, _ = demo_store
    bad = next(i for i in injections if i.kind == "bad_run").run_id
    assert bad == "demo_run_04"
    pairs = rows(store, "SELECT DISTINCT run_id, baseline_run_id FROM baselines "
                        "WHERE baseline_kind = 'last_good_run' ORDER BY run_id")
    assert {(r["run_id"], r["baseline_run_id"]) for r in pairs} == {
        ("demo_run_02", "demo_run_01"), ("demo_run_03", "demo_run_02"),
        ("demo_run_04", "demo_run_03"), ("demo_run_05", "demo_run_03"),
        ("demo_run_06", "demo_run_05"),
    }


def test_fingerprint_change_is_labelled_not_dropped(demo_store) -> None:
    store, injections, _ = demo_store
    change = next(i for i in injections if i.kind == "fingerprint").run_id
    labelled = rows(store, "SELECT DISTINCT run_id, baseline_kind, sanity_status, fingerprint_diff "
                           "FROM drift WHERE sanity_status <> 'OK'")
    previous = [r for r in labelled if r["baseline_kind"] == "previous_run"]
    assert {r["run_id"] for r in previous} == {change}
    assert {(r["sanity_status"], r["fingerprint_diff"]) for r in labelled} == {
        ("FINGERPRINT_MISMATCH", "git_commit")}
    counted = rows(store, "SELECT count(*) AS n, count(tier) AS tiered FROM drift "
                          "WHERE run_id = ? AND baseline_kind = 'previous_run'", [change])[0]
    assert counted["n"] > 0 and counted["tiered"] == counted["n"]


def test_no_row_pairs_two_views(demo_store) -> None:
    store, _, _ = demo_store
    assert rows(store, "SELECT count(*) AS n FROM drift WHERE baseline_view <> current_view "
                       "OR current_view <> view")[0]["n"] == 0
    assert rows(store, "SELECT count(*) AS n FROM baselines WHERE baseline_view <> current_view")[0]["n"] == 0


def test_refresh_writes_the_view_rows_beside_every_cohort(demo_store) -> None:
    store, _, summary = demo_store
    cohorts = rows(store, "SELECT baseline_key, run_id, source_file FROM cohort_runs")
    assert summary.cohorts == len(cohorts) == 360 and summary.failed == []
    with_trend = rows(store, "SELECT count(DISTINCT (baseline_key, run_id)) AS n FROM trends")[0]["n"]
    assert with_trend == 120  # runs 5 and 6: trend.min_runs is 5
    # drift and trend files per cohort-run, view (2) and stage rollups per run (6)
    assert summary.written == 2 * len(cohorts) + 2 * with_trend + 6 * (2 + 1) * 2
    for cohort in cohorts[::37]:  # a spread of cohorts; each check reads two files
        folder = Path(cohort["source_file"]).parent
        table = pq.read_table(folder / "telemetry_drift.parquet")
        assert table.schema.metadata[b"metricsduck.schema"] == b"metricsduck/drift/v2"
        expected = rows(store, "SELECT * FROM drift WHERE baseline_key = ? AND run_id = ? "
                               "ORDER BY baseline_kind, item_kind, item",
                        [cohort["baseline_key"], cohort["run_id"]])
        assert table.to_pylist() == expected
        mirror = json.loads((folder / "telemetry_drift.json").read_text("utf-8"))
        assert mirror["schema"] == "metricsduck/drift/v2"
        assert mirror["identity"]["run_id"] == cohort["run_id"]
        for row in expected:
            section = mirror["metrics" if row["item_kind"] == "metric" else "distributions"]
            entry = section[row["item"]][row["baseline_kind"]]
            for key, value in entry.items():
                assert value == row[key] or (value is None and row[key] is None), (key, row)
            base = mirror["baselines"][row["baseline_kind"]]
            assert base["baseline_run_id"] == row["baseline_run_id"]
            assert base["sanity_status"] == row["sanity_status"]
        worst = max((r["tier_rank"] for r in expected if r["tier_rank"] is not None), default=None)
        assert mirror["summary"]["worst_tier"] == (None if worst is None else ["OK", "WARN", "ALERT"][worst])


def test_the_json_mirror_has_no_nan_and_ends_with_a_newline(demo_store) -> None:
    store, _, _ = demo_store
    folder = Path(rows(store, "SELECT source_file FROM cohort_runs LIMIT 1")[0]["source_file"]).parent
    text = (folder / "telemetry_drift.json").read_text("utf-8")
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text

    def finite(node) -> bool:
        if isinstance(node, dict):
            return all(finite(v) for v in node.values())
        if isinstance(node, list):
            return all(finite(v) for v in node)
        return not isinstance(node, float) or math.isfinite(node)

    assert finite(json.loads(text))


def test_second_refresh_writes_nothing(demo_store) -> None:
    store, _, _ = demo_store
    again = store.refresh()
    assert again.runs == [] and again.written == 0


def test_same_tree_gives_byte_identical_drift_files(tmp_path: Path, demo_trees) -> None:
    outputs = []
    for name in ("a", "b"):  # the same sidecars at two paths, each refreshed on its own
        root = demo_trees.copy(tmp_path / name, runs=2, seed=3).root
        with metricsduck.connect(root) as store:
            store.refresh()
        outputs.append({str(p.relative_to(root)): p.read_bytes()
                        for p in sorted(root.rglob("telemetry_drift.*"))})
    assert len(outputs[0]) == 2 * 120 and outputs[0] == outputs[1]


def test_refresh_of_a_new_run_only_touches_that_run(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 5, tzinfo=timezone.utc)

    def add_run(index: int) -> None:
        tracker = metricsduck.ReproducibilityTracker(
            tmp_path / f"run_{index}", run_id=f"run_{index}", run_started_at=start + timedelta(days=index))
        for target in ("t1", "t2"):
            tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", target, {"score": 0.5 + index / 100},
                                cohort_metadata={"cohort_id": "c"}, samples={"p": [index, 1, 2, 3]})

    add_run(1)
    add_run(2)
    with metricsduck.connect(tmp_path) as store:
        assert store.refresh().runs == ["run_1", "run_2"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("telemetry_drift.*")}
    add_run(3)
    with metricsduck.connect(tmp_path) as store:
        summary = store.refresh()
    assert summary.runs == ["run_3"] and summary.written == 4 + 4  # drift + view/stage rollups
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.slow
def test_refreshing_run_by_run_gives_the_same_bytes_as_all_runs_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_trees) -> None:
    """Large trees are refreshed in batches of runs, each computed with the views narrowed to
    its runs' pairs and samples; that must change no byte of any output, nor the drift
    rows the cache keeps."""
    from metricsduck import compute as compute_module

    outputs, cached = {}, {}
    source = demo_trees.shared(runs=4, seed=5).root  # only copied from
    for name, batch in (("together", compute_module.BATCH_COMPARISONS), ("one_by_one", 1)):
        root = tmp_path / name
        shutil.copytree(source, root)  # the same sidecars, written once
        monkeypatch.setattr(compute_module, "BATCH_COMPARISONS", batch)
        with metricsduck.connect(root) as store:
            assert store.refresh(all_runs=True).failed == []
        outputs[name] = {str(p.relative_to(root)): p.read_bytes()
                         for p in sorted(root.rglob("telemetry_*")) if ".metricsduck" not in p.parts}
        with metricsduck.connect(root) as store:
            assert store.status()[-1] == ("cache", "cohort-runs to refresh", "0")
            cached[name] = store.sql("SELECT * FROM drift ORDER BY ALL").fetchall()
    assert len(outputs["together"]) > 4 * 120 and outputs["one_by_one"] == outputs["together"]
    assert cached["one_by_one"] == cached["together"]
