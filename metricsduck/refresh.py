"""Materialise drift, trends and rollups into the tree, next to the facts.

Per cohort-run: `telemetry_drift.parquet` / `.json` (its rows of `drift`) and, once a trend
exists, `telemetry_trend.parquet` / `.json`. Per run x stage x view:
`<VIEW>/telemetry_rollup.parquet` / `.json`; per run x stage: `<STAGE>/telemetry_rollup.*`.
Files whose bytes would not change are not rewritten, so a second refresh writes nothing;
a file that cannot be written is reported, never fatal. One refresh of a root at a time.

`stale_runs` judges a cohort-run by the drift the compacted cache holds for it: rows
stored under the fingerprint of its current inputs (`metricsduck.cache`). A refresh stores
them last, once every output of its runs is written, so a refresh killed at any point, or
a sidecar rewritten after the refresh's snapshot, leaves those runs stale and the next
refresh redoes them. Outputs are written rollups first, then per cohort the trend files,
the drift JSON and the drift Parquet (WRITERS cohorts side by side, each in that order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compute import SCOPE_COHORTS, batch_drift, batches, materialised, outputs_key, scoped, stage_drift
from .engine import arrow_table
from .errors import InputError, StorageError
from .files import json_bytes, parquet_bytes, write_atomic
from .layout import CACHE_DIR, sidecar_name
from .mirrors import drift_mirror, stage_rollup_mirror, trend_mirror, view_rollup_mirror
from .vocab import (
    DRIFT_SCHEMA_ID,
    FINGERPRINT_FIELDS,
    ROLLUP_STAGE_SCHEMA_ID,
    ROLLUP_VIEW_SCHEMA_ID,
    SCHEMA_METADATA_KEY,
    TREND_SCHEMA_ID,
)

LOCK_FILE = "refresh.lock"
BATCH_DRIFT = "batch_drift"  # the drift rows of the batch of runs being written
# Threads writing cohort files: encoding Parquet, fsync and rename release the GIL, so
# they overlap even on two cores (CHANGELOG.md has the measurement).
WRITERS = 4


@dataclass
class RefreshSummary:
    runs: list[str] = field(default_factory=list)
    cohorts: int = 0
    written: int = 0
    unchanged: int = 0
    alerts: dict[str, int] = field(default_factory=lambda: {"metric": 0, "distribution": 0})
    failed: list[tuple[str, str]] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """`(item, value)` rows for the CLI summary."""
        return [
            ("runs refreshed", str(len(self.runs))),
            ("cohort-runs", str(self.cohorts)),
            ("files written", str(self.written)),
            ("files unchanged", str(self.unchanged)),
            ("files failed", str(len(self.failed))),
            ("ALERT metrics in those runs", str(self.alerts["metric"])),
            ("ALERT distributions in those runs", str(self.alerts["distribution"])),
        ]

    def write(self, path: Path, data: bytes) -> None:
        """Write one output and count it; a failure is recorded, not raised."""
        self.count(*_write(path, data))

    def count(self, path: Path, outcome: bool | str) -> None:
        """Count one output by `_write`'s outcome."""
        if outcome is True:
            self.written += 1
        elif outcome is False:
            self.unchanged += 1
        else:
            self.failed.append((str(path), outcome))


def _write(path: Path, data: bytes) -> tuple[Path, bool | str]:
    """Write one output: `(path, outcome)`, the outcome True (written), False (unchanged) or
    why it could not be written."""
    try:
        return path, write_atomic(path, data)
    except StorageError as exc:
        return path, str(exc)


