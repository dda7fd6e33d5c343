"""The `metricsduck` command: parse options, call the library, render rows.

Heavy libraries (duckdb, pyarrow, numpy) are imported inside commands so that
`metricsduck --help` starts fast. Only this module turns errors into exit codes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .errors import ExitCode, InputError, MetricsDuckError
from .vocab import BASELINE_KINDS, DIRECTIONS, ITEM_KINDS, LEVELS, TIERS

if TYPE_CHECKING:
    from .config import Config
    from .store import Store

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 problems found, 2 usage, 3 config, 4 bad input, "
    "5 SQL catalog, 6 file I/O, 7 out of memory or spill space, 70 internal error, 130 interrupted."
)


def fail(message: str, code: int) -> None:
    click.echo(f"metricsduck: error: {message}", err=True)
    sys.exit(int(code))


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
OWN_PROCESS = "own_process"  # in ctx.obj: the command runs in a process of its own (`run`)
CONFIG_META = "metricsduck.config"  # in ctx.meta: the config the command resolved


class Group(click.Group):
    """Turns MetricsDuckError into one stderr line and its exit code (--debug: traceback);
    usage errors are one line too (exit 2), Ctrl-C exit 130."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except _NO_ARGS as exc:  # bare `metricsduck`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            # the command as the user types it, whatever the program was invoked as
            command = " ".join(["metricsduck", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
            where = f" (see `{command} --help`)"
            fail(exc.format_message() + where, ExitCode.USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:  # click's name for Ctrl-C (and end of input at a prompt)
            fail("interrupted", ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        if isinstance(ctx.obj, dict) and ctx.obj.get(OWN_PROCESS):
            _skip_the_pandas_probe()  # here, not for --version or --help
        try:
            return super().invoke(ctx)
        except MetricsDuckError as exc:
            if ctx.meta.get("metricsduck.debug"):
                raise
            fail(str(exc), exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so plainly, keep the traceback behind --debug
            if ctx.meta.get("metricsduck.debug"):
                raise
            if isinstance(exc, RuntimeError) and str(exc).startswith("Query interrupted"):
                fail("interrupted", ExitCode.INTERRUPTED)  # Ctrl-C inside a DuckDB query
            if type(exc).__name__ == "OutOfMemoryException":  # duckdb's, not imported up here
                from .engine import out_of_resources

                fail(str(out_of_resources(exc, ctx.meta.get(CONFIG_META))), ExitCode.RESOURCES)
            fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug and report it)",
                 ExitCode.INTERNAL)


def output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The `-o` callback: a file in a folder that exists (else exit 6, before any work)."""
    from .output import check_output

    return check_output(value)


def output_options(func: Callable) -> Callable:
    """The shared `--format` / `-o` options of every command that prints rows."""
    from .output import FORMATS

    func = click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
                        callback=output_path,
                        help="Write the rows to FILE (in an existing folder) instead of stdout.")(func)
    return click.option("--format", "fmt", type=click.Choice(FORMATS, case_sensitive=False),
                        help="Output format. Default: the one -o's extension names (.json, .csv), "
                             "else table.")(func)


def table_options(columns: tuple[str, ...]) -> Callable[[Callable], Callable]:
    """`output_options` plus `--wide`: a table shows `columns` unless --wide (json and csv
    always carry every column). The command gets `fmt`, `output` and `columns`."""

    def decorate(func: Callable) -> Callable:
        @wraps(func)
        def with_columns(*args: Any, wide: bool, **kwargs: Any) -> Any:
            return func(*args, columns=None if wide else columns, **kwargs)

        with_columns = click.option(
            "--wide", is_flag=True, help=f"Show every column in the table, not only {', '.join(columns[:4])} …"
        )(with_columns)
        return output_options(with_columns)

    return decorate


def config_option(func: Callable) -> Callable:
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False),
        help="YAML config (safety.telemetry: …). Default: ROOT/.metricsduck/config.yaml, "
             "else the packaged defaults.")(func)


ROOT = click.argument("root", type=click.Path(file_okay=False))


def _config(root: str | None, config_path: str | None) -> Config:
    from .config import resolve_config

    config = resolve_config(root, config_path)
    # kept for the error that names the limits in force if DuckDB runs out of memory
    click.get_current_context().meta[CONFIG_META] = config
    return config


def _store(root: str, config_path: str | None, cached: bool = False) -> Store:
    """The store for ROOT; each file it had to leave out is named on stderr."""
    from .store import connect

    store = connect(root, _config(root, config_path), cached_only=cached)
    store.lock_down()  # commands only read the snapshot; the user's SQL cannot touch files
    for path, _, reason in store.bad_files():
        click.echo(f"metricsduck: warning: skipped {path}: {reason}", err=True)
    return store


def with_store(func: Callable | None = None, *, cached: bool = True) -> Callable:
    """Open the store for ROOT, pass it on as `store`, close it afterwards; `cached` adds
    the `--cached` option (a store that does not walk the tree)."""
    if func is None:
        return lambda f: with_store(f, cached=cached)

    @wraps(func)
    def wrapper(root: str, config_path: str | None, **kwargs: Any) -> Any:
        with _store(root, config_path, kwargs.pop("cached", False)) as store:
            return func(store=store, **kwargs)

    if cached:
        wrapper = click.option(
            "--cached", is_flag=True,
            help="Serve what the last refresh cached without walking the tree: fast on big trees, "
                 "but sidecars written, changed or deleted since are not seen.")(wrapper)
    return config_option(wrapper)


def _compute_drift(store: Store, run: str | None) -> None:
    """Compute the drift the cache does not hold (of `run`, else every run), with progress
    on stderr: on a tree not refreshed since it changed this is most of the command's work."""
    from .output import progress_reporter

    store.compute_drift(run=run, progress=progress_reporter("computing drift"))


@click.group(cls=Group, no_args_is_help=True, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="metricsduck")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """metricsduck: drift and trends of ML pipeline metrics, from sidecar Parquet files."""
    ctx.meta["metricsduck.debug"] = debug


@main.command()
@ROOT
@config_option
@output_options
def init(root: str, config_path: str | None, fmt: str | None, output: str | None) -> None:
    """Refresh ROOT and persist its catalog as ROOT/.metricsduck/catalog.duckdb (saving
    --config beside it).

    Afterwards `duckdb -readonly ROOT/.metricsduck/catalog.duckdb -c "select * from drift"`
    works from any directory, with the DuckDB CLI of PyPI (`pip install duckdb-cli`) too.
    Its views read the compacted cache: they show the tree as the last refresh left it,
    so run `metricsduck refresh ROOT` after each run. The catalog is derived: init
    rebuilds it whenever the SQL changed. Prints how many SQL definitions were current,
    out of date or not persisted before (`status` lists each with its fingerprint).

    Example: metricsduck init RESULTS --config safety.yaml
    """
    from .catalog import CATALOG_STATES, catalog_states, discover, persisted_fingerprints
    from .output import emit, progress_reporter
    from .store import init as init_catalog

    before = catalog_states(discover(), persisted_fingerprints(Path(root)))
    path = init_catalog(Path(root), _config(root, config_path), progress=progress_reporter)
    click.echo(f"metricsduck: catalog written to {path}", err=True)
    names: dict[str, list[str]] = {}
    for definition, state in before:
        names.setdefault(state, []).append(definition.name)
    emit(["before", "definitions", "names"],
         [(state, len(listed), ", ".join(listed[:4]) + (" …" if len(listed) > 4 else ""))
          for state, listed in sorted(names.items(), key=lambda item: CATALOG_STATES.index(item[0]))], fmt, output)


@main.command()
@ROOT
@with_store
@output_options
def status(store: Store, fmt: str | None, output: str | None) -> None:
    """Show each SQL definition's fingerprint (and whether the persisted catalog matches it)
    and counts of runs, cohorts, sidecars.

    Read-only: never creates or changes a file.

    Example: metricsduck status RESULTS --format json
    """
    from .output import emit

    emit(["section", "item", "value"], store.status(), fmt, output)


@main.command()
@ROOT
@config_option
@output_options
def check(root: str, config_path: str | None, fmt: str | None, output: str | None) -> None:
    """Verify the tree without changing it; exit 1 if anything is wrong.

    Checks the config, the catalog's SQL checksums, every sidecar (readable, schema v1,
    one cohort-run, identity matching its folders), duplicate cohort-runs, every JSON
    mirror against its Parquet, orphan drift/trend files and leftover temporary files.
    Prints one row per problem (path, problem, detail); none prints an empty table / [].

    Example: metricsduck check RESULTS --format json
    """
    from .check import check as check_tree
    from .output import emit

    problems = check_tree(Path(root), config_path)
    emit(["path", "problem", "detail"], [problem.row() for problem in problems], fmt, output)
    if problems:
        sys.exit(int(ExitCode.FINDINGS))


@main.command()
@ROOT
@click.argument("query")
@with_store
@output_options
def sql(store: Store, query: str, fmt: str | None, output: str | None) -> None:
    """Run QUERY against the views (facts, samples, cohort_runs, runs, …) and print the rows.

    A query reading drift (directly or through a view built on it, such as rollup_view)
    first computes the drift the cache does not hold, a batch of runs at a time (with
    progress), as `metricsduck drift` does.

    Example: metricsduck sql RESULTS "select run_id, count(*) from cohort_runs group by 1"
    """
    import duckdb

    from .compute import reads_drift
    from .output import emit_relation

    if reads_drift(store, query):  # not the whole stale history in one query
        _compute_drift(store, None)
    try:
        # the store's own connection: drained here, and under the locked configuration a
        # cursor could not turn its progress bar off
        relation = store.con.sql(query)
        if relation is None:
            click.echo("metricsduck: statement ran; it returns no rows", err=True)
            return
        emit_relation(relation, fmt, output)
    except duckdb.Error as exc:
        # DuckDB's whole message on one line: its hints ("Did you mean …", "Candidate
        # bindings: …") and the query line it points at, without the caret line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip().strip("^")]
        raise InputError(f"query failed: {' '.join(lines)}") from None


@main.command()
@ROOT
@click.option("--runs", default=8, show_default=True, type=click.IntRange(2, 365),
              help="How many runs, a day apart.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed of the tree.")
@config_option
def demo(root: str, runs: int, seed: int, config_path: str | None) -> None:
    """Write a realistic demo tree with known, injected drift into ROOT, and say where.

    Example: metricsduck demo demo-tree --runs 8 --seed 0
    """
    from .demo import describe, write_demo
    from .output import progress_reporter

    injections = write_demo(Path(root), runs=runs, seed=seed, config=_config(None, config_path),
                            progress=progress_reporter("demo"))
    click.echo(f"Wrote {runs} runs to {root}. Injected:")
    for line in describe(injections):
        click.echo(f"  - {line}")


@main.command()
@ROOT
@click.option("--run", "run_ids", multiple=True, help="Refresh this run (repeatable).")
@click.option("--all", "all_runs", is_flag=True, help="Refresh every run.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="spark: compute on Apache Spark (pip install 'metricsduck[spark]'), every run.")
@click.option("--partitions", type=click.IntRange(1), help="--engine spark: parts the baseline keys are cut "
              "into (default: Spark's default parallelism).")
@click.option("--spark-master", help="--engine spark: the master URL, e.g. local[2] or spark://host:7077 "
              "(default: Spark's own configuration).")
@config_option
@output_options
def refresh(root: str, config_path: str | None, run_ids: tuple[str, ...], all_runs: bool, engine: str,
            partitions: int | None, spark_master: str | None, fmt: str | None, output: str | None) -> None:
    """Write drift, trend and rollup files into the tree: the one command after each run.

    Per cohort: telemetry_drift.* and (once a trend exists) telemetry_trend.*; per view
    and stage of each run: telemetry_rollup.*. By default refreshes every run with a
    missing output or a drift file older than its inputs. Files whose content would not
    change are not rewritten; one refresh of a root runs at a time (a second waits).
    Prints a summary; exits 6 if any file could not be written (each named on stderr).
    With --engine spark every run is computed on Spark, giving the same files
    (docs/scale-out.md).

    Example: metricsduck refresh RESULTS --run 2026-01-12_09-00-00_000000
    """
    from .output import emit, progress_reporter

    if run_ids and all_runs:
        raise click.UsageError("give --run or --all, not both")
    if engine != "spark" and (partitions or spark_master):
        raise click.UsageError("--partitions and --spark-master need --engine spark")
    say = lambda message: click.echo(f"metricsduck: {message}", err=True)  # noqa: E731
    if engine == "spark":
        if run_ids:
            raise click.UsageError("--engine spark refreshes every run; leave out --run")
        summary = _spark_refresh(root, _config(root, config_path), partitions, spark_master, say)
    else:
        with _store(root, config_path) as store:
            summary = store.refresh(runs=run_ids or None, all_runs=all_runs,
                                    progress=progress_reporter("refresh"), on_wait=say)
    for path, reason in summary.failed:
        click.echo(f"metricsduck: error: could not write {path}: {reason}", err=True)
    emit(["item", "value"], summary.rows(), fmt, output)
    if summary.failed:
        sys.exit(int(ExitCode.IO))


def _spark_refresh(root: str, config: Config, partitions: int | None, master: str | None,
                   say: Callable[[str], None]) -> Any:
    try:
        from .spark import refresh_spark
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("pyspark"):
            raise
        raise InputError("--engine spark needs pyspark: pip install 'metricsduck[spark]' "
                         "(and Java 17 or newer)") from None
    return refresh_spark(root, config, partitions=partitions, master=master, say=say)


def filter_options(func: Callable) -> Callable:
    """Filters shared by the query commands; values are bound as parameters, never pasted."""
    for name, help_text in reversed((
        ("stage", "Only this stage, e.g. TARGET_RANKING."),
        ("view", "Only this view, e.g. CROSS_SECTIONAL."),
        ("target", "Only this target."),
        ("symbol", "Only this symbol."),
    )):
        func = click.option(f"--{name}", help=help_text)(func)
    return click.option("--run", help="A run id, or 'latest'.")(func)


# The columns a table shows without --wide (json and csv carry every column of the view):
# which cohort, against what, how bad, how far.
DRIFT_TABLE_COLUMNS = (
    "run_id", "view", "target", "symbol", "baseline_kind", "item", "tier", "status",
    "current_value", "baseline_value", "rel_delta", "psi", "ks_d", "linf",
)


@main.command()
@ROOT
@filter_options
@click.option("--baseline", type=click.Choice(BASELINE_KINDS, case_sensitive=False),
              help="Only this baseline kind.")
@click.option("--tier", type=click.Choice(TIERS, case_sensitive=False),
              help="Only rows at least this bad (WARN shows WARN and ALERT).")
@click.option("--item", type=click.Choice(ITEM_KINDS, case_sensitive=False), help="Only metrics or distributions.")
@click.option("--metric", help="Only this metric's (or distribution's) rows.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows (the worst).")
@with_store
@table_options(DRIFT_TABLE_COLUMNS)
def drift(store: Store, fmt: str | None, output: str | None, columns: tuple[str, ...] | None,
          **filters: Any) -> None:
    """Show drift rows against each baseline kind, worst first: by tier, then by how far
    they moved (|rel_delta|, PSI, KS D).

    Example: metricsduck drift RESULTS --run latest --tier ALERT
    """
    from .output import emit_relation

    _compute_drift(store, filters["run"])
    limit = filters.pop("limit")
    relation = store.drift(**filters)
    if limit is not None:
        relation = relation.limit(limit)
    emit_relation(relation, fmt, output, columns)


TREND_TABLE_COLUMNS = (
    "run_id", "view", "target", "symbol", "metric", "n_runs", "direction", "assessment", "slope", "r2",
    "first_value", "last_value",
)


@main.command()
@ROOT
@filter_options
@click.option("--metric", help="Only this metric.")
@click.option("--direction", type=click.Choice(DIRECTIONS, case_sensitive=False),
              help="Only trends going this way.")
@with_store
@table_options(TREND_TABLE_COLUMNS)
def trend(store: Store, fmt: str | None, output: str | None, columns: tuple[str, ...] | None,
          **filters: Any) -> None:
    """Show metric trends over the last trend.window runs of each baseline key.

    A trend exists once trend.min_runs runs have the metric. Without --run, every run's
    trend as of that run is listed, newest first.

    Example: metricsduck trend RESULTS --run latest --direction decreasing
    """
    from .output import emit_relation

    relation = store.trends(**filters)
    emit_relation(relation, fmt, output, columns)


@main.command()
@ROOT
@click.option("--stage", help="Only this stage, e.g. TARGET_RANKING.")
@click.option("--view", help="Only this view, e.g. CROSS_SECTIONAL.")
@click.option("--run", help="A run id, or 'latest'.")
@click.option("--level", type=click.Choice(LEVELS, case_sensitive=False), default="view",
              show_default=True, help="stage: one row per view of each stage; else that level "
                                      "of the view rollup.")
@click.option("--measure", help="Only this measure of the view rollup, e.g. worst_item, p90, "
                                "tier_ALERT.")
@with_store
@output_options
def rollup(store: Store, fmt: str | None, output: str | None, **filters: Any) -> None:
    """Show rollups: per view (counts, metric statistics, tier counts, worst items,
    population drift) or, with --level stage, the stage container of its views.

    Example: metricsduck rollup RESULTS --run latest --measure worst_item
    """
    from .output import emit_relation

    _compute_drift(store, filters["run"])
    emit_relation(store.rollups(**filters), fmt, output)


@main.command()
@ROOT
@click.option("--run", default="latest", show_default=True, help="A run id, or 'latest'.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="How many of the worst drifted items to show, with their charts.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              default="drift_report.html", show_default=True,
              callback=output_path,
              help="Write the HTML page to FILE (in an existing folder).")
@with_store
def report(store: Store, run: str, top: int, output: str) -> None:
    """Write one self-contained HTML drift report of a run (no scripts, nothing fetched).

    The run summary, a stage → view → target → symbol drill-down with the worst tier of
    each node, the worst drifts with PSI bins and CDFs of distributions, and sparklines
    of the metrics that trend up or down. The same tree gives the same bytes.

    Example: metricsduck report RESULTS --run latest -o drift_report.html
    """
    from .report import write_report

    _compute_drift(store, run)
    path = write_report(store, Path(output), run, top=top)
    click.echo(f"metricsduck: report written to {path}", err=True)


@main.command()
@ROOT
@click.argument("run_id")
@click.option("--good/--bad", required=True, help="The verdict on RUN_ID.")
@click.option("--reason", help="Why, kept with the mark.")
@config_option
@output_options
def mark(root: str, run_id: str, good: bool, reason: str | None, config_path: str | None,
         fmt: str | None, output: str | None) -> None:
    """Mark RUN_ID good or bad; last_good_run baselines follow the latest mark at once.

    Marks are append-only files under ROOT/.metricsduck/marks/.

    Example: metricsduck mark RESULTS demo_run_04 --bad --reason "vendor data outage"
    """
    from .marks import write_mark
    from .output import emit

    with _store(root, config_path) as store:
        run_id = store.run_id(run_id)  # a run id, `latest` or a run folder; else did-you-mean
    path = write_mark(Path(root), run_id, good, reason)
    emit(["run_id", "good", "reason", "file"], [(run_id, good, reason, str(path))], fmt, output)
    from .refresh import stale_runs

    with _store(root, config_path) as after:  # what the mark made stale: queries follow it at once
        stale = stale_runs(after)
    if stale:
        listed = ", ".join(stale[:3]) + (f" … {stale[-1]}" if len(stale) > 3 else "")
        click.echo(f"metricsduck: {len(stale)} run(s) stale now ({listed}): their drift files no longer "
                   f"follow the marks; `metricsduck refresh {root}` rewrites them", err=True)


@main.command("import")
@ROOT
@click.option("--dry-run", is_flag=True, help="Say what would be imported; write nothing.")
@config_option
@output_options
def import_(root: str, dry_run: bool, config_path: str | None, fmt: str | None, output: str | None) -> None:
    """Write sidecars for cohort folders the pipeline wrote without them.

    Reads each cohort folder's metrics.json, metadata.json and audit_report.json (run id,
    run start, fingerprints, good, audit verdict) and never changes them. Folders that
    already have sidecars are left alone, so importing twice writes nothing. Exits 4 if a
    folder could not be read (each named on stderr); the others are imported.

    Example: metricsduck import RESULTS --dry-run
    """
    from .importer import import_tree
    from .output import emit, progress_reporter

    summary = import_tree(root, config=_config(root, config_path), dry_run=dry_run,
                          progress=progress_reporter("import"))
    for path, reason in summary.failed:
        click.echo(f"metricsduck: error: could not import {path}: {reason}", err=True)
    emit(["item", "value"], summary.rows(dry_run), fmt, output)
    if summary.imported and not dry_run:
        click.echo(f"metricsduck: next, `metricsduck refresh {root}` computes their drift", err=True)
    if summary.failed:
        sys.exit(int(ExitCode.INPUT))


def _skip_the_pandas_probe() -> None:
    """pyarrow imports pandas, where it is installed, at its first `pyarrow.array` to ask
    whether the values are pandas objects: 0.25 s of every command, none of which hands
    pyarrow a pandas object. The probe is made once with pandas out of reach; pyarrow still
    imports pandas when it needs it (`to_pandas`)."""
    if "pandas" in sys.modules:
        return

    class Unreachable:
        @staticmethod
        def find_spec(name: str, *args: Any) -> None:
            if name == "pandas":
                raise ModuleNotFoundError("not during the probe", name=name)

    sys.meta_path.insert(0, Unreachable)
    try:
        import pyarrow as pa

        pa.array([])
    finally:
        sys.meta_path.remove(Unreachable)


def run() -> None:
    """The `metricsduck` command (its script and `python -m metricsduck`), in a process of
    its own: unlike a caller of `main` (a test's CliRunner), it may settle pyarrow's probe."""
    main(obj={OWN_PROCESS: True})
