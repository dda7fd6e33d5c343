"""write_cohort_metrics: the sidecar schemas of docs/design.md §3, mirrors, determinism, atomicity."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricsduck import InputError, StorageError, load_config, write_cohort_metrics
from metricsduck.files import write_atomic

METRICS_COLUMNS = [
    ("schema_version", pa.int32()),
    ("run_id", pa.string()),
    ("run_started_at", pa.timestamp("us", tz="UTC")),
    ("written_at", pa.timestamp("us", tz="UTC")),
    ("stage", pa.string()),
    ("view", pa.string()),
    ("target", pa.string()),
    ("symbol", pa.string()),
    ("cohort_id", pa.string()),
    ("baseline_key", pa.string()),
    ("git_commit", pa.string()),
    ("config_hash", pa.string()),
    ("data_fingerprint", pa.string()),
    ("seed", pa.int64()),
    ("good", pa.bool_()),
    ("audit_valid", pa.bool_()),
    ("metric", pa.string()),
    ("kind", pa.string()),
    ("value", pa.float64()),
    ("value_text", pa.string()),
]
SAMPLES_COLUMNS = METRICS_COLUMNS[:10] + [
    ("distribution", pa.string()),
    ("n_total", pa.int64()),
    ("n_missing", pa.int64()),
    ("value", pa.float64()),
    ("value_text", pa.string()),
]
UNSAFE_NAMES = ["a/b", "a\\b", "..", "x..y", ".", "", "a\x00b", "a\nb", "n" * 201, "\u202e"]


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def by_metric(path: Path) -> dict[str, dict]:
    return {row["metric"]: row for row in read_rows(path)}


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- round trip ------------------------------------------------------------------------------

def test_metrics_sidecar_has_the_v1_columns_in_order_with_their_types(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"mean_score": 0.5})

    schema = pq.read_schema(cohort / "telemetry_metrics.parquet")
    assert [(f.name, f.type) for f in schema] == METRICS_COLUMNS


def test_write_returns_the_paths_it_wrote(cohort, identity):
    paths = write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"d": [1.0]})

    assert sorted(p.name for p in paths) == [
        "telemetry_metrics.json", "telemetry_metrics.parquet", "telemetry_samples.parquet"]
    assert all(p.parent == cohort and p.is_file() for p in paths)
    assert files_in(cohort) == sorted(p.name for p in paths)


def test_identity_columns_round_trip(cohort, identity):
    write_cohort_metrics(
        cohort, **identity, metrics={"mean_score": 0.5, "n_models": 3},
        git_commit="abc123", config_hash="cfg9", data_fingerprint="data7", seed=42,
        good=True, audit_valid=False,
    )

    rows = read_rows(cohort / "telemetry_metrics.parquet")
    assert len(rows) == 2
    for row in rows:
        assert row["schema_version"] == 1
        assert row["run_id"] == "run_2025-02-03"
        assert row["run_started_at"] == datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)
        assert row["written_at"] == datetime(2025, 2, 3, 9, 30, 15, 123456, tzinfo=timezone.utc)
        assert (row["stage"], row["view"], row["target"]) == (
            "TARGET_RANKING", "CROSS_SECTIONAL", "y_will_swing_high_60m_0.05")
        assert row["symbol"] is None
        assert row["cohort_id"] == "cr_2025Q1_0a1b2c3d"  # from the cohort=<id> folder
        assert row["baseline_key"] == "TARGET_RANKING:CROSS_SECTIONAL:y_will_swing_high_60m_0.05"
        assert (row["git_commit"], row["config_hash"], row["data_fingerprint"]) == (
            "abc123", "cfg9", "data7")
        assert row["seed"] == 42
        assert row["good"] is True and row["audit_valid"] is False


def test_optional_identity_columns_default_to_null(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0})

    (row,) = read_rows(cohort / "telemetry_metrics.parquet")
    for column in ("symbol", "git_commit", "config_hash", "data_fingerprint", "seed", "good",
                   "audit_valid"):
        assert row[column] is None, column


def test_symbol_specific_rows_carry_the_symbol_in_column_and_baseline_key(tmp_path, identity):
    folder = tmp_path / "TARGET_RANKING" / "SYMBOL_SPECIFIC" / "t" / "symbol=AAPL" / "cohort=sy_2025Q1_1"
    write_cohort_metrics(folder, **{**identity, "view": "SYMBOL_SPECIFIC", "target": "t"},
                         symbol="AAPL", metrics={"a": 1.0}, samples={"d": [1.0]})

    for name in ("telemetry_metrics.parquet", "telemetry_samples.parquet"):
        (row,) = read_rows(folder / name)
        assert row["symbol"] == "AAPL"
        assert row["baseline_key"] == "TARGET_RANKING:SYMBOL_SPECIFIC:t:AAPL"
        assert row["cohort_id"] == "sy_2025Q1_1"


def test_explicit_cohort_id_is_used_and_needed_outside_a_cohort_folder(tmp_path, identity):
    write_cohort_metrics(tmp_path / "cohort=from_folder", **identity, cohort_id="given",
                         metrics={"a": 1.0})
    (row,) = read_rows(tmp_path / "cohort=from_folder" / "telemetry_metrics.parquet")
    assert row["cohort_id"] == "given"

    with pytest.raises(InputError, match="cohort_id"):
        write_cohort_metrics(tmp_path / "plain", **identity, metrics={"a": 1.0})
    assert not (tmp_path / "plain").exists()


def test_timestamps_are_converted_to_utc_from_another_timezone(cohort, identity):
    new_york_winter = timezone(timedelta(hours=-5))
    tokyo = timezone(timedelta(hours=9))
    write_cohort_metrics(
        cohort, **{**identity,
                   "run_started_at": datetime(2025, 2, 3, 4, 0, tzinfo=new_york_winter),
                   "written_at": datetime(2025, 2, 3, 18, 30, 0, 250, tzinfo=tokyo)},
        metrics={"a": 1.0},
    )

    table = pq.read_table(cohort / "telemetry_metrics.parquet")
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    micros = lambda dt: (dt - epoch) // timedelta(microseconds=1)  # noqa: E731
    assert table.column("run_started_at").cast(pa.int64()).to_pylist() == [
        micros(datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc))]
    assert table.column("written_at").cast(pa.int64()).to_pylist() == [
        micros(datetime(2025, 2, 3, 9, 30, 0, 250, tzinfo=timezone.utc))]


def test_iso_strings_with_an_offset_are_accepted_as_timestamps(cohort, identity):
    write_cohort_metrics(cohort, **{**identity, "run_started_at": "2025-02-03T10:00:00+01:00",
                                    "written_at": "2025-02-03T09:30:00Z"}, metrics={"a": 1.0})

    (row,) = read_rows(cohort / "telemetry_metrics.parquet")
    assert row["run_started_at"] == datetime(2025, 2, 3, 9, 0, tzinfo=timezone.utc)
    assert row["written_at"] == datetime(2025, 2, 3, 9, 30, tzinfo=timezone.utc)


def test_metric_values_are_stored_by_kind(cohort, identity):
    metrics = {
        "float": 0.125,
        "int": 7,
        "negative_zero": -0.0,
        "huge": 1e308,
        "tiny": 5e-324,
        "true": True,
        "false": False,
        "text": "regression",
        "empty_text": "",
        "none": None,
        "nan": float("nan"),
        "inf": float("inf"),
        "minus_inf": float("-inf"),
        "np_float32": np.float32(0.1),
        "np_int64": np.int64(-(2**40)),
        "np_bool": np.bool_(True),
        "np_nan": np.float64("nan"),
    }
    write_cohort_metrics(cohort, **identity, metrics=metrics)

    stored = {m: (r["kind"], r["value"], r["value_text"])
              for m, r in by_metric(cohort / "telemetry_metrics.parquet").items()}
    assert stored == {
        "float": ("number", 0.125, None),
        "int": ("number", 7.0, None),
        "negative_zero": ("number", 0.0, None),
        "huge": ("number", 1e308, None),
        "tiny": ("number", 5e-324, None),
        "true": ("bool", 1.0, None),
        "false": ("bool", 0.0, None),
        "text": ("text", None, "regression"),
        "empty_text": ("text", None, ""),
        "none": ("number", None, None),
        "nan": ("number", None, "nan"),
        "inf": ("number", None, "inf"),
        "minus_inf": ("number", None, "-inf"),
        "np_float32": ("number", float(np.float32(0.1)), None),  # the float32's exact double
        "np_int64": ("number", float(-(2**40)), None),
        "np_bool": ("bool", 1.0, None),
        "np_nan": ("number", None, "nan"),
    }
    assert math.copysign(1.0, stored["negative_zero"][1]) == -1.0  # the sign survives


def test_nothing_is_stored_as_the_string_none(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"none": None, "nan": float("nan")})

    table = pq.read_table(cohort / "telemetry_metrics.parquet")
    texts = table.column("value_text").to_pylist() + table.column("symbol").to_pylist()
    assert "None" not in texts
    assert b"None" not in (cohort / "telemetry_metrics.json").read_bytes()


def test_metric_rows_are_sorted_by_name(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"zeta": 1, "alpha": 2, "mid": 3})

    assert pq.read_table(cohort / "telemetry_metrics.parquet").column("metric").to_pylist() == [
        "alpha", "mid", "zeta"]


# --- samples ---------------------------------------------------------------------------------

def test_samples_sidecar_has_its_columns_in_order_with_their_types(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"fold_scores": [0.1]})

    schema = pq.read_schema(cohort / "telemetry_samples.parquet")
    assert [(f.name, f.type) for f in schema] == SAMPLES_COLUMNS


def test_samples_drop_and_count_missing_values(cohort, identity):
    write_cohort_metrics(
        cohort, **identity, metrics={"a": 1.0},
        samples={"oof": [0.5, None, float("nan"), 1.5, float("inf"), float("-inf"), -2.0],
                 "fold_scores": np.array([0.25, 0.75])},
    )

    rows = read_rows(cohort / "telemetry_samples.parquet")
    oof = [r for r in rows if r["distribution"] == "oof"]
    assert [r["value"] for r in oof] == [0.5, 1.5, -2.0]
    assert {(r["n_total"], r["n_missing"]) for r in oof} == {(7, 4)}
    folds = [r for r in rows if r["distribution"] == "fold_scores"]
    assert [r["value"] for r in folds] == [0.25, 0.75]
    assert {(r["n_total"], r["n_missing"]) for r in folds} == {(2, 0)}
    assert {r["baseline_key"] for r in rows} == {
        "TARGET_RANKING:CROSS_SECTIONAL:y_will_swing_high_60m_0.05"}


def test_a_distribution_without_finite_values_keeps_one_null_row_with_its_counts(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0},
                         samples={"broken": [float("nan"), None, float("inf")], "empty": []})

    rows = read_rows(cohort / "telemetry_samples.parquet")
    assert [(r["distribution"], r["n_total"], r["n_missing"], r["value"]) for r in rows] == [
        ("broken", 3, 3, None),
        ("empty", 0, 0, None),
    ]


def test_text_samples_are_stored_as_categories_with_none_missing(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0},
                         samples={"predicted": ["up", None, "down", "up", float("nan")],
                                  "regime": np.array(["calm", "storm"]), "oof": [0.5]})

    rows = read_rows(cohort / "telemetry_samples.parquet")
    assert [(r["distribution"], r["value"], r["value_text"], r["n_total"], r["n_missing"]) for r in rows] == [
        ("oof", 0.5, None, 1, 0),
        ("predicted", None, "up", 5, 2), ("predicted", None, "down", 5, 2), ("predicted", None, "up", 5, 2),
        ("regime", None, "calm", 2, 0), ("regime", None, "storm", 2, 0),
    ]


def test_text_samples_above_the_limit_are_subsampled_deterministically(tmp_path, identity, limit_seven):
    offered = [f"class_{i % 5}" for i in range(40)]
    folders = [tmp_path / name / "cohort=c" for name in ("one", "two")]
    for folder in folders:
        write_cohort_metrics(folder, **identity, metrics={"a": 1.0}, samples={"cls": offered}, config=limit_seven)
    kept = [[r["value_text"] for r in read_rows(f / "telemetry_samples.parquet")] for f in folders]
    assert kept[0] == kept[1] and len(kept[0]) == 7
    assert Counter(kept[0]) <= Counter(offered)


@pytest.fixture
def limit_seven(make_config):
    return make_config("safety:\n  telemetry:\n    samples:\n      max_per_distribution: 7\n")


def kept_values(folder: Path, distribution: str) -> list[float]:
    return [r["value"] for r in read_rows(folder / "telemetry_samples.parquet")
            if r["distribution"] == distribution]


def test_samples_above_the_limit_are_subsampled_to_exactly_the_limit(cohort, identity, limit_seven):
    offered = [i * 1.5 for i in range(50)] + [float("nan")] * 3
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"oof": offered},
                         config=limit_seven)

    rows = read_rows(cohort / "telemetry_samples.parquet")
    assert len(rows) == 7
    kept = [r["value"] for r in rows]
    assert len(set(kept)) == 7  # drawn without replacement
    assert set(kept) <= set(offered[:50])
    assert {(r["n_total"], r["n_missing"]) for r in rows} == {(53, 3)}


def test_subsampling_is_deterministic_but_differs_between_distributions(tmp_path, identity, limit_seven):
    offered = [float(i) for i in range(100)]
    first, second = tmp_path / "one" / "cohort=c", tmp_path / "two" / "cohort=c"
    for folder in (first, second):
        write_cohort_metrics(folder, **identity, metrics={"a": 1.0},
                             samples={"oof": offered, "fold_scores": offered}, config=limit_seven)

    assert kept_values(first, "oof") == kept_values(second, "oof")
    assert (first / "telemetry_samples.parquet").read_bytes() == (
        second / "telemetry_samples.parquet").read_bytes()
    assert kept_values(first, "oof") != kept_values(first, "fold_scores")


def test_samples_at_the_limit_are_all_kept(cohort, identity, limit_seven):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0},
                         samples={"oof": [3.0, 1.0, 2.0, 5.0, 4.0, 7.0, 6.0]}, config=limit_seven)

    assert kept_values(cohort, "oof") == [3.0, 1.0, 2.0, 5.0, 4.0, 7.0, 6.0]


def test_no_samples_file_without_samples(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0})

    assert files_in(cohort) == ["telemetry_metrics.json", "telemetry_metrics.parquet"]


def test_the_file_prefix_comes_from_the_config(cohort, identity, make_config):
    config = make_config("safety:\n  telemetry:\n    files:\n      prefix: metrics\n")
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"d": [1.0]}, config=config)

    assert files_in(cohort) == ["metrics_metrics.json", "metrics_metrics.parquet",
                                "metrics_samples.parquet"]


# --- the JSON mirror ---------------------------------------------------------------------------

def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def rows_from_mirror(document: dict) -> list[dict]:
    """Rebuild the Parquet rows from the mirror alone."""
    identity = dict(document["identity"])
    identity["run_started_at"] = _utc(identity["run_started_at"])
    identity["written_at"] = _utc(identity["written_at"])
    return [
        {"schema_version": document["schema_version"], **identity, **document["fingerprints"],
         **document["verdict"], "metric": metric, **stored}
        for metric, stored in document["metrics"].items()
    ]


def reject_constant(token: str):
    raise AssertionError(f"non-standard JSON token {token}")


def test_the_mirror_reconstructs_the_parquet_rows_exactly(tmp_path, identity):
    folder = tmp_path / "SYMBOL_SPECIFIC" / "symbol=MSFT" / "cohort=sy_2025Q1_abc"
    write_cohort_metrics(
        folder, **{**identity, "view": "SYMBOL_SPECIFIC"}, symbol="MSFT",
        metrics={"mean_score": 0.61, "n_models": 4, "leakage_flag": False, "task_type": "binary",
                 "none": None, "nan": float("nan"), "inf": float("inf"), "neg_zero": -0.0},
        git_commit="abc", seed=7, good=False,
    )

    raw = (folder / "telemetry_metrics.json").read_bytes()
    document = json.loads(raw, parse_constant=reject_constant)
    columns = [name for name, _ in METRICS_COLUMNS]
    parquet_rows = read_rows(folder / "telemetry_metrics.parquet")
    mirror_rows = rows_from_mirror(document)
    assert len(mirror_rows) == 8
    assert [{c: r[c] for c in columns} for r in mirror_rows] == parquet_rows
    assert all(set(r) == set(columns) for r in mirror_rows)
    assert document["schema"] == "metricsduck/metrics/v1"
    assert raw == (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n")
    for token in (b"NaN", b"Infinity"):
        assert token not in raw


def test_the_mirror_keeps_non_ascii_text_as_utf8(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"note": "größe ✓"})

    raw = (cohort / "telemetry_metrics.json").read_bytes()
    assert "größe ✓".encode() in raw
    assert json.loads(raw)["metrics"]["note"]["value_text"] == "größe ✓"


# --- determinism -----------------------------------------------------------------------------

def test_the_same_input_gives_the_same_bytes(tmp_path, identity):
    def write(folder: Path) -> dict[str, bytes]:
        write_cohort_metrics(folder, **identity, metrics={"b": 2.0, "a": "x", "c": None},
                             samples={"oof": [0.3, 0.1, float("nan")], "folds": [1.0]}, seed=3)
        return {p.name: p.read_bytes() for p in folder.iterdir()}

    first = write(tmp_path / "one" / "cohort=c")
    second = write(tmp_path / "two" / "cohort=c")
    assert len(first) == 3
    assert first == second


def test_metric_order_in_the_input_does_not_change_the_bytes(tmp_path, identity):
    one, two = tmp_path / "one" / "cohort=c", tmp_path / "two" / "cohort=c"
    write_cohort_metrics(one, **identity, metrics={"a": 1.0, "b": 2.0})
    write_cohort_metrics(two, **identity, metrics={"b": 2.0, "a": 1.0})

    for name in ("telemetry_metrics.parquet", "telemetry_metrics.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_rewriting_unchanged_content_leaves_the_files_untouched(cohort, identity):
    kwargs = {**identity, "metrics": {"a": 1.0}, "samples": {"d": [1.0, 2.0]}}
    paths = write_cohort_metrics(cohort, **kwargs)
    past = 1_600_000_000_000_000_000
    for path in paths:
        os.utime(path, ns=(past, past))

    write_cohort_metrics(cohort, **kwargs)

    assert [p.stat().st_mtime_ns for p in paths] == [past] * len(paths)


def test_write_atomic_reports_whether_it_wrote(tmp_path):
    path = tmp_path / "nested" / "file.bin"

    assert write_atomic(path, b"one") is True
    assert write_atomic(path, b"one") is False
    assert write_atomic(path, b"two") is True
    assert path.read_bytes() == b"two"
    assert files_in(path.parent) == ["file.bin"]


# --- atomicity -------------------------------------------------------------------------------

def hidden_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


def test_no_temporary_files_are_left_after_writes(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"d": [1.0]})
    write_cohort_metrics(cohort, **{**identity, "written_at": identity["written_at"] + timedelta(1)},
                         metrics={"a": 2.0}, samples={"d": [2.0]})

    assert hidden_files(cohort.parent) == []
    assert files_in(cohort) == ["telemetry_metrics.json", "telemetry_metrics.parquet",
                                "telemetry_samples.parquet"]


def test_a_failing_rename_keeps_the_old_file_and_names_the_path(cohort, identity, monkeypatch):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0})
    before = {name: (cohort / name).read_bytes() for name in files_in(cohort)}

    def refuse(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError) as caught:
        write_cohort_metrics(cohort, **identity, metrics={"a": 2.0})

    assert str(cohort / "telemetry_metrics.parquet") in str(caught.value)
    assert {name: (cohort / name).read_bytes() for name in files_in(cohort)} == before
    assert hidden_files(cohort) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_a_read_only_folder_keeps_the_old_file_and_names_the_path(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0})
    before = (cohort / "telemetry_metrics.parquet").read_bytes()
    cohort.chmod(0o555)
    try:
        with pytest.raises(StorageError, match=re.escape("telemetry_metrics.parquet")):
            write_cohort_metrics(cohort, **identity, metrics={"a": 2.0})
    finally:
        cohort.chmod(0o755)

    assert (cohort / "telemetry_metrics.parquet").read_bytes() == before
    assert hidden_files(cohort) == []


def test_a_folder_in_the_way_of_a_sidecar_is_a_storage_error(cohort, identity):
    (cohort / "telemetry_metrics.parquet").mkdir(parents=True)

    with pytest.raises(StorageError, match=re.escape("telemetry_metrics.parquet")):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0})
    assert hidden_files(cohort) == []


def test_rejected_input_leaves_an_existing_cohort_unchanged(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"d": [1.0]})
    before = {name: (cohort / name).read_bytes() for name in files_in(cohort)}

    # The bad sample comes last in sorted order, after the metrics were already encoded.
    with pytest.raises(InputError):
        write_cohort_metrics(cohort, **identity, metrics={"a": 2.0},
                             samples={"a_ok": [1.0], "z_bad": ["x", 1.0]})

    assert {name: (cohort / name).read_bytes() for name in files_in(cohort)} == before


# --- rejected input --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "what"),
    [
        ([0.1, 0.2], "list"),
        ({"fold": 0.1}, "dict"),
        ((0.1, 0.2), "tuple"),
        (np.array([0.1, 0.2]), "ndarray"),
        (np.array(0.5), "ndarray"),
        ({0.1, 0.2}, "set"),
        (datetime(2025, 1, 1, tzinfo=timezone.utc), "datetime"),
        (b"bytes", "bytes"),
        (1 + 2j, "complex"),
        (object(), "object"),
        (10**400, "double"),
    ],
)
def test_a_metric_value_that_is_not_a_scalar_is_rejected_naming_the_key(cohort, identity, value, what):
    cohort.mkdir(parents=True)

    with pytest.raises(InputError) as caught:
        write_cohort_metrics(cohort, **identity, metrics={"ok": 1.0, "fold_scores": value})

    assert "'fold_scores'" in str(caught.value)
    assert what in str(caught.value)
    assert files_in(cohort) == []


def test_lists_as_metrics_point_to_samples(cohort, identity):
    with pytest.raises(InputError, match="samples"):
        write_cohort_metrics(cohort, **identity, metrics={"fold_scores": [0.1, 0.2]})


@pytest.mark.parametrize("bad", UNSAFE_NAMES, ids=repr)
@pytest.mark.parametrize(
    "key", ["stage", "view", "target", "symbol", "run_id", "cohort_id", "metric", "distribution"])
def test_an_unsafe_name_is_rejected_naming_the_key(cohort, identity, key, bad):
    cohort.mkdir(parents=True)
    kwargs = {**identity, "metrics": {"a": 1.0}, "samples": {"d": [1.0]}}
    if key == "symbol":
        kwargs.update(view="SYMBOL_SPECIFIC", symbol=bad)
    elif key == "metric":
        kwargs["metrics"] = {bad: 1.0}
    elif key == "distribution":
        kwargs["samples"] = {bad: [1.0]}
    else:
        kwargs[key] = bad

    with pytest.raises(InputError) as caught:
        write_cohort_metrics(cohort, **kwargs)

    assert key in str(caught.value)
    assert files_in(cohort) == []


def test_names_at_the_length_limit_and_with_dots_or_unicode_are_accepted(cohort, identity):
    long_name = "m" * 200
    write_cohort_metrics(cohort, **{**identity, "target": "y_0.05.v2", "run_id": "réssumé-ü"},
                         metrics={long_name: 1.0, ".hidden_ok": 2.0})

    assert set(by_metric(cohort / "telemetry_metrics.parquet")) == {long_name, ".hidden_ok"}


@pytest.mark.parametrize("key", ["run_started_at", "written_at"])
def test_a_naive_datetime_is_rejected_naming_the_key(cohort, identity, key):
    with pytest.raises(InputError, match=key):
        write_cohort_metrics(cohort, **{**identity, key: datetime(2025, 2, 3, 9, 0)},
                             metrics={"a": 1.0})
    assert not cohort.exists()


def test_a_timestamp_that_is_not_a_datetime_is_rejected(cohort, identity):
    with pytest.raises(InputError, match="run_started_at"):
        write_cohort_metrics(cohort, **{**identity, "run_started_at": 1738573200},
                             metrics={"a": 1.0})
    with pytest.raises(InputError, match="written_at"):
        write_cohort_metrics(cohort, **{**identity, "written_at": "yesterday"}, metrics={"a": 1.0})


@pytest.mark.parametrize("view", ["SYMBOL_SPECIFIC", "LOSO"])
def test_symbol_is_required_in_views_with_a_symbol_level(cohort, identity, view):
    with pytest.raises(InputError, match="symbol"):
        write_cohort_metrics(cohort, **{**identity, "view": view}, metrics={"a": 1.0})
    assert not cohort.exists()


def test_symbol_is_refused_for_cross_sectional(cohort, identity):
    with pytest.raises(InputError, match="symbol"):
        write_cohort_metrics(cohort, **identity, symbol="AAPL", metrics={"a": 1.0})
    assert not cohort.exists()


def test_empty_metrics_are_rejected(cohort, identity):
    with pytest.raises(InputError, match="metrics"):
        write_cohort_metrics(cohort, **identity, metrics={}, samples={"d": [1.0]})
    assert not cohort.exists()


def test_metrics_must_be_a_mapping(cohort, identity):
    with pytest.raises(InputError, match="metrics"):
        write_cohort_metrics(cohort, **identity, metrics=[("a", 1.0)])


@pytest.mark.parametrize("seed", [1.5, "7", True, 2**63])
def test_a_seed_that_is_not_an_int64_is_rejected(cohort, identity, seed):
    with pytest.raises(InputError, match="seed"):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, seed=seed)
    assert not cohort.exists()


def test_numpy_integer_seeds_are_accepted(cohort, identity):
    write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, seed=np.int64(-5))

    (row,) = read_rows(cohort / "telemetry_metrics.parquet")
    assert row["seed"] == -5


@pytest.mark.parametrize("key", ["good", "audit_valid"])
@pytest.mark.parametrize("value", [1, 0, "true", "yes"])
def test_a_verdict_that_is_not_a_bool_is_rejected(cohort, identity, key, value):
    with pytest.raises(InputError, match=key):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, **{key: value})
    assert not cohort.exists()


@pytest.mark.parametrize("key", ["git_commit", "config_hash", "data_fingerprint"])
def test_a_fingerprint_that_is_not_text_is_rejected(cohort, identity, key):
    with pytest.raises(InputError, match=key):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, **{key: 123})


@pytest.mark.parametrize(
    "values",
    ["0.1,0.2", b"0.1", ["0.5", 1.0], [1.0, "x"], ["a", True], ["a", b"b"], [["a"], ["b"]],
     np.array([["a", "b"]]), [[1.0, 2.0], [3.0, 4.0]], [1.0, [2.0]], {"a": 1.0}, 3.5],
    ids=["str", "bytes", "numeric-str-element", "str-element", "str-and-bool", "str-and-bytes",
         "nested-str", "2d-str", "2d", "nested", "mapping", "scalar"],
)
def test_sample_values_neither_numbers_nor_strings_are_rejected_naming_the_distribution(cohort, identity, values):
    with pytest.raises(InputError, match="oof"):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"oof": values})
    assert not cohort.exists()


def test_samples_must_be_a_mapping(cohort, identity):
    with pytest.raises(InputError, match="samples"):
        write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples=[1.0, 2.0])
    assert not cohort.exists()


# --- enabled: false --------------------------------------------------------------------------

def test_a_disabled_config_writes_nothing(cohort, identity, make_config):
    config = make_config("safety:\n  telemetry:\n    enabled: false\n")

    assert write_cohort_metrics(cohort, **identity, metrics={"a": 1.0}, samples={"d": [1.0]},
                                config=config) == []
    assert not cohort.exists()


# --- properties ------------------------------------------------------------------------------

SAFE_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
SCALARS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=30),
)
PROPERTY_IDENTITY = {
    "run_id": "r1", "stage": "TRAINING", "view": "CROSS_SECTIONAL", "target": "t",
    "run_started_at": datetime(2025, 1, 1, tzinfo=timezone.utc),
    "written_at": datetime(2025, 1, 2, tzinfo=timezone.utc),
}


def decoded(row: dict):
    """The Python value a stored row stands for (the test's own reading of docs/design.md §3.1)."""
    if row["kind"] == "bool":
        return {1.0: True, 0.0: False}[row["value"]]
    if row["kind"] == "text":
        return row["value_text"]
    return row["value"]


@settings(max_examples=50, deadline=None)
@given(metrics=st.dictionaries(SAFE_NAMES, SCALARS, min_size=1, max_size=8))
def test_property_finite_scalars_round_trip(metrics):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cohort=c"
        write_cohort_metrics(folder, **PROPERTY_IDENTITY, metrics=metrics)
        rows = by_metric(folder / "telemetry_metrics.parquet")
        mirror = json.loads((folder / "telemetry_metrics.json").read_bytes())

    assert set(rows) == set(metrics)
    for name, value in metrics.items():
        row = rows[name]
        expected_kind = "bool" if isinstance(value, bool) else (
            "text" if isinstance(value, str) else "number")
        assert row["kind"] == expected_kind
        if expected_kind == "number":
            assert row["value"] == float(value) and row["value_text"] is None
        else:
            assert decoded(row) == value
        assert mirror["metrics"][name] == {
            "kind": row["kind"], "value": row["value"], "value_text": row["value_text"]}


@settings(max_examples=25, deadline=None)
@given(
    metrics=st.dictionaries(SAFE_NAMES, SCALARS, min_size=1, max_size=5),
    samples=st.dictionaries(
        SAFE_NAMES,
        st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), max_size=40),
        max_size=3,
    ),
)
def test_property_the_same_input_gives_the_same_bytes(metrics, samples):
    config_text = "safety:\n  telemetry:\n    samples:\n      max_per_distribution: 10\n"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.yaml").write_text(config_text)
        config = load_config(Path(tmp) / "c.yaml")
        outputs = []
        for name in ("one", "two"):
            folder = Path(tmp) / name / "cohort=c"
            write_cohort_metrics(folder, **PROPERTY_IDENTITY, metrics=metrics, samples=samples,
                                 config=config)
            outputs.append({p.name: p.read_bytes() for p in folder.iterdir()})
        kept = read_rows(Path(tmp) / "one" / "cohort=c" / "telemetry_samples.parquet") if samples else []

    assert outputs[0] == outputs[1]
    for name, offered in samples.items():
        finite = [v for v in offered if v is not None and math.isfinite(v)]
        values = [r["value"] for r in kept if r["distribution"] == name]
        if finite:
            assert len(values) == min(len(finite), 10)
            assert not Counter(values) - Counter(finite)  # a sub-multiset of the input
        else:
            assert values == [None]