def stale_runs(store: Any) -> list[str]:
    """Runs with a cohort-run whose drift the cache does not hold for its current inputs
    (`cache_fingerprints`: its sidecars and its key's earlier ones, those runs' marks, the drift
    definitions and the settings they read), whose trend and rollup files were written by
    other definitions or settings than the current ones (`outputs_key`), or with an output
    missing. Without the cache, every run is stale.
    """
    prefix = store.config.prefix
    if store.cached_drift:
        stale = {row[0] for row in store.con.sql(
            "SELECT run_id FROM cache_fingerprints ANTI JOIN cache_drift USING (baseline_key, run_id) UNION "
            "SELECT run_id FROM cache_drift WHERE outputs IS DISTINCT FROM ?",
            params=[outputs_key(store.catalog, store.config)]).fetchall()}
    else:
        stale = {row[0] for row in store.con.sql("SELECT DISTINCT run_id FROM cache_fingerprints").fetchall()}
    outputs = [sidecar_name(prefix, "drift", ext) for ext in ("parquet", "json")]
    # one check per cohort-run of the history: plain strings, cheaper than Path objects
    for run_id, facts_file in store.con.sql("SELECT run_id, source_file FROM cohort_runs").fetchall():
        folder = os.path.dirname(facts_file)
        if run_id not in stale and not all(os.path.exists(os.path.join(folder, name)) for name in outputs):
            stale.add(run_id)
    rollups = [sidecar_name(prefix, "rollup", ext) for ext in ("parquet", "json")]
    for run_id, view_dir in store.con.sql("SELECT run_id, view_dir FROM view_dirs").fetchall():
        # the view's rollup files and its stage's (the parent folder)
        folders = (Path(view_dir), Path(view_dir).parent)
        if not all((folder / name).exists() for folder in folders for name in rollups):
            stale.add(run_id)
    return sorted(stale)


def _arrow(relation: Any, schema_id: str) -> Any:
    return arrow_table(relation).replace_schema_metadata({SCHEMA_METADATA_KEY: schema_id.encode()})


def _groups(table: Any, *columns: str) -> Iterator[tuple[tuple, Any]]:
    """`(key, slice)` for each run of equal `columns` values in a table sorted by them."""
    keys = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    start = 0
    for index in range(1, len(keys) + 1):
        if index == len(keys) or keys[index] != keys[start]:
            yield keys[start], table.slice(start, index - start).combine_chunks()
            start = index


