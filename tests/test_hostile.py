"""Hostile names, bad configs and bad values (docs/reliability.md, faults 6-8).

Names that could escape the tree are rejected before anything is written; names that are
merely odd (quotes, SQL fragments, Unicode) are stored and read back exactly; query
commands cannot touch files; bad configs are one line naming the key, exit 3, nothing
written; extreme values flow through the views without errors or wrong tiers.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main
from metricsduck.errors import InputError

START = datetime(2026, 4, 6, tzinfo=timezone.utc)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def save(tracker: metricsduck.ReproducibilityTracker, **names) -> Path:
    args = {"stage": "TARGET_RANKING", "view": "CROSS_SECTIONAL", "target": "t", **names}
    return tracker.save_cohort(args.pop("stage"), args.pop("view"), args.pop("target"),
                               args.pop("metrics", {"score": 0.5}),
                               cohort_metadata={"cohort_id": args.pop("cohort_id", "c")}, **args)


ESCAPING = ["../../etc", "a/b", "a\\b", "..", ".", "x..y", "a\x00b", "a\nb", "a\rb", "",
            "x" * 10_000, "\u202eevil", "tab\there"]


@pytest.mark.parametrize("field", ["stage", "view", "target", "symbol", "cohort_id"])
@pytest.mark.parametrize("name", ESCAPING, ids=range(len(ESCAPING)))
def test_names_that_could_escape_the_tree_are_rejected_and_write_nothing(
        tmp_path: Path, field: str, name: str) -> None:
    root = tmp_path / "root"
    tracker = metricsduck.ReproducibilityTracker(root / "run", run_id="r", run_started_at=START)
    names = {field: name}
    if field == "symbol":
        names["view"] = "SYMBOL_SPECIFIC"
    with pytest.raises(InputError) as error:
        save(tracker, **names)
    assert field in str(error.value) or field.replace("_", " ") in str(error.value)
    assert files_under(tmp_path) == []  # nothing inside the tree, nothing beside it


@pytest.mark.parametrize("name", ESCAPING, ids=range(len(ESCAPING)))
def test_hostile_metric_and_run_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError):
        save(metricsduck.ReproducibilityTracker(tmp_path / "run", run_id="r", run_started_at=START),
             metrics={name: 1.0})
    with pytest.raises(InputError):
        metricsduck.ReproducibilityTracker(tmp_path / "run", run_id=name, run_started_at=START)
    assert files_under(tmp_path) == []


ODD = ["x' OR 1=1 --", 'quote"d', "y'); DROP TABLE facts; --", "Ünïcødé→目标", "emoji🚀", "a b c",
       "$stage", "%s"]


def test_odd_but_safe_names_are_stored_and_read_back_exactly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for run in range(2):
        tracker = metricsduck.ReproducibilityTracker(root / f"run{run}", run_id=f"r{run}",
                                                     run_started_at=START + timedelta(days=run))
        for name in ODD:
            save(tracker, target=name, metrics={name: 1.0 + run})
    # every file stays under the root, one folder per target
    view = root / "run0" / "REPRODUCIBILITY" / "TARGET_RANKING" / "CROSS_SECTIONAL"
    assert {p.name for p in view.iterdir()} == set(ODD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    with metricsduck.connect(root) as store:
        rows = store.sql("SELECT target, metric, value FROM facts WHERE run_id = 'r1'").fetchall()
        assert sorted(rows) == sorted((name, name, 2.0) for name in ODD)
        for name in ODD:  # filters are bound: each odd name matches exactly its own rows
            drift = store.drift(target=name, run="r1", baseline="previous_run").fetchall()
            assert len(drift) == 1
        # a value that is not a target is refused (bound, so it matches no other target)
        with pytest.raises(InputError, match="no such target"):
            store.drift(target="x' OR '1'='1")
    runner = CliRunner()
    for option in ("--stage", "--view", "--target", "--symbol", "--run"):
        result = runner.invoke(main, ["drift", str(root), option, "zz' OR 1=1 --", "--format", "json"])
        assert result.exit_code == 4 and result.stdout == "", option
        assert f"{option[2:]} zz' OR 1=1 --: no such {option[2:]}" in result.stderr, option


@pytest.mark.parametrize("query", [
    "COPY (SELECT 1) TO '{root}/stolen.csv'",
    "SELECT * FROM read_text('/etc/hostname')",
    "SET enable_external_access = true",
    "ATTACH '{root}/other.duckdb' AS other",
    "INSTALL httpfs",
])
def test_query_commands_cannot_touch_files(tmp_path: Path, query: str) -> None:
    root = tmp_path / "root"
    save(metricsduck.ReproducibilityTracker(root / "run", run_id="r", run_started_at=START))
    before = files_under(tmp_path)
    result = CliRunner().invoke(main, ["sql", str(root), query.format(root=root)])
    assert result.exit_code == 4
    assert result.stderr.startswith("metricsduck: error: query failed:")
    assert files_under(tmp_path) == before


def test_sql_still_answers_queries_over_the_views(tmp_path: Path) -> None:
    root = tmp_path / "root"
    save(metricsduck.ReproducibilityTracker(root / "run", run_id="r", run_started_at=START))
    result = CliRunner().invoke(main, ["sql", str(root), "select metric, value from facts", "--format", "csv"])
    assert result.exit_code == 0 and result.stdout == "metric,value\nscore,0.5\n"


BAD_CONFIGS = {
    "unknown key": ("safety:\n  telemetry:\n    drift:\n      psi_treshold: 0.2\n",
                    "safety.telemetry.drift.psi_treshold"),
    "wrong type": ("safety:\n  telemetry:\n    drift:\n      psi_bins: ten\n", "safety.telemetry.drift.psi_bins"),
    "warn above alert": ("safety:\n  telemetry:\n    drift:\n      psi_warn: 0.5\n", "psi_warn"),
    "tier pair out of order": ("safety:\n  telemetry:\n    drift:\n      tiers:\n        relative: [0.3, 0.1]\n",
                               "safety.telemetry.drift.tiers.relative"),
    "negative k": ("safety:\n  telemetry:\n    baselines:\n      rolling_window_k: -3\n",
                   "safety.telemetry.baselines.rolling_window_k"),
    "not yaml": ("safety: [unclosed\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["init", "refresh", "drift", "status"])
def test_bad_config_is_one_line_naming_the_key_exit_3_nothing_written(
        tmp_path: Path, case: str, command: str) -> None:
    root = tmp_path / "root"
    save(metricsduck.ReproducibilityTracker(root / "run", run_id="r", run_started_at=START))
    text, key = BAD_CONFIGS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, [command, str(root), "--config", str(config)])
    assert result.exit_code == 3
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("metricsduck: error: ") and key in lines[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_missing_config_file_is_exit_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["refresh", str(tmp_path), "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 3 and "config file not found" in result.stderr
    assert files_under(tmp_path) == []


def test_extreme_values_flow_through_the_views_with_the_right_tiers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    huge = [float(i % 1000) for i in range(200_000)]
    runs = [
        {"nan_then_nan": math.nan, "inf_then_inf": math.inf, "big": 1e308, "neg_zero": -0.0,
         "num_then_text": 3.0, "finite_then_nan": 1.0, "ninf": -math.inf},
        {"nan_then_nan": math.nan, "inf_then_inf": math.inf, "big": 1e308, "neg_zero": 0.0,
         "num_then_text": "three", "finite_then_nan": math.nan, "ninf": math.inf},
    ]
    for index, metrics in enumerate(runs):
        tracker = metricsduck.ReproducibilityTracker(root / f"run{index}", run_id=f"r{index}",
                                                     run_started_at=START + timedelta(days=index))
        save(tracker, metrics=metrics, samples={"huge": huge, "empty": [], "all_nan": [math.nan] * 3})
    with metricsduck.connect(root) as store:
        scalar = {row[0]: row[1:] for row in store.sql(
            "SELECT metric, status, tier, rel_delta_status FROM drift_scalar "
            "WHERE run_id = 'r1' AND baseline_kind = 'previous_run'").fetchall()}
        distributions = {row[0]: row[1:] for row in store.sql(
            "SELECT distribution, status, n, m, tier FROM drift_distribution "
            "WHERE run_id = 'r1' AND baseline_kind = 'previous_run'").fetchall()}
        samples = dict(store.sql("SELECT distribution, count(*) FROM samples WHERE run_id = 'r1' "
                                 "GROUP BY 1").fetchall())
    assert scalar["nan_then_nan"] == ("NON_FINITE", "OK", None)
    assert scalar["inf_then_inf"] == ("NON_FINITE", "OK", None)
    assert scalar["ninf"] == ("NON_FINITE", "WARN", None)       # -inf -> inf is a change
    assert scalar["finite_then_nan"] == ("NON_FINITE", "WARN", None)
    assert scalar["big"] == ("COMPARED", "OK", "defined")        # 1e308 - 1e308 = 0, no overflow
    assert scalar["neg_zero"] == ("COMPARED", "OK", "both_zero")
    assert scalar["num_then_text"] == ("KIND_CHANGED", "WARN", None)
    assert samples == {"huge": 5000, "empty": 1, "all_nan": 1}  # subsampled; placeholders keep counts
    assert distributions["huge"] == ("COMPARED", 5000, 5000, "OK")
    assert distributions["empty"][:3] == ("NO_DATA", 0, 0) and distributions["empty"][3] is None
    assert distributions["all_nan"][:3] == ("NO_DATA", 0, 0)
    missing = {row for row in scalar if row.endswith(".missing_rate")}
    assert missing == {"huge.missing_rate", "empty.missing_rate", "all_nan.missing_rate"}


@pytest.mark.parametrize("argument", ["metrics", "cohort_metadata", "audit_report"])
def test_save_cohort_rejects_a_non_mapping_naming_the_argument(tmp_path: Path, argument: str) -> None:
    tracker = metricsduck.ReproducibilityTracker(tmp_path / "run", run_id="r", run_started_at=START)
    arguments = {"metrics": {"score": 0.5}, "cohort_metadata": {"cohort_id": "c"}, argument: [1, 2]}
    with pytest.raises(InputError, match=argument):
        tracker.save_cohort("TARGET_RANKING", "CROSS_SECTIONAL", "t", arguments.pop("metrics"), **arguments)
    assert files_under(tmp_path) == []
