"""Config: packaged defaults, key-by-key overrides, and errors that name the key path."""

from __future__ import annotations

import re
import textwrap

import pytest

from metricsduck import ConfigError, load_config

PIPELINE_CRITICAL_METRICS = [
    "label_window", "horizon", "lookahead_guard_state", "cv_scheme_id", "fold_count",
    "purge_gap", "leakage_flag", "leakage_events_count", "missingness_rate",
    "winsorization_clip", "outlier_rate",
]


def yaml_under_telemetry(body: str, section: str = "telemetry") -> str:
    """A user file with `body` (YAML indented as if at column 0) under safety.<section>."""
    return f"safety:\n  {section}:\n" + textwrap.indent(textwrap.dedent(body), "    ")


def test_defaults_are_the_documented_values():
    config = load_config()

    assert config.source == "<defaults>"
    assert config.enabled is True
    assert config.prefix == "telemetry"
    assert config.get("baselines") == {
        "previous_run": True, "rolling_window_k": 10, "last_good_run": True,
        "last_good_uses_audit": True,
    }
    drift = config.get("drift")
    assert (drift["psi_threshold"], drift["psi_warn"], drift["ks_threshold"], drift["ks_warn"],
            drift["ks_alpha"], drift["psi_alpha"], drift["min_samples"], drift["ks_exact_max"],
            drift["psi_bins"], drift["psi_epsilon"]) == (
        0.2, 0.1, 0.1, 0.05, 0.02, 0.02, 20, 10_000, 10, 1e-4)
    assert drift["tiers"] == {
        "relative": [0.05, 0.20], "absolute": [0.01, 0.10],
        "critical_relative": [0.01, 0.03], "critical_absolute": [0.001, 0.01],
    }
    assert sorted(drift["critical_metrics"]) == sorted(PIPELINE_CRITICAL_METRICS)
    assert drift["overrides"] == {}
    assert drift["direction"]["mean_score"] == "higher_is_better"
    assert drift["direction"]["brier"] == "lower_is_better"
    assert config.get("trend") == {"window": 20, "min_runs": 5, "min_r2": 0.5, "min_rel_change": 0.05}
    assert config.get("samples.max_per_distribution") == 5000


def test_a_user_file_overrides_key_by_key(make_config):
    config = make_config(yaml_under_telemetry("""
        drift:
          psi_threshold: 0.3
          tiers:
            relative: [0.1, 0.4]
        trend:
          window: 30
    """))

    assert config.get("drift.psi_threshold") == 0.3
    assert config.get("drift.tiers.relative") == [0.1, 0.4]
    assert config.get("trend.window") == 30
    # Everything not named keeps its default, including siblings of overridden keys.
    assert config.get("drift.psi_warn") == 0.1
    assert config.get("drift.tiers.absolute") == [0.01, 0.10]
    assert config.get("trend.min_runs") == 5
    assert config.get("baselines.rolling_window_k") == 10
    assert config.enabled is True


def test_the_source_is_the_file(tmp_path):
    path = tmp_path / "safety.yaml"
    path.write_text(yaml_under_telemetry("enabled: false\n"))

    config = load_config(path)

    assert config.source == str(path)
    assert config.enabled is False


def test_exponent_floats_without_a_dot_are_numbers(make_config):
    # PyYAML reads `1e-4` as a string; users copy it from the docs exactly like that.
    config = make_config(yaml_under_telemetry("drift:\n  psi_epsilon: 1e-4\n  psi_warn: 5E-2\n"))

    assert config.get("drift.psi_epsilon") == 1e-4
    assert config.get("drift.psi_warn") == 0.05


def test_safety_metrics_is_an_alias_of_safety_telemetry(make_config):
    config = make_config(yaml_under_telemetry("drift:\n  psi_bins: 20\n", section="metrics"))

    assert config.get("drift.psi_bins") == 20


def test_both_aliases_at_once_are_an_error(make_config):
    with pytest.raises(ConfigError, match=re.escape("both safety.telemetry and safety.metrics")):
        make_config("safety:\n  telemetry:\n    enabled: true\n  metrics:\n    enabled: true\n")


def test_an_empty_section_keeps_every_default(make_config):
    config = make_config("safety:\n  telemetry:\n")

    assert config.values == load_config().values


def test_keys_beside_the_telemetry_section_are_left_to_the_pipeline(make_config):
    config = make_config(textwrap.dedent("""\
        pipeline:
          name: anything
        safety:
          leakage:
            whatever_the_pipeline_wants: [1, 2, 3]
            psi_treshold: nonsense
          telemetry:
            trend:
              min_runs: 3
    """))

    assert config.get("trend.min_runs") == 3


def test_an_unknown_key_is_an_error_naming_its_full_path(make_config):
    with pytest.raises(ConfigError) as caught:
        make_config(yaml_under_telemetry("drift:\n  psi_treshold: 0.2\n"))

    message = str(caught.value)
    assert "safety.telemetry.drift.psi_treshold" in message
    assert "psi_threshold" in message  # the known keys are listed as a hint


