"""Packaging conventions: `python -m metricsduck`, one version source, a cheap --help, py.typed."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import metricsduck

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("duckdb", "pyarrow", "numpy")


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metricsduck", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_python_m_metricsduck_version_is_the_package_version(tmp_path: Path) -> None:
    out = run_module("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"metricsduck, version {metricsduck.__version__}\n"


def test_python_m_metricsduck_help_lists_the_commands(tmp_path: Path) -> None:
    out = run_module("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "refresh" in out.stdout and "drift" in out.stdout


def test_python_m_metricsduck_help_imports_no_heavy_library(tmp_path: Path) -> None:
    # runpy is what `python -m` uses: the same __main__ module, then a look at sys.modules
    code = (
        "import runpy, sys\n"
        "sys.argv = ['metricsduck', '--help']\n"
        "try:\n    runpy.run_module('metricsduck', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        f"print('heavy=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120, check=True)
    assert "Usage:" in out.stdout
    assert out.stdout.splitlines()[-1] == "heavy="


def test_py_typed_is_in_the_package() -> None:
    assert resources.files("metricsduck").joinpath("py.typed").is_file()


def test_pyproject_ships_py_typed_and_reads_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    setuptools = project["tool"]["setuptools"]
    assert "py.typed" in setuptools["package-data"]["metricsduck"]
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert setuptools["dynamic"]["version"] == {"attr": "metricsduck.__version__"}


def test_every_word_of_the_vocabulary_is_one_the_sql_spells() -> None:
    # metricsduck/vocab.py spells each vocabulary once for Python; the SQL writes the same words
    # as literals. A word renamed on one side only would silently match nothing.
    from metricsduck import vocab
    from metricsduck.catalog import packaged_sql_dir

    sql = "\n".join(p.read_text() for sub in ("views", "macros") for p in (packaged_sql_dir() / sub).glob("*.sql"))
    levels = vocab.LEVELS[1:]  # the stage level is the rollup_stage relation, not a value of `level`
    for words in (vocab.TIERS, vocab.BASELINE_KINDS, vocab.DIRECTIONS, vocab.GOOD_DIRECTIONS, vocab.ASSESSMENTS,
                  levels, vocab.ITEM_KINDS, vocab.DISTRIBUTION_KINDS):
        missing = [w for w in words if f"'{w}'" not in sql]
        assert not missing, missing
