"""`refresh --engine spark`: a tree refreshed on Apache Spark, by the same DuckDB views.

Spark reads the sidecars, cuts the tree by baseline key, schedules and retries; inside each
part an in-process DuckDB runs the project's one set of views over that part's Arrow rows
(`store.connect_part`), so there is no second dialect of the SQL (docs/scale-out.md).

- Phase 1, per part of the baseline keys (`pmod(xxhash64(baseline_key), partitions)`): the
  part's facts, samples and the marks give its cohort-runs' drift before the
  false-discovery step (`drift_tested`) and their trends; the executor writes the trend files.
- The driver: `runs` (a run's start and ordinal cross keys and stages) from every part's
  cohort-runs, by the `runs` view over them.
- Phase 2, per stage: the stage's facts and its phase-1 drift rows give the false-discovery
  step (its families are run x stage x baseline kind), the view and stage rollups
  (population drift pairs runs of one stage x view) and the cohort drift files; the
  executor writes them.

Rows cross Spark as Arrow IPC payloads, so every value DuckDB computed reaches the next
DuckDB bit for bit. Writes keep `files.write_atomic`'s promise and are idempotent (bytes
that would not change are not rewritten), so a retried task is harmless. The compacted
cache is neither read nor written: every run is computed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .config import Config, resolve_config
from .engine import arrow_table
from .errors import InputError
from .layout import sidecar_name
from .refresh import (
    RefreshSummary,
    cohort_rows,
    drift_by_cohort,
    refresh_lock,
    rollup_files,
    trends_by_cohort,
    write_cohorts,
)

if TYPE_CHECKING:
    import pyarrow as pa

# What the phases hand back: Arrow IPC payloads of rows, tagged with their stage and kind.
PAYLOAD = "stage string, output string, payload binary"
TESTED = "drift_tested"  # a part's drift rows of one stage, before the false-discovery step
COHORTS = "cohort_runs"  # a part's cohort-runs, from which the driver computes `runs`
SUMMARY = "summary"  # what an executor wrote, as JSON
PAYLOAD_ROWS = 50_000  # rows per payload: a Spark binary value stays far below its 2 GB limit
SCOPE = "spark_scope"  # the cohort-runs a part writes trend files for: all of its own
PHASE_DRIFT = "spark_drift"  # a stage's drift rows, after the false-discovery step


@dataclass(frozen=True)
class Job:
    """What every task of one refresh reads: pickled once into Spark's closures."""

    root: str
    config: Config
    marks: bytes  # the marks of the tree, read by the driver (IPC)
    runs: bytes = b""  # `runs`, computed by the driver after phase 1 (IPC)


def refresh_spark(root: str | Path, config: Config | None = None, *, spark: Any = None,
                  partitions: int | None = None, master: str | None = None,
                  say: Callable[[str], None] | None = None) -> RefreshSummary:
    """Refresh every run of the tree at `root` on Spark: the files a local refresh writes,
    byte for byte.

    `spark` is an existing SparkSession (its cluster's executors need metricsduck
    installed); without one a session is started (`master`, e.g. `local[2]`; default
    Spark's own). `partitions` is how many parts phase 1 cuts the baseline keys into
    (default: the session's default parallelism). `say` gets a line per phase.
    """
    from pyspark.sql import functions as sf

    say = say or (lambda _: None)
    root = _local_root(root)
    config = config or resolve_config(root)
    with refresh_lock(root, say), _session(spark, master) as session:
        parts = partitions or session.sparkContext.defaultParallelism
        if parts < 1:
            raise InputError(f"--partitions must be at least 1, got {parts}")
        job = Job(str(root), config, _ipc(_marks(root)))
        facts = _sidecars(session, root, config, "metrics")
        samples = _sidecars(session, root, config, "samples")
        part = sf.pmod(sf.xxhash64("baseline_key"), sf.lit(parts))
        with _shuffle_partitions(session, parts):
            say(f"phase 1: drift and trends per baseline key, in {parts} part(s)")
            phase_one = (facts.withColumn("part", part).groupBy("part")
                         .cogroup(samples.withColumn("part", part).groupBy("part"))
                         .applyInArrow(partial(_phase_one, job), PAYLOAD)).localCheckpoint()
            told = phase_one.filter(sf.col("output") != TESTED).collect()
            summary = _summary(told)
            cohort_runs = _tables(row.payload for row in told if row.output == COHORTS)
            if cohort_runs is None or cohort_runs.num_rows == 0:
                return summary  # a tree without cohort-runs
            runs = _runs(job, cohort_runs)
            summary.runs = runs.column("run_id").to_pylist()
            summary.cohorts = cohort_runs.num_rows
            job = Job(job.root, config, job.marks, _ipc(runs))
            stages = sorted(set(cohort_runs.column("stage").to_pylist()))
            say(f"phase 2: false-discovery step, rollups and drift files per stage, {len(stages)} stage(s)")
        with _shuffle_partitions(session, len(stages)):
            told = (facts.groupBy("stage")
                    .cogroup(phase_one.filter(sf.col("output") == TESTED).groupBy("stage"))
                    .applyInArrow(partial(_phase_two, job), PAYLOAD)).collect()
        done = _summary(told)
        summary.written += done.written
        summary.unchanged += done.unchanged
        summary.failed = sorted(summary.failed + done.failed)
        summary.alerts = done.alerts
        return summary