@contextmanager
def refresh_lock(root: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ROOT/.metricsduck/refresh.lock; wait (saying so) while another refresh holds it.

    An OS file lock: it dies with its process, so a crashed refresh never blocks the next.
    """
    import fcntl

    path = Path(root) / CACHE_DIR / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the refresh lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            if on_wait:
                on_wait(f"waiting for the refresh lock {path} held by pid {holder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def refresh(store: Any, *, runs: Iterable[str] | None = None, all_runs: bool = False,
            stage: str | None = None, cohort_files: bool = True,
            progress: Callable[[int, int], None] | None = None,
            on_wait: Callable[[str], None] | None = None) -> RefreshSummary:
    """Write the outputs of `runs`, every run (`all_runs`), or by default the stale runs.

    `stage` limits the work to one stage; `cohort_files=False` writes only the rollups.
    """
    if store.snapshot is not None and not store.snapshot.walked:
        raise InputError(f"{store.root}: this store serves the cache as of the last refresh "
                         "(cached_only) and does not see the tree; refresh with a store that does "
                         "(connect without cached_only)")
    with refresh_lock(store.root, on_wait), materialised(store):
        known = [r[0] for r in store.con.sql("SELECT run_id FROM runs ORDER BY ordinal").fetchall()]
        if all_runs:
            selected = known
        elif runs is not None:
            selected = list(dict.fromkeys(runs))
            unknown = [r for r in selected if r not in known]
            if unknown:
                raise InputError(f"run {unknown[0]!r} is not in {store.root} "
                                 f"(known runs: {', '.join(known[-5:]) or 'none'})")
        else:
            selected = stale_runs(store)
        summary = RefreshSummary(runs=selected)
        total = store.con.sql("SELECT count(*) FROM cohort_runs WHERE run_id IN (SELECT unnest(?::VARCHAR[])) "
                              "AND stage IS NOT DISTINCT FROM coalesce(?, stage)",
                              params=[selected, stage]).fetchall()[0][0]
        # a batch of runs at a time, published as it completes: the work and memory of each
        # step are bounded by its runs and their baselines, and a refresh stopped mid-way
        # keeps what it did
        for batch in batches(store, selected):
            failed = len(summary.failed)
            try:
                _refresh_runs(store, batch, stage, cohort_files, summary, _offset(progress, summary.cohorts, total))
                if cohort_files and len(summary.failed) == failed:  # these runs' outputs are complete
                    stage_drift(store.con, store.snapshot, BATCH_DRIFT, outputs_key(store.catalog, store.config))
            finally:
                store.con.execute(f"DROP TABLE IF EXISTS temp.{BATCH_DRIFT}")
            _publish(store, summary)
        if not selected:
            _publish(store, summary)
        return summary


def _offset(progress: Callable[[int, int], None] | None, base: int,
            total: int) -> Callable[[int, int], None] | None:
    """`progress` for one batch: its cohorts counted after the `base` already done, of `total`."""
    if progress is None:
        return None
    return lambda done, _: progress(base + done, total)


def _refresh_runs(store: Any, runs: list[str], stage: str | None, cohort_files: bool,
                  summary: RefreshSummary, progress: Callable[[int, int], None] | None) -> None:
    """Compute the drift of `runs` into `batch_drift` and write their outputs."""
    with scoped(store, runs, stage) as scope:
        batch_drift(store, scope, BATCH_DRIFT)  # computed once, for the rollups and the cohort files
    for item_kind, count in store.con.sql(f"SELECT item_kind, count(*) FROM {BATCH_DRIFT} "
                                          "WHERE tier = 'ALERT' GROUP BY item_kind").fetchall():
        summary.alerts[item_kind] += count
    rollup_files(store, scope.condition, summary)  # before the drift Parquet files: see above
    if cohort_files:
        _cohort_files(store, scope.condition, summary, progress)


def _publish(store: Any, summary: RefreshSummary) -> None:
    """Update the compacted cache; failing to is reported, the outputs are written anyway."""
    try:
        store.update_cache()
    except StorageError as exc:
        summary.failed.append((str(store.root / CACHE_DIR), str(exc)))


def _cohort_files(store: Any, scope: str, summary: RefreshSummary,
                  progress: Callable[[int, int], None] | None) -> None:
    cohorts = cohort_rows(store, scope)
    drift = drift_by_cohort(store, BATCH_DRIFT)
    trends = trends_by_cohort(store, SCOPE_COHORTS)
    summary.cohorts += len(cohorts)
    write_cohorts(store.config.prefix, cohorts, drift, trends, summary, progress)


def cohort_rows(store: Any, scope: str) -> list[tuple]:
    """`(baseline_key, run_id, source_file, *fingerprints)` of the cohort-runs `scope` picks."""
    return store.con.sql(
        "SELECT baseline_key, run_id, source_file, " + ", ".join(FINGERPRINT_FIELDS) +
        f" FROM cohort_runs WHERE {scope} ORDER BY baseline_key, run_id"
    ).fetchall()


def drift_by_cohort(store: Any, table: str) -> dict[tuple, Any]:
    """The drift rows of `table` per `(baseline_key, run_id)`, in the drift file's order."""
    return dict(_groups(_arrow(store.con.sql(
        f"SELECT * FROM {table} ORDER BY baseline_key, run_id, baseline_kind, item_kind, item"),
        DRIFT_SCHEMA_ID), "baseline_key", "run_id"))


def trends_by_cohort(store: Any, scope: str) -> dict[tuple, Any]:
    """The trend rows of the cohort-runs listed in `scope` per `(baseline_key, run_id)` (V009)."""
    return dict(_groups(_arrow(store.con.sql(
        f"SELECT * FROM trends_of('{scope}') ORDER BY baseline_key, run_id, metric"),
        TREND_SCHEMA_ID), "baseline_key", "run_id"))


def write_cohorts(prefix: str, cohorts: list[tuple], drift: dict[tuple, Any], trends: dict[tuple, Any],
                  summary: RefreshSummary, progress: Callable[[int, int], None] | None = None) -> None:
    """Write each cohort-run's trend files and drift files (those it has rows of), counted
    into `summary`."""

    def write_cohort(cohort: tuple) -> list[tuple[Path, bool | str]]:
        """Render and write one cohort-run's files in order; their outcomes."""
        baseline_key, run_id, facts_file, *fingerprints = cohort
        folder = Path(facts_file).parent
        outcomes: list[tuple[Path, bool | str]] = []

        def put(kind: str, ext: str, data: bytes) -> None:
            outcomes.append(_write(folder / sidecar_name(prefix, kind, ext), data))

        trend = trends.get((baseline_key, run_id))
        if trend is not None:
            put("trend", "parquet", parquet_bytes(trend))
            put("trend", "json", json_bytes(trend_mirror(trend.to_pylist())))
        part = drift.get((baseline_key, run_id))
        if part is not None:
            rows = part.to_pylist()
            compared = dict(zip(FINGERPRINT_FIELDS, fingerprints, strict=True))
            put("drift", "json", json_bytes(drift_mirror(rows, compared)))
            # last: a cohort-run whose drift Parquet is written has all of its files
            put("drift", "parquet", parquet_bytes(part))
        return outcomes

    # cohorts are written side by side (WRITERS); each one's files in order, and the
    # outcomes are counted in cohort order, so the summary does not depend on timing
    pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="metricsduck-write")
    try:
        for done, outcomes in enumerate(pool.map(write_cohort, cohorts), start=1):
            for path, outcome in outcomes:
                summary.count(path, outcome)
            if progress:
                progress(done, len(cohorts))
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, start no further cohort


