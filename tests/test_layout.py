"""The tree: safe names, baseline keys, cohort folders and sidecar names."""

from __future__ import annotations

from pathlib import Path

import pytest

from metricsduck import InputError
from metricsduck.layout import baseline_key, check_name, check_symbol, cohort_dir, cohort_id_from_dir, sidecar_name

UNSAFE_NAMES = ["a/b", "a\\b", "..", "x..y", "../up", ".", "", "a\x00b", "a\nb", "a\tb",
                "n" * 201, "\u202e", "a\u2028b", "\x7f"]


@pytest.mark.parametrize(
    "name",
    ["AAPL", "y_will_swing_high_60m_0.05", "n" * 200, "ü-ß é", ".hidden", "a.b", "cr_2025Q1_ab12cd34"],
)
def test_safe_names_pass_unchanged(name):
    assert check_name("target", name) == name


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_names_are_rejected_naming_the_key(name):
    with pytest.raises(InputError, match=r"^target"):
        check_name("target", name)


@pytest.mark.parametrize("value", [None, 5, b"AAPL", ["a"]])
def test_a_name_must_be_a_string(value):
    with pytest.raises(InputError, match="symbol must be a string"):
        check_name("symbol", value)


def test_baseline_keys_have_a_symbol_part_only_with_a_symbol():
    assert baseline_key("TRAINING", "CROSS_SECTIONAL", "y_1", None) == "TRAINING:CROSS_SECTIONAL:y_1"
    assert baseline_key("TRAINING", "SYMBOL_SPECIFIC", "y_1", "AAPL") == (
        "TRAINING:SYMBOL_SPECIFIC:y_1:AAPL")


def test_cohort_folders_follow_the_tree(tmp_path):
    assert cohort_dir(tmp_path, "TRAINING", "CROSS_SECTIONAL", "y_1", None, "cr_x") == (
        tmp_path / "REPRODUCIBILITY" / "TRAINING" / "CROSS_SECTIONAL" / "y_1" / "cohort=cr_x")
    assert cohort_dir(tmp_path, "TRAINING", "SYMBOL_SPECIFIC", "y_1", "AAPL", "sy_x") == (
        tmp_path / "REPRODUCIBILITY" / "TRAINING" / "SYMBOL_SPECIFIC" / "y_1" / "symbol=AAPL"
        / "cohort=sy_x")
    # INDIVIDUAL has no symbol level in the tree, with or without a symbol.
    assert cohort_dir(tmp_path, "TRAINING", "INDIVIDUAL", "y_1", None, "in_x").parent.name == "y_1"


@pytest.mark.parametrize(
    ("view", "symbol"), [("SYMBOL_SPECIFIC", None), ("LOSO", None), ("CROSS_SECTIONAL", "AAPL")])
def test_the_symbol_level_must_match_the_view(view, symbol):
    with pytest.raises(InputError, match="symbol"):
        check_symbol(view, symbol)


@pytest.mark.parametrize("position", range(5))
def test_cohort_folders_refuse_unsafe_parts(tmp_path, position):
    parts = ["TRAINING", "SYMBOL_SPECIFIC", "y_1", "AAPL", "sy_x"]
    parts[position] = ".."
    stage, view, target, symbol, cohort = parts

    with pytest.raises(InputError, match=["stage", "view", "target", "symbol", "cohort_id"][position]):
        cohort_dir(tmp_path, stage, view, target, symbol, cohort)


def test_cohort_ids_come_from_cohort_folders_only():
    assert cohort_id_from_dir(Path("x/cohort=cr_2025Q1_abc")) == "cr_2025Q1_abc"
    assert cohort_id_from_dir(Path("x/symbol=AAPL")) is None
    assert cohort_id_from_dir(Path("x/cohort=")) is None


def test_sidecar_names_use_the_prefix():
    assert sidecar_name("telemetry", "metrics", "parquet") == "telemetry_metrics.parquet"
    assert sidecar_name("metrics", "samples", "parquet") == "metrics_samples.parquet"
