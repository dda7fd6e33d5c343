"""A new user's walk through the README, top to bottom, on a fresh folder.

Every `metricsduck …` line of the README's shell blocks runs in the order the README gives
them, with `RESULTS` meaning the tree the first command (`metricsduck demo demo-tree`) wrote;
each must exit 0 and print what a user would look for. The Python blocks run as written (the
pipeline example with lists for its `predictions` and `labels`), each line echoed like a REPL echoes it,
and the DuckDB CLI command runs with the CLI of PyPI. A README line added without a step
here fails the test, so the walk stays the README's.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from metricsduck.cli import main
from metricsduck.demo import SHIFT_SYMBOL, TREND_TARGET

README = Path(__file__).resolve().parents[1] / "README.md"
TREE = "demo-tree"
# What each `metricsduck` line of the README must print (stdout, else stderr), in README order.
EXPECTED = [
    ("demo", r"Wrote 8 runs to demo-tree\. Injected:"),
    ("import", r"already had sidecars\s+480"),
    ("init", r"catalog written to demo-tree/\.metricsduck/catalog\.duckdb"),
    ("status", r"runs\s+8"),
    ("check", r"^path\s+problem\s+detail"),  # the header of an empty table: nothing wrong
    ("refresh", r"runs refreshed\s+0"),  # init refreshed everything already
    ("drift", r"demo_run_08 .*ALERT"),
    ("drift", rf"{SHIFT_SYMBOL} .*oof_predictions"),  # the demo's shifted distribution
    ("trend", rf"{re.escape(TREND_TARGET)} .*decreasing"),  # the demo's slow decline
    ("rollup", r"SYMBOL_SPECIFIC\s+target"),
    ("rollup", r"CROSS_SECTIONAL"),
    ("mark", r"demo_run_04\s+false\s+vendor outage"),
    ("sql", r"ALERT"),
    ("report", r"report written to drift_report\.html"),
]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text("utf-8"), re.M | re.S)


def commands() -> list[list[str]]:
    """Every `metricsduck …` line of the README's sh blocks as argv, comments dropped."""
    lines = [line for block in blocks("sh") for line in block.splitlines() if line.startswith("metricsduck ")]
    return [shlex.split(line, comments=True)[1:] for line in lines]


# Each README Python block runs in a console that echoes expression values, as a REPL or a
# notebook would, and stops at the first error.
CONSOLE = """
import code, sys

class Strict(code.InteractiveConsole):
    def showtraceback(self):
        super().showtraceback()
        sys.exit(1)

    def showsyntaxerror(self, filename=None, **kwargs):
        super().showsyntaxerror(filename)
        sys.exit(1)

console = Strict()
for line in sys.stdin.read().splitlines():
    console.push(line)
console.push("")
"""


def python(source: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", CONSOLE], input=source, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{source}\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.slow  # writes, refreshes and queries the 8-run demo as the README does
def test_a_newcomer_walks_the_readme_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import metricsduck

    # `init --config safety.yaml`: the user's copy of the packaged config
    shutil.copy(Path(metricsduck.__file__).parent / "config" / "safety.yaml", tmp_path / "safety.yaml")
    monkeypatch.chdir(tmp_path)

    steps = commands()
    assert [argv[0] for argv in steps] == [name for name, _ in EXPECTED], "the README's commands changed"
    for argv, (_, pattern) in zip(steps, EXPECTED, strict=True):
        argv = [TREE if arg == "RESULTS" else arg for arg in argv]
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
        shown = f"$ metricsduck {shlex.join(argv)}\n{result.stdout}{result.stderr}"
        assert result.exit_code == 0, shown
        assert re.search(pattern, result.stdout, re.M) or re.search(pattern, result.stderr, re.M), shown
    assert (tmp_path / "drift_report.html").stat().st_size > 10_000

    tracker, store = blocks("python")
    python("predictions = [0.01 * i for i in range(100)]\nlabels = ['up', 'down'] * 50\n" + tracker, tmp_path)
    (cohort,) = (tmp_path / "RESULTS" / "run_2026-01-05").rglob("cohort=sy_2025Q1_*")
    assert sorted(p.name for p in cohort.iterdir()) == [
        "audit_report.json", "metadata.json", "metrics.json", "telemetry_metrics.json",
        "telemetry_metrics.parquet", "telemetry_samples.parquet"]
    echoed = python("import metricsduck\n" + store.replace('"RESULTS"', repr(TREE)), tmp_path)
    assert "ALERT" in echoed and "RecordBatchReader" in echoed  # the drift DataFrame, the .arrow() reader

    (command,) = [line for block in blocks("sh") for line in block.splitlines() if line.startswith("duckdb ")]
    cli = Path(sys.executable).with_name("duckdb")
    done = subprocess.run([str(cli), *shlex.split(command)[1:]], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "ALERT" in done.stdout, done.stderr