def rollup_files(store: Any, scope: str, summary: RefreshSummary, drift: str = BATCH_DRIFT) -> None:
    """Write the view and stage rollups of the runs x stages `scope` picks, from the drift rows
    of the table `drift`."""
    import pyarrow as pa

    prefix = store.config.prefix
    stages = _arrow(store.con.sql(
        f"SELECT * FROM rollup_stage_of('{drift}') WHERE {scope} ORDER BY run_id, stage, view"),
        ROLLUP_STAGE_SCHEMA_ID)
    views = dict(_groups(_arrow(store.con.sql(
        f"SELECT * FROM rollup_view_of('{drift}') WHERE {scope} ORDER BY run_id, stage, view, level, target, "
        "symbol, measure, metric, baseline_kind, value"), ROLLUP_VIEW_SCHEMA_ID),
        "run_id", "stage", "view"))
    for (run_id, stage), part in _groups(stages, "run_id", "stage"):
        entries = part.to_pylist()
        for entry in entries:
            rows = views.get((run_id, stage, entry["view"]))
            if rows is None:
                continue
            view_dir = Path(entry["view_dir"])
            summary.write(view_dir / sidecar_name(prefix, "rollup", "parquet"), parquet_bytes(rows))
            summary.write(view_dir / sidecar_name(prefix, "rollup", "json"),
                          json_bytes(view_rollup_mirror(rows.to_pylist())))
        stage_dir = Path(entries[0]["view_dir"]).parent
        # the stored container names each view's rollup relative to itself, so the same
        # tree gives the same bytes wherever it lives
        located = part.drop_columns(["view_dir"]).append_column(
            "rollup", pa.array([f"{e['view']}/{sidecar_name(prefix, 'rollup', 'parquet')}" for e in entries]))
        summary.write(stage_dir / sidecar_name(prefix, "rollup", "parquet"), parquet_bytes(located))
        summary.write(stage_dir / sidecar_name(prefix, "rollup", "json"),
                      json_bytes(stage_rollup_mirror(entries, prefix)))