def _local_root(root: str | Path) -> Path:
    """The tree's folder, resolved as a local refresh resolves it: outputs are written
    through the file system, so a root is a folder every executor mounts."""
    from .store import tree_root

    text = str(root)
    scheme = urlparse(text).scheme
    if scheme == "file":
        text = unquote(urlparse(text).path)
    elif len(scheme) > 1:  # c:\\ is a drive, not a scheme
        raise InputError(f"{root}: the Spark engine writes its outputs through the file system, and a "
                         f"{scheme}:// root is not supported yet; mount it on every node and give the mount")
    return tree_root(text).resolve()


@contextmanager
def _session(spark: Any, master: str | None) -> Iterator[Any]:
    """`spark`, else the active session, else one started for this refresh (and stopped after it)."""
    from pyspark.sql import SparkSession

    spark = spark or SparkSession.getActiveSession()  # a pyspark shell's, a notebook's
    if spark is not None:
        yield spark
        return
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise InputError("Spark needs Java 17 or newer, and there is no `java` on PATH nor JAVA_HOME: "
                         "install one (e.g. apt-get install openjdk-17-jre-headless)")
    # the workers run this interpreter, which has metricsduck, not whatever `python3` is
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("metricsduck refresh").config("spark.ui.showConsoleProgress", "true")
    if master:
        builder = builder.master(master)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@contextmanager
def _shuffle_partitions(session: Any, count: int) -> Iterator[None]:
    """Shuffle into `count` partitions (one per group) while the block runs."""
    key = "spark.sql.shuffle.partitions"
    before = session.conf.get(key)
    session.conf.set(key, str(max(count, 1)))
    try:
        yield
    finally:
        session.conf.set(key, before)


def _sidecars(session: Any, root: Path, config: Config, artifact: str) -> Any:
    """The rows of every `<prefix>_<artifact>.parquet` under `root`, with `source_file`."""
    from pyspark.sql import functions as sf
    from pyspark.sql.pandas.types import from_arrow_schema

    from .writer import metrics_schema, samples_schema

    schema = {"metrics": metrics_schema, "samples": samples_schema}[artifact]()
    return (session.read.schema(from_arrow_schema(schema))
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", sidecar_name(config.prefix, artifact, "parquet"))
            .parquet(str(root))
            .select("*", sf.col("_metadata.file_path").alias("source_file")))


def _marks(root: Path) -> pa.Table:
    """The tree's marks, read as a local store reads them (bad ones left out)."""
    from .catalog.sources import bind_marks
    from .engine import new_connection

    con = new_connection()
    try:
        bind_marks(con, root)
        return arrow_table(con.sql("SELECT * FROM marks_raw"))
    finally:
        con.close()


def _runs(job: Job, cohort_runs: pa.Table) -> pa.Table:
    """The `runs` view over every part's cohort-runs."""
    from .store import connect_part

    with connect_part(job.root, {}, job.config, given={"cohort_runs": cohort_runs}) as store:
        return arrow_table(store.con.sql("SELECT * FROM runs ORDER BY ordinal"))


# --- inside the executors -------------------------------------------------------------------


def _phase_one(job: Job, facts: pa.Table, samples: pa.Table) -> pa.Table:
    """One part of the keys: its trend files written; its drift_tested rows (per stage),
    cohort-runs and summary handed back."""
    from .store import connect_part

    summary = RefreshSummary()
    rows = {"facts_raw": _source_rows(facts), "samples_raw": _source_rows(samples), "marks_raw": _table(job.marks)}
    with connect_part(job.root, rows, job.config) as store:
        store.con.execute(f"CREATE TEMP TABLE {SCOPE} AS SELECT baseline_key, run_id FROM cohort_runs")
        write_cohorts(job.config.prefix, cohort_rows(store, "true"), {}, trends_by_cohort(store, SCOPE), summary)
        tested = arrow_table(store.con.sql("SELECT * FROM drift_tested ORDER BY stage"))
        cohort_runs = arrow_table(store.con.sql("SELECT * FROM cohort_runs"))
    told: list[tuple[str | None, str, bytes]] = [(None, COHORTS, payload) for payload in _payloads(cohort_runs)]
    for stage, rows_of_stage in _by_stage(tested):
        told += [(stage, TESTED, payload) for payload in _payloads(rows_of_stage)]
    return _told(told, summary)


