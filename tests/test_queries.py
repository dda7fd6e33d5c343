"""Every ```sql recipe of docs/queries.md runs, and answers what the demo injected.

Each recipe runs twice over one five-run demo tree: (a) in the persisted catalog
`ROOT/.metricsduck/catalog.duckdb` made by `metricsduck.store.init`, opened read-only with
the duckdb module as the DuckDB CLI would open it (its views read the compacted cache the
refresh of `init` kept), and (b) through `metricsduck.connect(root).sql(...)`; both must
give the same rows. The DuckDB CLI of PyPI, older than the module, must answer them alike. The
recipes whose answer the demo dictates (demo.py plants a collapse and a shift in the last
run, a slow decline over all runs, a bad run 4 and a git commit change from run 5) are then
checked against those injections, using the demo's constants, never the views' own output.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import metricsduck
from metricsduck.demo import (
    BAD_RUN,
    COLLAPSE_TARGET,
    FINGERPRINT_RUN,
    IMPROVE_TARGET,
    REGIME_NEW,
    REGIME_TARGET,
    SHIFT_SYMBOL,
    SHIFT_TARGET,
    SYMBOLS,
    TARGETS,
    TREND_TARGET,
    run_id_of,
)
from metricsduck.store import catalog_path, init

DOC = Path(__file__).resolve().parents[1] / "docs" / "queries.md"
RUNS = 5  # the fewest runs with every injection and a trend (trend.min_runs = 5)
LATEST = run_id_of(RUNS)
COHORTS = len(TARGETS) * (1 + len(SYMBOLS))  # per run: 10 cross-sectional + 50 symbol-specific
CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"
KINDS = ("last_good_run", "previous_run", "rolling")


@dataclass(frozen=True)
class Recipe:
    question: str
    sql: str


def read_recipes(text: str) -> list[Recipe]:
    """Each ```sql block with the `### question` heading above it (one block per heading)."""
    recipes, question, blocks = [], None, re.split(r"^```sql\n(.*?)^```$", text, flags=re.S | re.M)
    for i, part in enumerate(blocks):
        if i % 2 == 0:
            headings = re.findall(r"^### (.+)$", part, re.M)
            question = headings[-1] if headings else None
        else:
            assert question is not None, f"a sql block has no ### question above it:\n{part}"
            recipes.append(Recipe(question, part))
            question = None  # the next block needs a heading of its own
    return recipes


RECIPES = read_recipes(DOC.read_text(encoding="utf-8"))


def recipe(words: str) -> Recipe:
    (found,) = [r for r in RECIPES if words in r.question]
    return found


