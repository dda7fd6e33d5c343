"""examples/drift_analysis.ipynb runs end to end on a demo tree and is stored without outputs.

The notebook is executed with nbclient in a `python3` kernel (ipykernel of this venv),
pointed at a five-run demo tree through METRICSDUCK_DEMO_ROOT; any cell error fails the
test. Its outputs are then checked against what the demo injected.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient  # the dev extra installs these; a missing one is an error, not a skip
import nbformat
import pytest

from metricsduck.demo import COLLAPSE_TARGET, REGIME_NEW, SHIFT_SYMBOL, SHIFT_TARGET, TREND_TARGET, run_id_of

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "drift_analysis.ipynb"
RUNS = 5  # the fewest runs with every injection and a trend (trend.min_runs = 5)


@pytest.fixture(scope="module")
def tree(demo_trees, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_trees.copy(tmp_path_factory.mktemp("notebook_tree") / "tree", runs=RUNS, seed=0).root


@pytest.fixture(scope="module")
def executed(tree: Path, tmp_path_factory: pytest.TempPathFactory):
    """The notebook after running every cell (the kernel inherits this environment)."""
    workdir = tmp_path_factory.mktemp("notebook_cwd")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("METRICSDUCK_DEMO_ROOT", str(tree))
        env.setenv("MPLBACKEND", "Agg")  # headless; the notebook's %matplotlib inline renders PNGs
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=180,
                                         resources={"metadata": {"path": str(workdir)}})
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    return notebook


def outputs(notebook, kind: str) -> list:
    """Every output of one kind: 'stream' texts or a mime type of display/result data."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output["output_type"] == "stream":
                found.append(output["text"])
            elif kind != "stream" and kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


def test_stored_notebook_has_no_outputs_and_a_python3_kernel():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    markdown = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    assert len(markdown) >= 5  # each step is explained


@pytest.mark.slow  # runs the notebook in a kernel
def test_notebook_runs_without_errors(executed):
    errors = [o for cell in executed.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []
    assert all(cell.execution_count is not None for cell in executed.cells if cell.cell_type == "code")


@pytest.mark.slow  # runs the notebook in a kernel
def test_alert_table_shows_the_injected_collapse_and_shift(executed):
    text = "".join(outputs(executed, "stream"))
    count = re.search(r"(\d+) ALERT rows in (\S+)", text)
    assert count and int(count[1]) > 0 and count[2] == run_id_of(RUNS)
    alert_table = next(html for html in outputs(executed, "text/html") if "sanity_status" in html)
    for name in (COLLAPSE_TARGET, SHIFT_TARGET, SHIFT_SYMBOL, "mean_score", "oof_predictions"):
        assert name in alert_table


@pytest.mark.slow  # runs the notebook in a kernel
def test_figures_are_drawn(executed):
    # the heatmap, the trend line, one PSI/CDF figure for each of the two worst KS and the
    # category shares of the worst categorical sample
    assert len(outputs(executed, "image/png")) == 5


@pytest.mark.slow  # runs the notebook in a kernel
def test_trend_table_holds_the_injected_decline(executed):
    trend_table = next(text for text in outputs(executed, "text/plain") if "theil_sen_slope" in text)
    assert TREND_TARGET in trend_table and "composite_score" in trend_table


@pytest.mark.slow  # runs the notebook in a kernel
def test_bins_and_cdfs_add_up_to_the_drift_row(executed):
    """psi_bins and ecdf give back the PSI and KS D of the drift row they explain."""
    text = "".join(outputs(executed, "stream"))
    checks = re.findall(r"sum of bin contributions (\S+) = PSI (\S+); largest CDF gap (\S+) = KS D (\S+)", text)
    assert len(checks) == 2
    for psi_sum, psi, gap, ks_d in checks:
        assert float(psi_sum) == pytest.approx(float(psi), abs=2e-6)
        assert float(gap) == pytest.approx(float(ks_d), abs=2e-6)
        # both are injected: the shift (ALERT) and the collapse's five fold scores (LOW_N)
        assert float(psi) >= 0.2 and float(ks_d) >= 0.1


@pytest.mark.slow  # runs the notebook in a kernel
def test_category_shares_explain_the_injected_regime_shift(executed):
    text = "".join(outputs(executed, "stream"))
    (check,) = re.findall(r"largest share change (\S+) = linf (\S+); new \['(\w+)'\], gone \[\]", text)
    change, linf, new = check
    assert float(change) == pytest.approx(float(linf), abs=2e-6) and float(linf) >= 0.2
    assert new == REGIME_NEW


# --- results left undrained, stores left to the garbage collector ------------------------------

UNDRAINED_CELLS = [
    "import gc, json, metricsduck\nstore = metricsduck.connect(ROOT)",
    # each result is left undrained in Out[n], as Jupyter keeps it
    "store.trends(run='latest').arrow()",
    "store.rollups(run='latest', level='stage').arrow()",
    "store.drift(run='latest', tier='ALERT').arrow()",
    "store.psi_bins(run='latest').arrow()",
    "store.sql('select * from samples').arrow()",
    "print(json.dumps({'alerts': store.drift(run='latest', tier='ALERT').fetchall().__len__()}))",
    # the one-liner: the store is garbage-collected while its relation still reads its files
    "rows = metricsduck.connect(ROOT).sql(\"select count(*) from drift where tier = 'ALERT'\").fetchall()\n"
    "gc.collect()\nprint(json.dumps({'one_liner': rows[0][0]}))",
    "reader = metricsduck.connect(ROOT).sql('select * from samples').arrow()\ngc.collect()\n"
    "print(json.dumps({'samples': reader.read_all().num_rows}))",
    "summary = store.refresh()\nstore.reload()\n"
    "runs = store.sql('select count(*) from runs').fetchall()[0][0]\n"
    "print(json.dumps({'refreshed': len(summary.runs), 'runs': runs}))",
    "store.rollups(run='latest', level='view').arrow()",
    "print(json.dumps({'after_refresh': len(store.drift(run='latest', tier='ALERT').fetchall())}))",
]


@pytest.mark.slow  # runs a notebook in a kernel
def test_results_left_undrained_and_collected_stores_break_nothing(demo_trees, tmp_path):
    """Any order of calls works with results left undrained (each query runs on a cursor of
    its own), and a relation outlives the store it came from (its staged files stay until
    the store is closed or the process exits). The tree is not refreshed, so every sidecar
    is read from files the store staged."""
    import json

    import metricsduck

    root = demo_trees.copy(tmp_path / "tree", runs=RUNS, seed=0).root
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(f"ROOT = {str(root)!r}")] + [
        nbformat.v4.new_code_cell(source) for source in UNDRAINED_CELLS]
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=180,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    printed: dict[str, int] = {}
    for text in outputs(notebook, "stream"):
        for line in text.splitlines():
            printed.update(json.loads(line))
    with metricsduck.connect(root) as store:
        alerts = len(store.drift(run="latest", tier="ALERT").fetchall())
        samples = store.sql("select count(*) from samples").fetchall()[0][0]
    assert alerts > 0 and samples > 0
    assert printed == {"alerts": alerts, "one_liner": alerts, "samples": samples, "refreshed": RUNS,
                       "runs": RUNS, "after_refresh": alerts}
    readers = [o for cell in notebook.cells for o in cell.get("outputs", [])
               if o["output_type"] == "execute_result"]
    assert len(readers) == 6 and all("RecordBatchReader" in o["data"]["text/plain"] for o in readers)