def _phase_two(job: Job, facts: pa.Table, tested: pa.Table) -> pa.Table:
    """One stage: the false-discovery step over its drift rows, its rollup files and its
    cohort drift files written; its summary handed back."""
    from .store import connect_part

    summary = RefreshSummary()
    rows = {"facts_raw": _source_rows(facts), "marks_raw": _table(job.marks)}
    with connect_part(job.root, rows, job.config, given={"runs": _table(job.runs)}) as store:
        con = store.con
        con.execute(f"CREATE TEMP TABLE {TESTED}_rows AS SELECT * FROM drift_tested LIMIT 0")
        received = _tables(tested.column("payload").to_pylist())
        if received is not None:
            con.register("received", received)
            con.execute(f"INSERT INTO {TESTED}_rows BY NAME SELECT * FROM received")
            con.unregister("received")
        con.execute(f"CREATE TEMP TABLE {PHASE_DRIFT} AS SELECT * FROM drift_fdr_of('{TESTED}_rows')")
        for item_kind, count in con.sql(f"SELECT item_kind, count(*) FROM {PHASE_DRIFT} "
                                        "WHERE tier = 'ALERT' GROUP BY item_kind").fetchall():
            summary.alerts[item_kind] += count
        rollup_files(store, "true", summary, PHASE_DRIFT)  # before the drift files, as a local refresh
        write_cohorts(job.config.prefix, cohort_rows(store, "true"), drift_by_cohort(store, PHASE_DRIFT), {},
                      summary)
    return _told([], summary)


def _source_rows(table: pa.Table) -> pa.Table:
    """Sidecar rows as Spark hands them over, as DuckDB's own read gives them: without the
    part column, `source_file` a path rather than a `file:` URI."""
    import pyarrow as pa

    if "part" in table.column_names:
        table = table.drop_columns(["part"])
    files = [unquote(urlparse(f).path) if f.startswith("file:") else f for f in table.column("source_file").to_pylist()]
    return table.set_column(table.column_names.index("source_file"), "source_file", pa.array(files, pa.string()))


def _by_stage(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """`(stage, rows)` of a table sorted by stage."""
    import pyarrow.compute as pc

    for stage in pc.unique(table.column("stage")).to_pylist():
        yield stage, table.filter(pc.equal(table.column("stage"), stage))


def _told(told: list[tuple[str | None, str, bytes]], summary: RefreshSummary) -> pa.Table:
    """A task's answer: its payloads and its summary, in `PAYLOAD`'s columns."""
    import pyarrow as pa

    done = {"written": summary.written, "unchanged": summary.unchanged, "failed": summary.failed,
            "alerts": summary.alerts}
    told = [*told, (None, SUMMARY, json.dumps(done).encode())]
    stages, outputs, payloads = zip(*told, strict=True)
    return pa.table({"stage": pa.array(stages, pa.string()), "output": pa.array(outputs, pa.string()),
                     "payload": pa.array(payloads, pa.binary())})


def _summary(rows: list[Any]) -> RefreshSummary:
    """The summaries of the tasks that told `rows`, added up."""
    summary = RefreshSummary()
    for row in rows:
        if row.output != SUMMARY:
            continue
        done = json.loads(row.payload)
        summary.written += done["written"]
        summary.unchanged += done["unchanged"]
        summary.failed += [tuple(pair) for pair in done["failed"]]
        for kind, count in done["alerts"].items():
            summary.alerts[kind] += count
    return summary


def _ipc(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(payload: bytes) -> pa.Table:
    import pyarrow as pa

    return pa.ipc.open_stream(payload).read_all()


def _tables(payloads: Any) -> pa.Table | None:
    """The rows of IPC payloads as one table (None: no payload)."""
    import pyarrow as pa

    tables = [_table(p) for p in payloads]
    return pa.concat_tables(tables) if tables else None


def _payloads(table: pa.Table) -> list[bytes]:
    """`table` as IPC payloads of at most PAYLOAD_ROWS rows each (at least one)."""
    return [_ipc(table.slice(start, PAYLOAD_ROWS)) for start in range(0, max(table.num_rows, 1), PAYLOAD_ROWS)]