@pytest.fixture(scope="module")
def tree(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = demo_trees.copy(tmp_path_factory.mktemp("queries_tree") / "tree", runs=RUNS, seed=0).root
    init(root)
    return root


@pytest.fixture(scope="module")
def catalog(tree: Path):
    con = duckdb.connect(str(catalog_path(tree)), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def store(tree: Path):
    with metricsduck.connect(tree) as store:
        yield store


@pytest.fixture(scope="module")
def answers(store):
    """Rows (as dicts) of each recipe through `connect`, computed once per recipe."""
    cache: dict[str, tuple[list[str], list[tuple]]] = {}

    def answer(words_or_recipe) -> list[dict]:
        r = words_or_recipe if isinstance(words_or_recipe, Recipe) else recipe(words_or_recipe)
        if r.question not in cache:
            relation = store.sql(r.sql)
            cache[r.question] = (relation.columns, relation.fetchall())
        columns, rows = cache[r.question]
        return [dict(zip(columns, row, strict=True)) for row in rows]

    return answer


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


# --- the document -------------------------------------------------------------------------


def test_the_document_holds_a_dozen_single_statement_questions():
    assert len(RECIPES) >= 12
    assert len({r.question for r in RECIPES}) == len(RECIPES)
    assert DOC.read_text(encoding="utf-8").count("```sql") == len(RECIPES)
    for r in RECIPES:
        assert r.question.endswith("?") or "?" in r.question, r.question
        assert len(duckdb.extract_statements(r.sql)) == 1, r.question
        # answers must not depend on the clock
        assert not re.search(r"\b(now|current_timestamp|current_date|today|get_current_time)\b", r.sql, re.I)


def test_the_document_says_how_to_open_the_catalog():
    text = DOC.read_text(encoding="utf-8")
    assert "duckdb -readonly demo-tree/.metricsduck/catalog.duckdb" in text
    assert "metricsduck init demo-tree" in text


# --- every recipe runs in both places --------------------------------------------------------


@pytest.mark.parametrize("r", RECIPES, ids=[r.question for r in RECIPES])
def test_recipe_runs_in_the_persisted_catalog_and_through_connect_alike(catalog, answers, r):
    relation = catalog.sql(r.sql)
    rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    expected = answers(r)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got.keys() == want.keys()
        assert all(same(got[k], want[k]) for k in got), (got, want)


def duckdb_cli() -> str:
    """The DuckDB CLI of PyPI (`duckdb-cli`, a dev dependency) installed beside this Python."""
    path = Path(sys.executable).parent / "duckdb"
    assert path.exists(), f"{path} is missing: `pip install -e '.[dev]'` installs the DuckDB CLI"
    return str(path)


def test_every_recipe_and_view_answers_alike_in_the_duckdb_cli_of_pypi(tree, catalog, store, answers, tmp_path):
    """The catalog is written in a storage version the newest CLI on PyPI reads (it is
    older than the duckdb module), and its SQL stays within what that CLI parses: one CLI
    process copies each recipe's rows and each view's row count to Parquet."""
    views = [name for (name,) in catalog.sql(
        "SELECT name FROM metricsduck_catalog WHERE kind = 'VIEW' ORDER BY name").fetchall()]
    script = [f"COPY ({r.sql.strip().rstrip(';')}) TO '{tmp_path}/recipe_{i}.parquet';" for i, r in enumerate(RECIPES)]
    script.append("COPY (" + " UNION ALL ".join(f"SELECT '{v}' AS view, count(*) AS n FROM {v}" for v in views)
                  + f") TO '{tmp_path}/counts.parquet';")
    script.append("SELECT version();")
    done = subprocess.run([duckdb_cli(), "-readonly", "-csv", "-noheader", str(catalog_path(tree))],
                          input="\n".join(script), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("v1."), done.stdout  # an older DuckDB than the module's 2.x

    counts = dict(pq.read_table(tmp_path / "counts.parquet").to_pylist()[i].values()
                  for i in range(len(views)))
    assert counts == {v: store.sql(f"SELECT count(*) FROM {v}").fetchall()[0][0] for v in views}
    assert counts["drift"] > 0 and counts["trends"] > 0
    for i, r in enumerate(RECIPES):
        rows = pq.read_table(tmp_path / f"recipe_{i}.parquet").to_pylist()
        expected = answers(r)
        assert len(rows) == len(expected), r.question
        for got, want in zip(rows, expected, strict=True):
            assert got.keys() == want.keys(), r.question
            assert all(same(got[k], want[k]) for k in got), (r.question, got, want)


# --- known answers ---------------------------------------------------------------------------


def injected(row: dict) -> str | None:
    """Which injection of the last run a drift row belongs to, if any."""
    if (row["view"], row["target"], row["symbol"]) == (CS, COLLAPSE_TARGET, None):
        return "collapse"
    if (row["view"], row["target"], row["symbol"]) == (SS, SHIFT_TARGET, SHIFT_SYMBOL):
        return "shift"
    if (row["view"], row["target"], row["symbol"]) == (CS, REGIME_TARGET, None):
        return "categorical_shift"
    return None


def test_worst_drifts_of_the_latest_run_are_the_collapse_and_the_shifts(answers):
    rows = answers("worst drifts of the latest run")
    assert rows and {injected(r) for r in rows} == {"collapse", "shift", "categorical_shift"}
    assert {r["tier"] for r in rows} == {"ALERT"}  # the demo's noise stays below every WARN
    # the shift's PSI (about 2) leads; the collapse's five fold_scores are LOW_N, not an alert
    assert (rows[0]["item"], injected(rows[0])) == ("oof_predictions", "shift") and rows[0]["psi"] > 1
    assert "fold_scores" not in {r["item"] for r in rows}
    assert {(r["item"], r["baseline_kind"]) for r in rows if injected(r) == "shift"} == {
        ("oof_predictions", kind) for kind in KINDS}
    collapse_metrics = {r["item"] for r in rows if injected(r) == "collapse" and r["item_kind"] == "metric"}
    assert collapse_metrics == {"mean_score", "composite_score"}
    assert all(-0.30 < r["rel_delta"] < -0.24 for r in rows if r["item_kind"] == "metric")
    regime = [r for r in rows if injected(r) == "categorical_shift"]
    assert {(r["item"], r["baseline_kind"]) for r in regime} == {("regime", kind) for kind in KINDS}
    assert all(r["psi"] is None and r["linf"] > 0.2 for r in regime)


def test_the_categories_that_moved_are_the_regimes_the_demo_relabelled(answers):
    rows = answers("categories moved")
    assert {injected(r) for r in rows} == {"categorical_shift"}  # the only categorical ALERT
    assert [r["category"] for r in rows][:2] == ["calm", "volatile"]  # half the calm rows relabelled
    assert rows[0]["share_change"] < -0.2 < 0.2 < rows[1]["share_change"]
    halted = next(r for r in rows if r["category"] == REGIME_NEW)
    assert (halted["baseline_count"], halted["categories_new"], halted["categories_gone"]) == (0, [REGIME_NEW], [])


def test_the_latest_run_has_the_most_alerts_and_no_other_run_has_any(answers):
    rows = answers("runs have the most ALERTs")
    assert [r["run_id"] for r in rows] == [run_id_of(i) for i in range(RUNS, 0, -1)]
    assert rows[0]["alerts"] > 0 and rows[0]["cohorts_alerting"] == 3
    assert rows[0]["alerts"] == rows[0]["metric_alerts"] + rows[0]["distribution_alerts"]
    assert all(r["alerts"] == 0 and r["warns"] == 0 for r in rows[1:])


def test_largest_rolling_z_scores_are_the_collapsed_and_the_improved_metrics(answers):
    rows = answers("largest z-score")
    assert len(rows) == 10
    top = {(r["target"], r["metric"]): r for r in rows[:4]}
    assert {(r["view"], r["target"], r["metric"]) for r in top.values()} == {
        (CS, target, metric)
        for target in (COLLAPSE_TARGET, IMPROVE_TARGET) for metric in ("mean_score", "composite_score")}
    for (target, _), r in top.items():
        assert r["baseline_runs"] == RUNS - 1
        if target == COLLAPSE_TARGET:
            assert r["z"] < -20 and (r["tier"], r["status"]) == ("ALERT", "COMPARED"), r
        else:  # higher is better: as far the good way is IMPROVED, not an alert
            assert r["z"] > 20 and (r["tier"], r["status"]) == ("OK", "IMPROVED"), r
    assert all(r["tier"] == "OK" for r in rows[4:])


def test_only_the_shifted_symbol_drifts_and_in_one_target_only(answers):
    rows = answers("more than half of their targets")
    assert sorted(r["symbol"] for r in rows) == sorted(SYMBOLS)
    assert (rows[0]["symbol"], rows[0]["drifting_targets"], rows[0]["targets"]) == (SHIFT_SYMBOL, 1, len(TARGETS))
    assert all(r["drifting_targets"] == 0 for r in rows[1:])
    assert not any(r["more_than_half"] for r in rows)


def test_baseline_kinds_agree_on_every_injected_alert(answers):
    rows = answers("baseline kinds agree")
    assert {(r["view"], r["target"], r["symbol"], r["item"]) for r in rows} == {
        (CS, COLLAPSE_TARGET, None, "mean_score"), (CS, COLLAPSE_TARGET, None, "composite_score"),
        (SS, SHIFT_TARGET, SHIFT_SYMBOL, "oof_predictions"), (CS, REGIME_TARGET, None, "regime")}
    assert all(r["kinds_agree"] and r["previous_run"] == r["rolling"] == r["last_good_run"] == "ALERT"
               for r in rows)


def test_psi_bins_driving_the_shift_alert_are_its_emptied_lowest_bins(answers):
    rows = answers("PSI bins drive")
    assert {injected(r) for r in rows} == {"shift"}  # the only distribution ALERT
    shift = [r for r in rows if injected(r) == "shift"]
    assert len(shift) == 3 and all(r["distribution"] == "oof_predictions" for r in shift)
    # oof_predictions moved up by 0.15: the bins below the baseline's lowest deciles empty out
    assert {r["bin"] for r in shift[:2]} == {0, 1}
    assert all(r["current_count"] == 0 and r["baseline_count"] > 0 for r in shift[:2])
    assert shift[0]["lower_edge"] is None or shift[1]["lower_edge"] is None
    assert all(0 < r["share_of_psi"] < 1 for r in rows)


def test_targets_trending_down_are_the_injected_decline_and_collapse(answers):
    rows = answers("targets trend down")
    found = {(r["view"], r["target"], r["symbol"], r["metric"]): r for r in rows}
    decline = (CS, TREND_TARGET, None, "composite_score")
    assert decline in found
    # over five runs the last run's ~27% collapse also fits a decreasing line; nothing else may
    assert set(found) <= {decline, (CS, COLLAPSE_TARGET, None, "mean_score"),
                          (CS, COLLAPSE_TARGET, None, "composite_score")}
    row = found[decline]
    assert row["n_runs"] == RUNS and row["slope_per_run"] < 0 and row["r2"] > 0.9
    # 1.5% per run, compounded over RUNS - 1 steps (plus noise below 0.6% a run)
    assert row["change"] == pytest.approx((1 - 0.015) ** (RUNS - 1) - 1, abs=0.012)


def test_the_slow_decline_is_missed_by_every_run_to_run_check(answers):
    rows = answers("slow declines")
    assert [(r["target"], r["metric"]) for r in rows] == [(TREND_TARGET, "composite_score")]
    assert -0.05 < rows[0]["largest_step_drop"] < 0  # each step below the 5% WARN tier


def test_the_run_after_the_bad_run_reaches_two_runs_back(answers):
    rows = answers("more than one run back")
    assert len(rows) == COHORTS
    assert {(r["run_id"], r["last_good_run"], r["runs_back"]) for r in rows} == {
        (run_id_of(BAD_RUN + 1), run_id_of(BAD_RUN - 1), 2)}


def test_the_bad_run_is_the_demos_and_the_pipeline_said_so(answers):
    rows = answers("Which runs are bad")
    assert rows == [{"run_id": run_id_of(BAD_RUN), "cohort_runs": COHORTS, "bad": COHORTS,
                     "unknown": 0, "decided_by": "good"}]


def test_fingerprints_differ_across_the_git_commit_change(answers):
    rows = answers("fingerprints differ")
    first_new = run_id_of(FINGERPRINT_RUN)
    assert {r["fingerprint_diff"] for r in rows} == {"git_commit"}
    assert all(r["cohort_runs"] == COHORTS for r in rows)
    by_kind = {(r["run_id"], r["baseline_kind"]) for r in rows}
    # previous_run and last_good_run compare unlike commits only in the first run of the new
    # one; rolling pools older runs, so every later run mixes in the old commit
    assert {run for run, kind in by_kind if kind == "previous_run"} == {first_new}
    assert {run for run, kind in by_kind if kind == "last_good_run"} == {first_new}
    assert {run for run, kind in by_kind if kind == "rolling"} == {
        run_id_of(i) for i in range(FINGERPRINT_RUN, RUNS + 1)}


def test_only_the_first_run_has_no_baseline_and_nothing_lacks_data(answers):
    rows = answers("NO_BASELINE")
    assert {r["run_id"] for r in rows} == {run_id_of(1)}
    assert {r["status"] for r in rows} == {"NO_BASELINE"}
    assert {(r["baseline_kind"], r["item_kind"]) for r in rows} == {
        (kind, item) for kind in KINDS for item in ("metric", "distribution")}
    assert all(r["cohorts"] == COHORTS for r in rows)


def test_population_drift_rows_are_significant(answers):
    rows = answers("shifted as a population")
    assert all(r["psi"] > r["psi_critical"] and r["tier"] in ("WARN", "ALERT") for r in rows)


def test_each_views_drift_shows_alert_in_the_latest_run_only(answers):
    rows = answers("drift move from run to run")
    assert len(rows) == 2 * RUNS
    for r in rows:
        assert r["cohorts"] == (len(TARGETS) if r["view"] == CS else len(TARGETS) * len(SYMBOLS))
        if r["run_id"] == run_id_of(1):
            assert r["worst_tier"] is None and r["alert_share"] is None
        elif r["run_id"] == LATEST:
            assert r["worst_tier"] == "ALERT" and r["tier_alert"] > 0
        else:
            assert r["worst_tier"] == "OK" and r["tier_alert"] == r["tier_warn"] == 0
