"""The one-definition-per-file catalog gives bit-identical rows to the V001..V011 chain it
replaced, on the demo tree and on random trees.

The oracle is the released chain itself, read from git at the last commit that shipped it
(`LEGACY`), applied file by file to a second connection over the same source tables.
Since then distribution tiers need evidence (docs/design.md §5.4): the comparison runs
with the settings that give the chain's decision (`CHAIN_DECISION`) and on the chain's
columns, where the one status the chain lacks, INCONCLUSIVE, was COMPARED,
psi_significant was psi > psi_critical and a trend's thresholds had no tolerance.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck.catalog import fill_settings
from metricsduck.demo import write_demo
from test_cache import write_run

LEGACY = "255c007"  # the last commit of metricsduck/sql/V001__sources.sql … V011
REPO = Path(__file__).resolve().parents[1]
# every view of the chain, as its current definition is named now (V005's drift is drift_computed)
VIEWS = {
    "facts": "facts", "samples": "samples", "cohort_runs": "cohort_runs", "runs": "runs",
    "marks": "marks", "cohort_status": "cohort_status", "baselines": "baselines",
    "baseline_summary": "baseline_summary", "missing_baselines": "missing_baselines",
    "scalar_facts": "scalar_facts", "drift_scalar": "drift_scalar",
    "distribution_values": "distribution_values", "psi_bins": "psi_bins",
    "drift_distribution": "drift_distribution", "drift": "drift_computed", "trends": "trends",
    "population_pairs": "population_pairs", "population_values": "population_values",
    "population_drift": "population_drift", "rollup_view": "rollup_view", "view_dirs": "view_dirs",
    "rollup_stage": "rollup_stage", "fact_sources": "fact_sources", "sample_sources": "sample_sources",
}


def legacy_files() -> list[str]:
    try:
        names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", f"{LEGACY}:metricsduck/sql"],
                               check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the released SQL comes from git at {LEGACY}, which this checkout lacks ({exc})")
    return [subprocess.run(["git", "-C", str(REPO), "show", f"{LEGACY}:metricsduck/sql/{name}"],
                           check=True, capture_output=True, text=True).stdout
            for name in sorted(names) if name.endswith(".sql")]


# The chain's decisions in today's settings: an effect tiers without a chi-square test (a PSI
# above zero always has chi2_p < 1), KS at the chain's alpha with the asymptotic p, no LOW_N,
# and no metric with a good direction (so nothing is IMPROVED).
CHAIN_DECISION = """
safety:
  telemetry:
    drift:
      ks_alpha: 0.05
      psi_alpha: 1.0
      min_samples: 1
      ks_exact_max: 0
      direction:
""" + "".join(f"        {metric}: both\n" for metric in metricsduck.load_config().get("drift.direction"))
# and the chain's columns whose meaning changed, as it computed them
CHAIN_COLUMNS = {
    "status": "CASE status WHEN 'INCONCLUSIVE' THEN 'COMPARED' ELSE status END AS status",
    "psi_significant": "psi > psi_critical AS psi_significant",
    # trends: the thresholds compared without the four-ulp tolerance
    "direction": "CASE WHEN r2 >= (SELECT trend_min_r2 FROM settings_wide) AND abs(slope) * (n_runs - 1) "
                 ">= (SELECT trend_min_rel_change FROM settings_wide) * abs(mean) THEN CASE WHEN slope > 0 "
                 "THEN 'increasing' WHEN slope < 0 THEN 'decreasing' ELSE 'flat' END ELSE 'flat' END AS direction",
}

# what everything else is built on: enough to compare on a tree as big as the demo's
OUTPUTS = ("drift", "psi_bins", "trends", "rollup_view", "rollup_stage")


def assert_identical(root: Path, views: tuple[str, ...] = tuple(VIEWS)) -> None:
    """The views of the chain, over the same source rows: the same rows, bit for bit."""
    files = legacy_files()
    assert len(files) == 11
    config = root.parent / f"{root.name}.chain.yaml"
    config.write_text(CHAIN_DECISION)
    with metricsduck.connect(root, config=metricsduck.load_config(config), use_cache=False) as store:
        legacy = duckdb.connect()
        legacy.execute("SET TimeZone = 'UTC'")
        fill_settings(legacy, store.config, root)
        for table in ("facts_raw", "samples_raw", "marks_raw"):
            legacy.register("rows", store.sql(f"SELECT * FROM {table}").arrow())
            legacy.execute(f"CREATE TABLE {table} AS SELECT * FROM rows")
            legacy.unregister("rows")
        for text in files:
            for statement in duckdb.extract_statements(text):
                legacy.execute(statement.query)
        for old in views:
            new = VIEWS[old]
            expected = legacy.sql(f"SELECT * FROM {old}").arrow()
            expected = expected.read_all() if hasattr(expected, "read_all") else expected
            store.con.register("expected", expected)  # on the store's connection: queried through it
            try:
                columns = store.sql(f"SELECT * FROM {new} LIMIT 0").columns
                assert set(expected.column_names) <= set(columns), old
                # pair_id is a surrogate: the chain numbered pairs over the tree, now it hashes
                # their key columns (docs/design.md §13); the rows are compared without it
                compared = [c for c in expected.column_names if c != "pair_id"]
                expected = expected.select(compared)
                store.con.register("expected", expected)
                chain = ", ".join(CHAIN_COLUMNS.get(c, c) for c in compared)
                # hash() sees every bit of a double (-0.0 and NaN payloads included)
                got, want, both = store.con.sql(
                    f"WITH a AS (SELECT hash(COLUMNS(*)) FROM (SELECT {chain} FROM {new})), "
                    "b AS (SELECT hash(COLUMNS(*)) FROM expected) "
                    "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), "
                    "(SELECT count(*) FROM (SELECT * FROM a INTERSECT ALL SELECT * FROM b))").fetchall()[0]
                assert got == want == both, (old, got, want, both)
            finally:
                store.con.unregister("expected")
        legacy.close()


def test_the_demo_tree_gives_the_rows_of_the_released_chain(tmp_path: Path) -> None:
    write_demo(tmp_path, runs=5, seed=3)  # five runs: the first with trends
    # the chain predates text samples (docs/design.md §5.7): the demo's categorical one goes
    for path in tmp_path.rglob("telemetry_samples.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.filter(pc.is_null(table["value_text"])), path)
    assert_identical(tmp_path, OUTPUTS)


@pytest.mark.parametrize("seed", range(2))
def test_random_trees_give_the_rows_of_the_released_chain(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for run in range(int(rng.integers(3, 7))):
        write_run(tmp_path, rng, run)
    if seed == 1:  # marks: last_good_run follows them
        from click.testing import CliRunner

        from metricsduck.cli import main
        result = CliRunner().invoke(main, ["mark", str(tmp_path), "run01", "--bad", "--reason", "parity"])
        assert result.exit_code == 0, result.output
    assert_identical(tmp_path)
