"""A filter value or run id the tree does not hold is an error naming the closest known
values (exit 4 from the CLI), never an empty result; `latest` takes any case and a run
folder's name stands for its run id."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from metricsduck.cli import main
from metricsduck.demo import SYMBOLS, TARGETS, run_id_of
from metricsduck.errors import InputError
from metricsduck.vocab import ROLLUP_MEASURES

RUNS = 6  # the `demo_store` fixture's tree


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.drift(view="CROSS_SECTIONL"),
     "view CROSS_SECTIONL: no such view in {root}; did you mean CROSS_SECTIONAL?"),
    (lambda s: s.drift(symbol="tsla"), "symbol tsla: no such symbol in {root}; did you mean TSLA?"),
    (lambda s: s.trends(metric="mean_scor"), "did you mean mean_score"),
    (lambda s: s.rollups(measure="worst_items"),
     "measure worst_items: no such measure in the view rollup; did you mean worst_item?"),
    (lambda s: s.drift(stage="NO_SUCH_STAGE"), "stage NO_SUCH_STAGE: no such stage in {root}; known: "),
    (lambda s: s.drift(run="demo_run_99"), "run demo_run_99: no such run in {root}; "),
    (lambda s: s.psi_bins(distribution="oof_prediction"), "did you mean oof_predictions"),
    (lambda s: s.drift(target=TARGETS[0] + "x"), f"did you mean {TARGETS[0]}"),
])
def test_an_unknown_value_is_an_error_with_the_closest_known_ones(demo_store, call, message):
    store, _, _ = demo_store
    with pytest.raises(InputError) as caught:
        call(store)
    assert message.format(root=store.root) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_run_lists_the_newest_run_ids(demo_store):
    store, _, _ = demo_store
    with pytest.raises(InputError, match="run nope") as caught:
        store.drift(run="nope")
    assert f"known: latest, {run_id_of(RUNS)}, {run_id_of(RUNS - 1)}" in str(caught.value)


def test_latest_takes_any_case_and_a_run_folder_stands_for_its_run(demo_store):
    store, _, _ = demo_store
    latest = store.drift(run="latest").fetchall()
    assert latest and store.drift(run="LATEST").fetchall() == latest
    assert store.drift(run=run_id_of(RUNS)).fetchall() == latest
    assert store.drift(run=f"run_{RUNS:02d}").fetchall() == latest  # the demo's run folder
    assert store.trends(run="Latest", symbol=SYMBOLS[0]).fetchall() == store.trends(
        run=run_id_of(RUNS), symbol=SYMBOLS[0]).fetchall()


def test_the_measures_the_filter_accepts_are_those_the_view_rollup_computes(demo_store):
    store, _, _ = demo_store
    measures = {m for (m,) in store.sql("SELECT DISTINCT measure FROM rollup_view").fetchall()}
    assert measures == set(ROLLUP_MEASURES)


@pytest.mark.parametrize(("args", "words"), [
    (["drift", "--view", "CROSS_SECTIONL"], "did you mean CROSS_SECTIONAL?"),
    (["drift", "--symbol", "tsla"], "did you mean TSLA?"),
    (["trend", "--metric", "mean_scor"], "did you mean mean_score"),
    (["rollup", "--measure", "worst_items"], "did you mean worst_item?"),
    (["drift", "--run", "demo_run_99"], "no such run"),
])
def test_the_cli_refuses_an_unknown_value_with_exit_4_and_one_line(demo_store, args, words):
    store, _, _ = demo_store
    result = CliRunner().invoke(main, [args[0], str(store.root), "--cached", *args[1:]])
    assert result.exit_code == 4, result.output
    (line,) = result.stderr.splitlines()
    assert words in line and result.stdout == ""


def test_the_cli_takes_choices_and_latest_in_any_case(demo_store):
    store, _, _ = demo_store
    upper = CliRunner().invoke(main, ["drift", str(store.root), "--cached", "--run", "latest", "--tier", "ALERT",
                                      "--format", "csv"])
    lower = CliRunner().invoke(main, ["drift", str(store.root), "--cached", "--run", "LATEST", "--tier", "alert",
                                      "--format", "CSV"])
    assert upper.exit_code == lower.exit_code == 0, (upper.output, lower.output)
    assert upper.stdout == lower.stdout and upper.stdout.count("\n") > 1
