"""The `metricsduck` command: exit codes, exact output, read-only queries, import hygiene."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

import metricsduck
from metricsduck.catalog import discover
from metricsduck.cli import main
from metricsduck.writer import write_cohort_metrics

README = Path(__file__).resolve().parents[1] / "README.md"
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def write_run(root: Path, index: int, score: float, *, good: bool | None = True) -> None:
    """One run of two cross-sectional targets, written straight through the writer."""
    for target in ("t_a", "t_b"):
        folder = (root / f"run_{index}" / "REPRODUCIBILITY" / "TARGET_RANKING" / "CROSS_SECTIONAL"
                  / target / "cohort=c1")
        write_cohort_metrics(
            folder, run_id=f"run_{index}", run_started_at=START + timedelta(days=index),
            written_at=START + timedelta(days=index, hours=1),
            stage="TARGET_RANKING", view="CROSS_SECTIONAL", target=target,
            metrics={"mean_score": score, "task_type": "binary"}, good=good,
            samples={"oof": [0.1 * (i % 10) + score for i in range(50)]},
        )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, 1, 0.60)
    write_run(root, 2, 0.61, good=False)
    write_run(root, 3, 0.40)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_help_lists_every_command_and_each_has_an_example(runner: CliRunner) -> None:
    result = run(runner, "--help")
    assert result.exit_code == 0
    for name, command in main.commands.items():
        assert name in result.output
        assert command.help and "Example: metricsduck " + name in command.help


def test_every_command_appears_in_the_readme() -> None:
    text = README.read_text("utf-8")
    for name in main.commands:
        assert re.search(rf"metricsduck {name}\b", text), f"README does not show `metricsduck {name}`"


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from metricsduck.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('heavy=' + ','.join(m for m in ('duckdb', 'pyarrow', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "heavy="


def test_a_command_in_its_own_process_does_not_import_pandas_yet_pyarrow_still_can(tmp_path: Path) -> None:
    """pyarrow imports pandas (0.25 s, 100 MB) just to ask whether values are pandas objects;
    the command settles that question without it, and a later real use still works."""
    pytest.importorskip("pandas")  # the dev extra installs it, as most notebook users have
    code = (
        "import sys\n"
        "from metricsduck.cli import run\n"
        f"sys.argv = ['metricsduck', 'drift', {str(tmp_path / 'empty')!r}]\n"
        "try:\n    run()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print('pandas', 'pandas' in sys.modules)\n"
        "import pyarrow as pa\n"
        "print(type(pa.table({'a': [1]}).to_pandas()).__name__)\n"
    )
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-2:] == ["pandas False", "DataFrame"], out.stdout + out.stderr


def test_version(runner: CliRunner) -> None:
    result = run(runner, "--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"metricsduck, version \d+\.\d+\.\d+(\.dev\d+)?\n", result.output)


@pytest.mark.parametrize("command", [
    ["status"], ["check"], ["refresh"], ["drift", "--run", "latest"], ["trend"], ["rollup"],
    ["sql", "select 1"], ["mark", "run_1", "--bad"], ["report", "--run", "latest", "-o", "{tmp}/r.html"],
], ids=lambda c: c[0])
def test_a_missing_root_is_exit_4_naming_it_and_nothing_is_created(runner: CliRunner, tmp_path: Path,
                                                                   command: list[str]) -> None:
    """A mistyped ROOT is an error, never an empty tree (nor, for refresh, a new folder)."""
    root = tmp_path / "RESULST"
    args = [command[0], str(root), *(a.format(tmp=tmp_path) for a in command[1:])]
    result = run(runner, *args)
    assert result.exit_code == 4, result.output
    assert result.stderr == (f"metricsduck: error: {root}: no such folder; give the results tree (the folder "
                             f"that holds the run folders), or write a demo tree there with "
                             f"`metricsduck demo {root}`\n")
    assert list(tmp_path.iterdir()) == []


def test_init_creates_a_missing_root_on_purpose(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "init", tmp_path / "new")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / ".metricsduck" / "catalog.duckdb").is_file()


def test_status_on_an_empty_folder_is_exact_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    result = run(runner, "status", root, "--format", "csv")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "section,item,value"
    assert lines[1] == f"tree,root,{root.resolve()}"
    assert "catalog,persisted,no (`metricsduck init` writes one)" in lines
    facts = discover()["facts"].fingerprint[:12]
    assert f"sql,views/facts.sql,{facts} not persisted" in lines
    assert len([line for line in lines if line.startswith("sql,")]) == len(discover())
    assert lines[-13:] == ["data,metric sidecars,0", "data,sample sidecars,0", "data,runs,0",
                           "data,cohort-runs,0", "data,baseline keys,0", "data,fact rows,0",
                           "data,bad files,0", f"cache,folder,{root.resolve()}/.metricsduck/cache",
                           "cache,tree walked,yes", "cache,sidecars read from the cache,0",
                           "cache,sidecars read from the tree,0",
                           "cache,cohort-runs with drift cached,0", "cache,cohort-runs to refresh,0"]
    assert files_under(root) == []


def test_init_persists_a_catalog_usable_from_any_directory(
        runner: CliRunner, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(runner, "init", tree, "--format", "csv")
    assert result.exit_code == 0
    total = len(discover())
    assert result.stdout.splitlines()[0] == "before,definitions,names"
    assert result.stdout.splitlines()[1].startswith(f"not persisted,{total},")
    written = tree / ".metricsduck" / "catalog.duckdb"
    assert result.stderr.splitlines()[-1] == f"metricsduck: catalog written to {written}"
    done = f"metricsduck: catalog: {len(discover())}/{len(discover())}, "
    assert any(line.startswith(done) for line in result.stderr.splitlines()), result.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    con = duckdb.connect(str(tree / ".metricsduck" / "catalog.duckdb"), read_only=True)
    assert con.sql("select count(*) from facts").fetchall() == [(12,)]
    assert con.sql("select count(*) from drift where tier = 'ALERT'").fetchall()[0][0] > 0
    con.close()
    again = run(runner, "init", tree, "--format", "csv")
    names = ", ".join(d.name for d in list(discover())[:4])
    assert again.stdout.splitlines()[1:] == [f'current,{total},"{names} …"']  # csv quotes the commas


def test_sql_prints_rows_in_each_format(runner: CliRunner, tree: Path) -> None:
    query = "select run_id, count(*) as n from cohort_runs group by run_id order by run_id"
    as_json = run(runner, "sql", tree, query, "--format", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == [{"run_id": f"run_{i}", "n": 2} for i in (1, 2, 3)]
    as_csv = run(runner, "sql", tree, query, "--format", "csv")
    assert as_csv.output == "run_id,n\nrun_1,2\nrun_2,2\nrun_3,2\n"
    as_table = run(runner, "sql", tree, query)
    assert as_table.output == "run_id  n\n------  -\nrun_1   2\nrun_2   2\nrun_3   2\n"


def test_zero_rows_still_print_a_header_or_empty_list(runner: CliRunner, tree: Path) -> None:
    query = "select run_id from runs where false"
    assert run(runner, "sql", tree, query, "--format", "json").output == "[]\n"
    assert run(runner, "sql", tree, query, "--format", "csv").output == "run_id\n"
    assert run(runner, "sql", tree, query).output == "run_id\n------\n"


def test_bad_query_is_one_line_on_stderr_with_exit_4(tree: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["sql", str(tree), "select * from nope"])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert re.fullmatch(r"metricsduck: error: query failed: .*nope.*\n", result.stderr)


@pytest.mark.parametrize(("query", "hint"), [
    ("select * from fact", 'Did you mean "facts"?'),
    ("select metrc from facts", 'Candidate bindings: "metric", "target"'),
    ("selec 1", "LINE 1: selec 1"),
], ids=["table", "column", "syntax"])
def test_a_bad_query_keeps_duckdbs_hints_on_its_one_line(tree: Path, query: str, hint: str) -> None:
    result = CliRunner().invoke(main, ["sql", str(tree), query])
    assert result.exit_code == 4 and result.stderr.count("\n") == 1
    assert hint in result.stderr, result.stderr


def test_missing_config_file_exits_3_and_writes_nothing(tree: Path) -> None:
    before = files_under(tree)
    result = CliRunner().invoke(main, ["init", str(tree), "--config", str(tree / "none.yaml")])
    assert result.exit_code == 3
    assert result.stderr.startswith("metricsduck: error: ") and "none.yaml" in result.stderr
    assert files_under(tree) == before


def test_debug_shows_the_traceback(tree: Path) -> None:
    result = CliRunner().invoke(main, ["--debug", "init", str(tree), "--config", str(tree / "x.yaml")])
    assert result.exit_code != 0
    assert result.exception is not None and type(result.exception).__name__ == "ConfigError"


def test_output_file_option_writes_the_rows(runner: CliRunner, tree: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = run(runner, "sql", tree, "select 1 as one", "--format", "json", "-o", target)
    assert result.output == ""
    assert json.loads(target.read_text()) == [{"one": 1}]


def test_drift_filters_are_bound_not_pasted(runner: CliRunner, tree: Path) -> None:
    hostile = run(runner, "drift", tree, "--target", "x' OR 1=1 --", "--format", "json")
    assert hostile.exit_code == 4 and "target x' OR 1=1 --: no such target" in hostile.stderr
    assert hostile.stdout == ""
    real = json.loads(run(runner, "drift", tree, "--target", "t_a", "--format", "json").stdout)
    assert real and {row["target"] for row in real} == {"t_a"}


def test_drift_latest_alerts_name_the_collapse(runner: CliRunner, tree: Path) -> None:
    result = run(runner, "drift", tree, "--run", "latest", "--tier", "ALERT", "--item", "metric",
                 "--baseline", "previous_run", "--format", "json")
    rows = json.loads(result.stdout)
    assert {(r["target"], r["item"], r["baseline_run_id"]) for r in rows} == {
        ("t_a", "mean_score", "run_2"), ("t_b", "mean_score", "run_2")}
    assert all(r["current_value"] == 0.40 and r["baseline_value"] == 0.61 for r in rows)


def test_mark_changes_the_last_good_baseline_at_once(runner: CliRunner, tree: Path) -> None:
    def last_good() -> set[str]:
        rows = json.loads(run(runner, "drift", tree, "--run", "run_3", "--baseline", "last_good_run",
                              "--format", "json").stdout)
        return {r["baseline_run_id"] for r in rows}

    assert last_good() == {"run_1"}  # run_2 has good = false
    marked = run(runner, "mark", tree, "run_2", "--good", "--reason", "re-checked", "--format", "csv")
    assert marked.exit_code == 0
    assert marked.stdout.splitlines()[1].startswith("run_2,True,re-checked,")
    assert marked.stderr.startswith("metricsduck: 3 run(s) stale now (run_1, run_2, run_3): their drift files")
    assert marked.stderr.endswith(f"`metricsduck refresh {tree}` rewrites them\n")
    assert last_good() == {"run_2"}
    refreshed = run(runner, "refresh", tree)
    assert refreshed.exit_code == 0
    # a refreshed tree: a mark that changes no verdict makes nothing stale; one that does, only
    # the runs after it (whose last_good_run it may move)
    assert run(runner, "mark", tree, "run_2", "--good", "--reason", "re-checked twice").stderr == ""
    again = run(runner, "mark", tree, "run_2", "--bad")
    assert again.stderr.startswith("metricsduck: 1 run(s) stale now (run_3): ")
    assert last_good() == {"run_1"}
    assert run(runner, "refresh", tree).exit_code == 0
    assert run(runner, "mark", tree, "run_3", "--bad").stderr == ""  # the newest: nothing after it


def test_mark_of_an_unknown_run_exits_4_and_writes_nothing(tree: Path) -> None:
    before = files_under(tree)
    result = CliRunner().invoke(main, ["mark", str(tree), "run_9", "--bad"])
    assert result.exit_code == 4
    assert "run run_9: no such run in" in result.stderr and "did you mean run_3" in result.stderr
    assert files_under(tree) == before


def test_refresh_writes_drift_files_then_nothing(runner: CliRunner, tree: Path) -> None:
    first = run(runner, "refresh", tree, "--format", "csv")
    assert first.exit_code == 0
    # 6 cohort-runs x 2 drift files, 3 runs x (1 view + 1 stage) x 2 rollup files; no trend
    # yet (trend.min_runs is 5)
    assert "runs refreshed,3" in first.output and "files written,24" in first.output
    drift_files = sorted(tree.rglob("telemetry_drift.*")) + sorted(tree.rglob("telemetry_rollup.*"))
    assert len(drift_files) == 24 and not list(tree.rglob("telemetry_trend.*"))
    stamps = {p: p.stat().st_mtime_ns for p in drift_files}
    second = run(runner, "refresh", tree, "--format", "csv")
    assert "runs refreshed,0" in second.output and "files written,0" in second.output
    forced = run(runner, "refresh", tree, "--all", "--format", "csv")
    assert "files written,0" in forced.output and "files unchanged,24" in forced.output
    assert {p: p.stat().st_mtime_ns for p in drift_files} == stamps


def test_refresh_of_an_unknown_run_exits_4(tree: Path) -> None:
    result = CliRunner().invoke(main, ["refresh", str(tree), "--run", "nope"])
    assert result.exit_code == 4
    assert "run 'nope' is not in" in result.stderr


def test_refresh_reports_files_it_cannot_write_and_keeps_going(tree: Path) -> None:
    blocked = next(tree.rglob("run_3/**/t_a/cohort=c1"))
    (blocked / "telemetry_drift.parquet").mkdir()  # a folder where the file should go
    result = CliRunner().invoke(main, ["refresh", str(tree), "--format", "csv"])
    assert result.exit_code == 6
    assert "files failed,1" in result.stdout and "files written,23" in result.stdout
    assert "could not write" in result.stderr and str(blocked) in result.stderr


def test_exit_codes_are_documented_in_help_and_readme(runner: CliRunner) -> None:
    from metricsduck.errors import ExitCode

    text = README.read_text("utf-8")
    for code in ExitCode:
        assert f"| {int(code)} |" in text, f"exit code {int(code)} is not in the README table"


def test_metricsduck_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("metricsduck")
    assert exe.exists()
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0 and "Usage: metricsduck" in out.stdout


def test_catalog_made_on_an_empty_tree_sees_what_later_refreshes_cache_and_marks(
        runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "later"
    assert run(runner, "init", root).exit_code == 0
    catalog = str(root / ".metricsduck" / "catalog.duckdb")
    con = duckdb.connect(catalog, read_only=True)
    assert con.sql("select count(*) from facts").fetchall() == [(0,)]
    assert con.sql("select count(*) from drift").fetchall() == [(0,)]
    con.close()
    write_run(root, 1, 0.5)
    write_run(root, 2, 0.5)
    assert run(runner, "mark", root, "run_1", "--bad").exit_code == 0
    con = duckdb.connect(catalog, read_only=True)
    assert con.sql("select count(*) from facts").fetchall() == [(0,)]  # not refreshed yet
    assert con.sql("select run_id, good from marks").fetchall() == [("run_1", False)]  # marks are live
    con.close()
    assert run(runner, "refresh", root).exit_code == 0
    con = duckdb.connect(catalog, read_only=True)
    assert con.sql("select count(*) from facts").fetchall() == [(8,)]
    drift = con.sql("select run_id, item, baseline_kind, baseline_run_id from drift "
                    "where run_id = 'run_2' order by all").fetchall()
    con.close()
    with metricsduck.connect(root) as store:
        assert drift == store.sql("select run_id, item, baseline_kind, baseline_run_id from drift "
                                  "where run_id = 'run_2' order by all").fetchall()
    assert drift and all(kind != "last_good_run" or base is None for _, _, kind, base in drift)


# --- habits: ordering, limits, output files, usage errors, Ctrl-C --------------------------------

def test_drift_is_worst_first_by_tier_then_by_how_far_it_moved(runner: CliRunner, demo_trees, tmp_path: Path) -> None:
    demo = demo_trees.copy(tmp_path / "demo", runs=4, seed=0, refreshed=True)
    result = run(runner, "drift", demo.root, "--run", "latest", "--format", "json")
    rows = json.loads(result.stdout)
    rank = {"ALERT": 2, "WARN": 1, "OK": 0, None: -1}

    def magnitude(r: dict) -> tuple[float, float]:
        first = abs(r["rel_delta"]) if r["rel_delta"] is not None else r["psi"] if r["psi"] is not None else r["linf"]
        return (-1.0 if first is None else first, -1.0 if r["ks_d"] is None else r["ks_d"])

    keys = [(rank[r["tier"]], *magnitude(r)) for r in rows]
    assert keys == sorted(keys, reverse=True) and {r["tier"] for r in rows} >= {"ALERT", "OK"}
    limited = json.loads(run(runner, "drift", demo.root, "--run", "latest", "--limit", "5", "--format", "json").stdout)
    assert limited == rows[:5]
    metric = json.loads(run(runner, "drift", demo.root, "--run", "latest", "--metric", "mean_score",
                            "--format", "json").stdout)
    assert metric == [r for r in rows if r["item_kind"] == "metric" and r["item"] == "mean_score"] != []
    # --metric names a distribution as well; a typo or the wrong item kind names what to fix
    regime = json.loads(run(runner, "drift", demo.root, "--run", "latest", "--metric", "regime",
                            "--format", "json").stdout)
    assert regime == [r for r in rows if r["item"] == "regime"] != []
    assert {r["kind"] for r in regime} == {"categorical"}
    typo = run(runner, "drift", demo.root, "--metric", "regim")
    assert typo.exit_code == 4 and "metric regim: no such metric" in typo.stderr
    assert "did you mean regime" in typo.stderr
    wrong = run(runner, "drift", demo.root, "--metric", "regime", "--item", "metric")
    assert wrong.exit_code == 4 and "regime is a distribution, not a metric; drop item 'metric'" in wrong.stderr


def test_output_files_take_their_format_from_the_extension_and_need_their_folder(runner: CliRunner, tree: Path,
                                                                                  tmp_path: Path) -> None:
    run(runner, "status", tree, "-o", tmp_path / "status.json")
    assert json.loads((tmp_path / "status.json").read_text())[0].keys() == {"section", "item", "value"}
    run(runner, "status", tree, "-o", tmp_path / "status.CSV")
    assert (tmp_path / "status.CSV").read_text().splitlines()[0] == "section,item,value"
    run(runner, "status", tree, "-o", tmp_path / "status.txt")
    assert (tmp_path / "status.txt").read_text().startswith("section")  # a table
    result = run(runner, "drift", tree, "-o", tmp_path / "no_such_folder" / "drift.csv")
    assert result.exit_code == 6
    assert result.stderr == (f"metricsduck: error: {tmp_path / 'no_such_folder' / 'drift.csv'}: the folder "
                             f"{tmp_path / 'no_such_folder'} does not exist; create it or write somewhere else\n")
    assert not (tmp_path / "no_such_folder").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["drift", "{root}", "--tierr", "ALERT"], "No such option '--tierr'"),
    (["drift"], "Missing argument 'ROOT'"),
    (["drift", "{root}", "--limit", "0"], "Invalid value for '--limit'"),
], ids=["typo", "missing-root", "bad-limit"])
def test_a_usage_error_is_one_line_and_exit_2(runner: CliRunner, tree: Path, args: list[str], message: str) -> None:
    result = run(runner, *(a.format(root=tree) for a in args))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"metricsduck: error: {message}")
    assert result.stderr.endswith("(see `metricsduck drift --help`)\n")


def test_ctrl_c_exits_130_saying_so(tmp_path: Path) -> None:
    """A refresh waiting for the lock another refresh holds is stopped by Ctrl-C (SIGINT):
    the signal is sent once the command says it is waiting, never after a sleep."""
    import fcntl
    import signal

    root = tmp_path / "tree"
    (root / ".metricsduck").mkdir(parents=True)
    with open(root / ".metricsduck" / "refresh.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen([sys.executable, "-m", "metricsduck", "refresh", str(root)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "waiting for the refresh lock" in line, line
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=60) == 130, line + rest
    assert rest.splitlines()[-1] == "metricsduck: error: interrupted"


def test_ctrl_c_stops_a_long_query_with_exit_130(tmp_path: Path) -> None:
    """Ctrl-C inside a DuckDB query: the signal is sent once the command has spent a second of
    CPU in a query that would run for hours (its state, read from /proc, not the clock)."""
    import signal

    (tmp_path / "tree").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "metricsduck", "sql", str(tmp_path / "tree"),
                                "SELECT count(*) FROM range(1e12::BIGINT) t(i) WHERE i % 7 = 3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stat = Path(f"/proc/{process.pid}/stat")
    while process.poll() is None and sum(map(int, stat.read_text().split()[13:15])) < os.sysconf("SC_CLK_TCK"):
        time.sleep(0.05)  # polls the process's state; no assertion depends on the time
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "metricsduck: error: interrupted" and out == ""


def test_progress_in_a_log_says_the_count_the_time_spent_and_the_time_left(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "demo", tmp_path / "demo", "--runs", "2")
    lines = [line for line in result.stderr.splitlines() if line.startswith("metricsduck: demo: ")]
    assert len(lines) == 3, result.stderr  # start, half way, end: a log is not flooded
    # the first step carries the start-up: the time left is told from the pace after it
    assert re.fullmatch(r"metricsduck: demo: 1/(\d+), \d+ s elapsed", lines[0])
    assert re.fullmatch(r"metricsduck: demo: \d+/\d+, \d+ s elapsed, about \d+ s left", lines[1])
    total = lines[0].split("/")[1].split(",")[0]
    assert re.fullmatch(rf"metricsduck: demo: {total}/{total}, \d+ s elapsed", lines[-1])


def test_progress_on_a_terminal_is_clicks_bar_with_the_count(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()  # a real terminal for the command's stderr
    process = subprocess.Popen([sys.executable, "-m", "metricsduck", "demo", str(tmp_path / "demo"), "--runs", "2"],
                               stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the command closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert process.wait(timeout=120) == 0
    last = seen.decode(errors="replace").split("\r")[-2]
    assert re.search(r"demo\s+\[#+\]\s+(\d+)/\1", last), last


@pytest.mark.parametrize("command", ["drift", "trend"])
def test_tables_show_the_main_columns_and_wide_shows_every_one(runner: CliRunner, tree: Path, command: str) -> None:
    from metricsduck.cli import DRIFT_TABLE_COLUMNS, TREND_TABLE_COLUMNS

    narrow = {"drift": DRIFT_TABLE_COLUMNS, "trend": TREND_TABLE_COLUMNS}[command]
    every = run(runner, command, tree, "--format", "csv").stdout.splitlines()[0].split(",")
    assert set(narrow) < set(every)  # json and csv always carry every column
    assert run(runner, command, tree).stdout.split("\n")[0].split() == list(narrow)
    assert run(runner, command, tree, "--wide").stdout.split("\n")[0].split() == every


def test_mark_takes_latest_and_a_run_folder_like_the_filters(runner: CliRunner, tree: Path) -> None:
    assert run(runner, "mark", tree, "LATEST", "--bad", "--format", "csv").stdout.splitlines()[1].startswith("run_3,")
    assert run(runner, "mark", tree, "run_2", "--good", "--format", "csv").stdout.splitlines()[1].startswith("run_2,")


def test_report_into_a_missing_folder_is_exit_6_before_any_work(tree: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tree), "-o", str(tmp_path / "nowhere" / "r.html")])
    assert result.exit_code == 6, result.output
    assert "nowhere" in result.stderr and not (tmp_path / "nowhere").exists()
