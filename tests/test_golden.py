"""The JSON mirrors `refresh` writes, byte for byte against files kept under tests/golden/.

The tree is the six-run demo (`write_demo(root, runs=6, seed=0)`, every injection present,
trends from run 5 on), refreshed once with a plain `refresh()`: the session's shared
refreshed copy of it (conftest `demo_trees`). A handful of files is compared, named by
their path relative to the tree root: the drift JSON of a CROSS_SECTIONAL and of a
SYMBOL_SPECIFIC cohort (the injected collapse and shift), one trend JSON (the injected
decline), one view rollup and one stage rollup, all of the last run.

Any change to what these files hold (a view, a renderer, the canonical JSON) shows here as
a diff. When a change is meant, rewrite them with `pytest tests/test_golden.py
--update-golden` and commit the new files with the change that explains them.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "demo_runs6_seed0"
RUN = "run_06/REPRODUCIBILITY/TARGET_RANKING"
FILES = (
    # drift: the collapsed cross-sectional target, and the shifted symbol-specific cohort
    f"{RUN}/CROSS_SECTIONAL/y_will_swing_low_60m_0.05/cohort=cr_2025Q1_9913a886/telemetry_drift.json",
    f"{RUN}/SYMBOL_SPECIFIC/y_will_swing_high_60m_0.05/symbol=TSLA/cohort=sy_2025Q1_0fe6f1e5/telemetry_drift.json",
    # trend: the slow decline of the trend target
    f"{RUN}/CROSS_SECTIONAL/y_will_peak_30m_0.03/cohort=cr_2025Q1_be6807de/telemetry_trend.json",
    # rollups: one view of the last run, and its stage
    f"{RUN}/SYMBOL_SPECIFIC/telemetry_rollup.json",
    f"{RUN}/telemetry_rollup.json",
)


@pytest.fixture(scope="module")
def tree(demo_trees) -> Path:
    return demo_trees.shared(runs=6, seed=0, refreshed=True).root  # read only


@pytest.mark.parametrize("relative", FILES, ids=[f.split("/", 3)[-1] for f in FILES])
def test_json_mirror_matches_its_golden_file(tree: Path, relative: str, request: pytest.FixtureRequest) -> None:
    written = (tree / relative).read_bytes()
    golden = GOLDEN / relative
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(written)
        return
    assert golden.is_file(), f"{golden} is missing: run pytest {__file__} --update-golden"
    expected = golden.read_bytes()
    if written != expected:
        diff = "".join(difflib.unified_diff(expected.decode().splitlines(True), written.decode().splitlines(True),
                                            f"golden/{relative}", f"refreshed/{relative}", n=2))
        pytest.fail(f"{relative} differs from its golden file (--update-golden rewrites it):\n{diff[:20000]}")


def test_the_golden_folder_holds_exactly_the_compared_files() -> None:
    kept = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert kept == set(FILES)
