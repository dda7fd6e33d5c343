"""ReproducibilityTracker: the pipeline's integration point, its layout and cohort ids."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metricsduck import InputError, ReproducibilityTracker

STARTED = datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)
WRITTEN = datetime(2025, 2, 3, 9, 5, tzinfo=timezone.utc)
TARGET = "y_will_swing_high_60m_0.05"
COHORT = {
    "N_effective": 125_000,
    "n_symbols": 5,
    "date_start": "2025-01-06",
    "date_end": "2025-03-28",
    "cohort_config": {"universe": "sp500", "min_cs": 10},
}
METRICS = {"mean_score": 0.61, "n_models": 4, "leakage_flag": False, "task_type": "binary"}


def expected_cohort_id(prefix: str, metadata: dict) -> str:
    """The pipeline's cohort id, written out independently of layout.derive_cohort_id.

    This pins the payload: SHA-256 of compact JSON with sorted keys over N_effective,
    n_symbols, date_start and date_end (as text) and cohort_config; the first 8 hex digits
    follow `<prefix>_<year>Q<quarter>_`. Changing that payload changes every cohort id in
    existing trees, so this test must fail when it does.
    """
    payload = {
        "N_effective": metadata.get("N_effective"),
        "n_symbols": metadata.get("n_symbols"),
        "date_start": str(metadata["date_start"]),
        "date_end": str(metadata.get("date_end")),
        "cohort_config": metadata.get("cohort_config") or {},
    }
    digest = hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    year, month = int(str(metadata["date_start"])[:4]), int(str(metadata["date_start"])[5:7])
    return f"{prefix}_{year}Q{(month + 2) // 3}_{digest[:8]}"


@pytest.fixture
def tracker(tmp_path: Path) -> ReproducibilityTracker:
    return ReproducibilityTracker(tmp_path / "RESULTS" / "run_a", run_id="run_a",
                                  run_started_at=STARTED)


def facts(folder: Path) -> list[dict]:
    return pq.read_table(folder / "telemetry_metrics.parquet").to_pylist()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


# --- layout and files ------------------------------------------------------------------------

def test_cross_sectional_cohorts_sit_under_the_target(tracker, tmp_path):
    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
                                 cohort_metadata=COHORT)

    cohort_id = expected_cohort_id("cr", COHORT)
    assert folder == (tmp_path / "RESULTS" / "run_a" / "REPRODUCIBILITY" / "TARGET_RANKING"
                      / "CROSS_SECTIONAL" / TARGET / f"cohort={cohort_id}")
    assert sorted(p.name for p in folder.iterdir()) == [
        "metadata.json", "metrics.json", "telemetry_metrics.json", "telemetry_metrics.parquet"]


def test_symbol_specific_cohorts_get_a_symbol_level(tracker, tmp_path):
    folder = tracker.save_cohort("TARGET_RANKING", "SYMBOL_SPECIFIC", TARGET, METRICS,
                                 symbol="AAPL", cohort_metadata=COHORT)

    assert folder == (tmp_path / "RESULTS" / "run_a" / "REPRODUCIBILITY" / "TARGET_RANKING"
                      / "SYMBOL_SPECIFIC" / TARGET / "symbol=AAPL"
                      / f"cohort={expected_cohort_id('sy', COHORT)}")
    (row, *_) = facts(folder)
    assert row["symbol"] == "AAPL"
    assert row["baseline_key"] == f"TARGET_RANKING:SYMBOL_SPECIFIC:{TARGET}:AAPL"


def test_audit_report_and_samples_are_written_only_when_given(tracker):
    folder = tracker.save_cohort(
        "TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT,
        audit_report={"is_valid": True, "checks": ["lookahead"]},
        samples={"fold_scores": [0.6, 0.62, 0.58]})

    assert sorted(p.name for p in folder.iterdir()) == [
        "audit_report.json", "metadata.json", "metrics.json", "telemetry_metrics.json",
        "telemetry_metrics.parquet", "telemetry_samples.parquet"]


def test_the_pipeline_files_hold_what_the_pipeline_gave(tracker):
    metrics = {**METRICS, "r2": float("nan")}
    audit = {"is_valid": False, "violations": [{"rule": "purge_gap", "count": 2}]}
    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, metrics,
                                 cohort_metadata={**COHORT, "seed": 7}, audit_report=audit)

    metadata = read_json(folder / "metadata.json")
    assert metadata == {**COHORT, "seed": 7, "cohort_id": expected_cohort_id("cr", COHORT),
                        "run_id": "run_a", "run_started_at": tracker.run_started_at.isoformat(),
                        "stage": "TARGET_RANKING", "view": "CROSS_SECTIONAL",
                        "target": TARGET, "symbol": None}
    assert read_json(folder / "metrics.json") == {**METRICS, "r2": "nan"}
    assert read_json(folder / "audit_report.json") == audit
    assert (folder / "metrics.json").read_bytes().endswith(b"}\n")


def test_dates_in_the_metadata_are_written_as_iso_text(tracker):
    metadata = {**COHORT, "date_start": date(2025, 1, 6), "date_end": date(2025, 3, 28),
                "created": datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)}

    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
                                 cohort_metadata=metadata)

    written = read_json(folder / "metadata.json")
    assert (written["date_start"], written["date_end"]) == ("2025-01-06", "2025-03-28")
    assert written["created"] == "2025-02-03T09:00:00+00:00"
    # A date and its ISO text describe the same cohort.
    assert written["cohort_id"] == expected_cohort_id("cr", COHORT)


def test_saving_the_same_cohort_twice_gives_the_same_bytes(tracker):
    def save() -> dict[str, bytes]:
        folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
                                     cohort_metadata=COHORT, samples={"oof": [0.1, 0.9]},
                                     written_at=WRITTEN)
        return {p.name: p.read_bytes() for p in folder.iterdir()}

    assert save() == save()


# --- cohort ids ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("view", "symbol", "prefix"),
    [("CROSS_SECTIONAL", None, "cr"), ("SYMBOL_SPECIFIC", "AAPL", "sy"), ("LOSO", "AAPL", "lo"),
     ("INDIVIDUAL", None, "in")],
)
def test_cohort_ids_are_view_prefix_quarter_and_eight_hex(tracker, view, symbol, prefix):
    folder = tracker.save_cohort("TARGET_RANKING", view, TARGET, METRICS, symbol=symbol,
                                 cohort_metadata=COHORT)

    cohort_id = folder.name.removeprefix("cohort=")
    assert re.fullmatch(rf"{prefix}_2025Q1_[0-9a-f]{{8}}", cohort_id)
    assert cohort_id == expected_cohort_id(prefix, COHORT)
    assert {row["cohort_id"] for row in facts(folder)} == {cohort_id}


@pytest.mark.parametrize(("day", "quarter"), [("2025-03-31", "2025Q1"), ("2025-04-01", "2025Q2"),
                                              ("2024-08-14", "2024Q3"), ("2024-12-31", "2024Q4")])
def test_the_quarter_comes_from_date_start(tracker, day, quarter):
    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
                                 cohort_metadata={**COHORT, "date_start": day})

    assert folder.name.startswith(f"cohort=cr_{quarter}_")


def test_the_same_cohort_definition_gets_the_same_id_in_every_run(tmp_path):
    ids = set()
    for run in ("run_a", "run_b"):
        tracker = ReproducibilityTracker(tmp_path / run, run_id=run, run_started_at=STARTED)
        reordered = {**COHORT, "cohort_config": {"min_cs": 10, "universe": "sp500"}}
        ids.add(tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                                    cohort_metadata=reordered).name)
        # Fields outside the cohort definition do not change the id.
        ids.add(tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                                    cohort_metadata={**COHORT, "git_commit": run, "seed": 3}).name)

    assert ids == {f"cohort={expected_cohort_id('cr', COHORT)}"}


@pytest.mark.parametrize(
    "change",
    [{"N_effective": 125_001}, {"n_symbols": 6}, {"date_start": "2025-01-07"},
     {"date_end": "2025-03-29"}, {"cohort_config": {"universe": "sp400", "min_cs": 10}},
     {"cohort_config": {}}],
    ids=["N_effective", "n_symbols", "date_start", "date_end", "cohort_config", "no-config"],
)
def test_a_different_cohort_definition_gets_a_different_id(tracker, change):
    base = tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT)
    changed = tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                                  cohort_metadata={**COHORT, **change})

    assert changed.name != base.name
    assert changed.name == f"cohort={expected_cohort_id('cr', {**COHORT, **change})}"


def test_a_given_cohort_id_is_used_as_is(tracker):
    folder = tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                                 cohort_metadata={"cohort_id": "cr_custom_1"})

    assert folder.name == "cohort=cr_custom_1"
    assert read_json(folder / "metadata.json")["cohort_id"] == "cr_custom_1"


def test_without_date_start_or_cohort_id_nothing_is_written(tracker):
    with pytest.raises(InputError, match="date_start"):
        tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                            cohort_metadata={"N_effective": 10})
    with pytest.raises(InputError, match="date_start"):
        tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS)
    assert not tracker.output_dir.exists()


def test_a_date_start_that_is_not_a_date_is_rejected(tracker):
    with pytest.raises(InputError, match="date_start"):
        tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                            cohort_metadata={**COHORT, "date_start": "last spring"})
    assert not tracker.output_dir.exists()


def test_an_unsafe_given_cohort_id_is_rejected(tracker):
    with pytest.raises(InputError, match="cohort_id"):
        tracker.save_cohort("TRAINING", "CROSS_SECTIONAL", TARGET, METRICS,
                            cohort_metadata={"cohort_id": "../../elsewhere"})
    assert not tracker.output_dir.exists()


# --- one run, its identity and verdicts --------------------------------------------------------

def test_every_cohort_of_a_tracker_shares_its_run(tmp_path):
    new_york = timezone(timedelta(hours=-5))
    tracker = ReproducibilityTracker(tmp_path / "out",
                                     run_started_at=datetime(2025, 2, 3, 4, 0, 0, 17, tzinfo=new_york))
    folders = [
        tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT),
        tracker.save_cohort("TARGET_RANKING", "SYMBOL_SPECIFIC", TARGET, METRICS, symbol="AAPL",
                            cohort_metadata=COHORT),
        tracker.save_cohort("FEATURE_SELECTION", "CROSS_SECTIONAL", "y_other", METRICS,
                            cohort_metadata=COHORT),
    ]

    # The default run id is the UTC start time, to the microsecond.
    assert tracker.run_id == "2025-02-03_09-00-00_000017"
    rows = [row for folder in folders for row in facts(folder)]
    assert {row["run_id"] for row in rows} == {"2025-02-03_09-00-00_000017"}
    assert {row["run_started_at"] for row in rows} == {
        datetime(2025, 2, 3, 9, 0, 0, 17, tzinfo=timezone.utc)}
    assert {read_json(folder / "metadata.json")["run_id"] for folder in folders} == {tracker.run_id}


def test_fingerprints_and_verdicts_come_from_metadata_and_audit(tracker):
    folder = tracker.save_cohort(
        "TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
        cohort_metadata={**COHORT, "git_commit": "abc123", "config_hash": "cfg9",
                         "data_fingerprint": "data7", "seed": 42, "good": False},
        audit_report={"is_valid": True})

    for row in facts(folder):
        assert (row["git_commit"], row["config_hash"], row["data_fingerprint"], row["seed"]) == (
            "abc123", "cfg9", "data7", 42)
        assert row["good"] is False
        assert row["audit_valid"] is True


def test_verdicts_are_null_when_the_pipeline_has_none(tracker):
    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS,
                                 cohort_metadata=COHORT, audit_report={"checks": []})

    for row in facts(folder):
        assert row["good"] is None and row["audit_valid"] is None and row["seed"] is None


@pytest.mark.parametrize(
    "bad",
    [{"metrics": {**METRICS, "fold_scores": [0.1, 0.2]}},
     {"samples": {"oof": "0.1 0.2"}},
     {"audit_report": {"is_valid": "yes"}},
     {"cohort_metadata": {**COHORT, "seed": "42"}},
     {"symbol": "AAPL"}],
    ids=["list-metric", "text-samples", "audit-not-bool", "seed-text", "symbol-in-cs"],
)
def test_bad_input_is_rejected_before_any_file_is_written(tracker, bad):
    kwargs = {"metrics": METRICS, "cohort_metadata": COHORT, **bad}
    metrics = kwargs.pop("metrics")

    with pytest.raises(InputError):
        tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, metrics, **kwargs)

    assert not tracker.output_dir.exists()


def test_a_tracker_refuses_a_naive_start_time_or_an_unsafe_run_id(tmp_path):
    with pytest.raises(InputError, match="run_started_at"):
        ReproducibilityTracker(tmp_path, run_started_at=datetime(2025, 2, 3, 9, 0))
    with pytest.raises(InputError, match="run_id"):
        ReproducibilityTracker(tmp_path, run_id="../other_run", run_started_at=STARTED)


# --- one run per folder, and the tree the rollups read ------------------------------------------

def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_tracker_given_the_tree_refuses_to_write_a_second_run_over_the_first(tmp_path):
    """The mistake: ReproducibilityTracker("RESULTS") for every run puts them all in the same
    cohort folders; the second run is refused, naming the folder, and the first is intact."""
    first = ReproducibilityTracker(tmp_path, run_id="run_1", run_started_at=STARTED)
    folder = first.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT,
                               samples={"oof": [0.1, 0.2]}, audit_report={"is_valid": True}, written_at=WRITTEN)
    before = _files(tmp_path)
    second = ReproducibilityTracker(tmp_path, run_id="run_2", run_started_at=STARTED + timedelta(days=1))
    with pytest.raises(InputError) as caught:
        second.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, {**METRICS, "mean_score": 0.7},
                           cohort_metadata=COHORT, audit_report={"is_valid": False})
    message = str(caught.value)
    assert message.startswith(str(folder)) and "run run_1, not run_2" in message
    assert "folder of its own" in message and "overwrite=True" in message
    assert _files(tmp_path) == before  # nothing written: not a sidecar, not a pipeline file
    # the same run saving its cohort again is not a second run
    first.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT,
                      samples={"oof": [0.1, 0.2]}, audit_report={"is_valid": True}, written_at=WRITTEN)
    assert _files(tmp_path) == before
    # a rerun that means to replace it says so
    second.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, {**METRICS, "mean_score": 0.7},
                       cohort_metadata=COHORT, overwrite=True)
    held = pq.read_table(folder / "telemetry_metrics.parquet", columns=["run_id"]).column("run_id").to_pylist()
    assert set(held) == {"run_2"}


def test_an_unreadable_sidecar_in_the_folder_is_not_replaced_silently(tmp_path):
    tracker = ReproducibilityTracker(tmp_path / "run_1", run_id="run_1", run_started_at=STARTED)
    folder = tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT)
    (folder / "telemetry_metrics.parquet").write_bytes(b"PAR1 half a file")
    with pytest.raises(InputError, match=r"cannot be read .*overwrite=True"):
        tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT)
    assert (folder / "telemetry_metrics.parquet").read_bytes() == b"PAR1 half a file"


def test_the_rollups_never_read_a_folder_nobody_named_as_the_tree(tmp_path):
    """Given the tree itself as its folder, a tracker would take the tree's parent (here a
    project folder with code beside RESULTS) for the tree: refused, nothing written there."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    tracker = ReproducibilityTracker(project / "RESULTS", run_id="run_1", run_started_at=STARTED)
    tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT)
    with pytest.raises(InputError, match=r"also holds src, which are not run folders.*root='RESULTS'"):
        tracker.generate_telemetry_rollups("TARGET_RANKING")
    assert not (project / ".metricsduck").exists()
    # naming the tree reads exactly it
    named = ReproducibilityTracker(project / "RESULTS" / "run_1", run_id="run_1", run_started_at=STARTED,
                                   root=project / "RESULTS")
    assert named.tree() == project / "RESULTS"
    with pytest.raises(InputError, match="is not inside root"):
        ReproducibilityTracker(project / "elsewhere", root=project / "RESULTS")


def test_a_run_folder_inside_the_tree_needs_no_root(tmp_path):
    for i in (1, 2):
        tracker = ReproducibilityTracker(tmp_path / "RESULTS" / f"run_{i}", run_id=f"run_{i}",
                                         run_started_at=STARTED + timedelta(days=i))
        tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", TARGET, METRICS, cohort_metadata=COHORT)
    assert tracker.tree() == (tmp_path / "RESULTS").resolve()
    assert tracker.generate_telemetry_rollups("TARGET_RANKING").runs == ["run_2"]