def test_errors_under_the_alias_name_the_alias_path(make_config):
    with pytest.raises(ConfigError, match=r"safety\.metrics\.trend\.windows"):
        make_config(yaml_under_telemetry("trend:\n  windows: 3\n", section="metrics"))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "user.yaml"
    path.write_text(yaml_under_telemetry("trend:\n  window: -1\n"))

    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("enabled: 1\n", "safety.telemetry.enabled"),
        ("enabled: 'yes please'\n", "safety.telemetry.enabled"),
        ("drift:\n  psi_threshold: true\n", "safety.telemetry.drift.psi_threshold"),
        ("drift:\n  psi_threshold: high\n", "safety.telemetry.drift.psi_threshold"),
        ("baselines:\n  rolling_window_k: ten\n", "safety.telemetry.baselines.rolling_window_k"),
        ("baselines:\n  rolling_window_k: '10'\n", "safety.telemetry.baselines.rolling_window_k"),
        ("drift:\n  psi_bins: 1.5\n", "safety.telemetry.drift.psi_bins"),
        ("drift:\n  psi_bins: true\n", "safety.telemetry.drift.psi_bins"),
        ("drift:\n  tiers:\n    relative: 0.05\n", "safety.telemetry.drift.tiers.relative"),
        ("drift:\n  tiers:\n    absolute: [0.01, 0.1, 0.2]\n", "safety.telemetry.drift.tiers.absolute"),
        ("drift:\n  tiers:\n    relative: [low, high]\n", "safety.telemetry.drift.tiers.relative[0]"),
        ("drift:\n  critical_metrics: leakage_flag\n", "safety.telemetry.drift.critical_metrics"),
        ("drift:\n  critical_metrics: [ok, 'a/b']\n", "safety.telemetry.drift.critical_metrics[1]"),
        ("drift:\n  overrides:\n    mean_score: [0.1, 0.2]\n", "safety.telemetry.drift.overrides.mean_score"),
        ("drift:\n  overrides:\n    mean_score:\n      relatve: [0.1, 0.2]\n",
         "safety.telemetry.drift.overrides.mean_score.relatve"),
        ("drift: 0.2\n", "safety.telemetry.drift"),
        ("samples:\n  max_per_distribution: 100.0\n", "safety.telemetry.samples.max_per_distribution"),
        ("files:\n  prefix: 'my/prefix'\n", "safety.telemetry.files.prefix"),
    ],
)
def test_a_wrong_type_is_an_error_naming_the_key(make_config, body, key):
    with pytest.raises(ConfigError) as caught:
        make_config(yaml_under_telemetry(body))

    assert key in str(caught.value)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("baselines:\n  rolling_window_k: -3\n", "safety.telemetry.baselines.rolling_window_k"),
        ("baselines:\n  rolling_window_k: 0\n", "safety.telemetry.baselines.rolling_window_k"),
        ("drift:\n  psi_warn: 0.5\n", "safety.telemetry.drift.psi_warn"),  # above psi_threshold 0.2
        ("drift:\n  ks_warn: 0.2\n", "safety.telemetry.drift.ks_warn"),  # above ks_threshold 0.1
        ("drift:\n  tiers:\n    relative: [0.3, 0.1]\n", "safety.telemetry.drift.tiers.relative"),
        ("drift:\n  tiers:\n    critical_absolute: [0.01, -0.1]\n",
         "safety.telemetry.drift.tiers.critical_absolute"),
        ("trend:\n  min_runs: 30\n", "safety.telemetry.trend.min_runs"),  # above window 20
        ("drift:\n  psi_epsilon: 0\n", "safety.telemetry.drift.psi_epsilon"),
        ("drift:\n  psi_epsilon: 1\n", "safety.telemetry.drift.psi_epsilon"),
        ("drift:\n  ks_alpha: 0\n", "safety.telemetry.drift.ks_alpha"),
        ("drift:\n  ks_threshold: 1.5\n", "safety.telemetry.drift.ks_threshold"),
        ("drift:\n  psi_bins: 1\n", "safety.telemetry.drift.psi_bins"),
        ("drift:\n  psi_threshold: .nan\n", "safety.telemetry.drift.psi_threshold"),
        ("drift:\n  psi_threshold: .inf\n", "safety.telemetry.drift.psi_threshold"),
        ("trend:\n  min_r2: 1.5\n", "safety.telemetry.trend.min_r2"),
        ("samples:\n  max_per_distribution: 0\n", "safety.telemetry.samples.max_per_distribution"),
    ],
)
def test_an_impossible_value_is_an_error_naming_the_key(make_config, body, key):
    with pytest.raises(ConfigError) as caught:
        make_config(yaml_under_telemetry(body))

    assert key in str(caught.value)


def test_consistent_overrides_of_linked_keys_are_accepted(make_config):
    config = make_config(yaml_under_telemetry("""
        drift:
          psi_warn: 0.3
          psi_threshold: 0.5
        trend:
          window: 5
          min_runs: 5
    """))

    assert (config.get("drift.psi_warn"), config.get("drift.psi_threshold")) == (0.3, 0.5)
    assert (config.get("trend.window"), config.get("trend.min_runs")) == (5, 5)


def test_a_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError, match="not found") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_invalid_yaml_is_an_error_with_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("safety:\n  telemetry:\n    enabled: true\n    drift: [0.1, 0.2\n    trend: {}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert "not valid YAML" in message
    # PyYAML notices the unclosed bracket where the next key starts, on line 5.
    assert f"{path}:5" in message


@pytest.mark.parametrize(
    "text",
    ["", "just a string\n", "safety: 3\n", "safety:\n  leakage: {}\n", "safety:\n  telemetry: [1]\n"],
    ids=["empty", "scalar", "safety-not-mapping", "no-telemetry", "telemetry-not-mapping"],
)
def test_a_file_without_a_telemetry_mapping_is_an_error(make_config, text):
    with pytest.raises(ConfigError, match="safety"):
        make_config(text)


def test_settings_rows_expose_every_scalar_threshold_by_name():
    rows = load_config().settings_rows()
    by_key = {key: (value, text) for key, value, text in rows}

    assert rows == sorted(rows)
    assert len(by_key) == len(rows)
    assert by_key["enabled"] == (1.0, None)
    assert by_key["baselines.last_good_uses_audit"] == (1.0, None)
    assert by_key["baselines.rolling_window_k"] == (10.0, None)
    assert by_key["drift.psi_bins"] == (10.0, None)
    assert by_key["drift.psi_epsilon"] == (1e-4, None)
    assert by_key["drift.tiers.relative.warn"] == (0.05, None)
    assert by_key["drift.tiers.relative.alert"] == (0.20, None)
    assert by_key["drift.tiers.critical_absolute.warn"] == (0.001, None)
    assert by_key["trend.min_rel_change"] == (0.05, None)
    assert by_key["samples.max_per_distribution"] == (5000.0, None)
    assert by_key["files.prefix"] == (None, "telemetry")
    # Lists and per-metric rules live in metric_rows, not here.
    assert not [key for key in by_key if key.startswith(("drift.critical_metrics", "drift.overrides"))]


def test_metric_rows_flag_critical_metrics_and_carry_overrides(make_config):
    config = make_config(yaml_under_telemetry("""
        drift:
          critical_metrics: [leakage_flag, fold_count]
          overrides:
            mean_score:
              relative: [0.1, 0.3]
            fold_count:
              absolute: [0.5, 1]
    """))

    rows = {row[0]: row for row in config.metric_rows()}
    assert rows["fold_count"] == ("fold_count", True, None, None, 0.5, 1.0, None)
    assert rows["leakage_flag"] == ("leakage_flag", True, None, None, None, None, None)
    assert rows["mean_score"] == ("mean_score", False, 0.1, 0.3, None, None, "higher_is_better")
    assert list(rows) == sorted(rows)


def test_default_metric_rows_are_the_critical_metrics_and_the_good_directions():
    config = load_config()
    rows = config.metric_rows()

    assert [row[0] for row in rows] == sorted(set(PIPELINE_CRITICAL_METRICS) | set(config.get("drift.direction")))
    assert all(row[1:6] == (True, None, None, None, None) for row in rows if row[0] in PIPELINE_CRITICAL_METRICS)
    assert all(row[6] == config.get("drift.direction").get(row[0]) for row in rows)


def test_a_user_file_adds_good_directions_metric_by_metric_and_names_a_bad_one(make_config):
    config = make_config(yaml_under_telemetry("""
        drift:
          direction:
            brier: both
            drawdown: lower_is_better
    """))
    directions = config.get("drift.direction")
    assert (directions["brier"], directions["drawdown"], directions["mean_score"]) == (
        "both", "lower_is_better", "higher_is_better")
    with pytest.raises(ConfigError, match=r"drift\.direction\.drawdown must be one of higher_is_better, "
                                          r"lower_is_better, both, got 'lower'"):
        make_config(yaml_under_telemetry("""
            drift:
              direction:
                drawdown: lower
        """))


def test_user_overrides_add_to_each_other_across_metrics(make_config):
    config = make_config(yaml_under_telemetry("""
        drift:
          overrides:
            a: {relative: [0.1, 0.2]}
            b: {absolute: [1, 2]}
    """))

    assert config.get("drift.overrides") == {
        "a": {"relative": [0.1, 0.2]}, "b": {"absolute": [1.0, 2.0]}}


def test_an_override_needs_relative_or_absolute(make_config):
    with pytest.raises(ConfigError, match=re.escape("safety.telemetry.drift.overrides.mean_score")):
        make_config(yaml_under_telemetry("drift:\n  overrides:\n    mean_score: {}\n"))
