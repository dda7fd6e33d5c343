"""The compacted cache under ROOT/.metricsduck/cache/: rows of sidecars already read.

Reading thousands of tiny Parquet files costs per file, so the rows of every sidecar read
once are kept in a few large Parquet *segments*, and a manifest remembers each sidecar's
(path, size, mtime) with the segment that holds its rows, or why it is bad. A snapshot
then costs one stat walk of the tree: sidecars whose stat matches the manifest are served
from the segments, new and changed ones are read by explicit file list into a segment of
their own (staged in a private temp folder), and deleted ones drop out, exactly their rows.

Only `refresh` publishes into the cache (under its lock); query commands read it and stage
what is new themselves. The cache is derived: deleting it loses nothing, and a manifest
or segment that does not match what it recorded is ignored, never trusted.

Segments hold the rows in path order, which groups them by run tree and, within a run, by
stage/view/target: the baseline key. A refresh that reads one run touches the row groups
of that run only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .errors import StorageError
from .layout import CACHE_DIR, sidecar_name
from .writer import SCHEMA_VERSION

CACHE_SUBDIR = "cache"
MANIFEST_FILE = "manifest.parquet"
MANIFEST_SCHEMA_ID = "metricsduck/cache-manifest/v1"
SEGMENTS_KEY = b"metricsduck.segments"
RETIRED_KEY = b"metricsduck.retired"
SOURCES = ("facts_raw", "samples_raw")
DRIFT_SOURCE = "drift"
DRIFT_INDEX_FILE = "drift_index.parquet"
RETIRED_GRACE_S = 3600  # a retired segment may still be read by an open store for a while
MAX_SEGMENTS = 32  # per source; beyond it, a publish merges the live rows into one segment

# Columns no row can do without; a file with a NULL in any of them is not a sidecar.
REQUIRED = {
    "facts_raw": ("schema_version", "run_id", "run_started_at", "written_at", "stage", "view",
                  "target", "cohort_id", "baseline_key", "metric", "kind"),
    "samples_raw": ("schema_version", "run_id", "run_started_at", "written_at", "stage", "view",
                    "target", "cohort_id", "baseline_key", "distribution", "n_total", "n_missing"),
    "marks_raw": ("run_id", "good", "marked_at"),
}


def cache_dir(root: Path) -> Path:
    return Path(root) / CACHE_DIR / CACHE_SUBDIR


_ARROW_TO_DUCKDB = {
    "int32": "INTEGER",
    "int64": "BIGINT",
    "string": "VARCHAR",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def typed_empty(schema: Any) -> str:
    """`SELECT CAST(NULL AS type) AS col, … WHERE false`: the sidecar schema with no rows."""
    columns = [f"CAST(NULL AS {_ARROW_TO_DUCKDB[str(f.type)]}) AS {f.name}" for f in schema]
    columns.append("CAST(NULL AS VARCHAR) AS source_file")
    return "SELECT " + ", ".join(columns) + " WHERE false"


def walk(root: Path, names: dict[str, str]) -> tuple[Any, list[tuple[str, str]]]:
    """Stat every sidecar under `root` (resolved): an Arrow table of `FOUND` columns
    (path relative to the root, source, size, mtime_ns), sorted by path.

    `names` maps a sidecar file name to its source table. metricsduck's own folder is
    skipped; a folder that cannot be listed is returned as `(path, reason)`.
    """
    import pyarrow as pa

    paths: list[str] = []
    sources: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    unlisted = []
    start = len(str(root)) + 1
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != CACHE_DIR:
                            stack.append(entry.path)
                    elif entry.name in names:
                        try:
                            stat = entry.stat()
                        except OSError:
                            continue  # deleted since the listing: it is gone
                        paths.append(entry.path[start:])
                        sources.append(names[entry.name])
                        sizes.append(stat.st_size)
                        mtimes.append(stat.st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):
            continue  # no tree yet, or a folder deleted since it was listed: nothing to read
        except OSError as exc:
            unlisted.append((folder, f"cannot list this folder ({exc.strerror}); its sidecars are left out"))
    found = pa.Table.from_arrays([pa.array(paths, pa.string()), pa.array(sources, pa.string()),
                                  pa.array(sizes, pa.int64()), pa.array(mtimes, pa.int64())],
                                 schema=listing_schema(FOUND))
    return found.sort_by([("path", "ascending"), ("source", "ascending")]), unlisted


# --- the manifest and the drift index --------------------------------------------------------
#
# Both are Arrow tables, in memory and on disk: at 100,000 cohort-runs the manifest lists
# 200,000 sidecars, and Python objects for each cost a second per connect.

# The manifest: one row per sidecar with its stat, the segment holding its rows (NULL if
# bad) or why it is bad, and the cohort-run it holds (which drift fingerprints follow).
ENTRY = ("path", "source", "size", "mtime_ns", "segment", "reason", "baseline_key", "run_id")
FOUND = ENTRY[:4]  # what a walk of the tree sees
# The drift index: the materialised drift rows of one cohort-run, computed from inputs with
# `fingerprint`, are held by `segment`; its trend and rollup files were written by the
# definitions whose cache key is `outputs`.
DRIFT_ENTRY = ("baseline_key", "run_id", "fingerprint", "outputs", "segment")


def listing_schema(columns: tuple[str, ...]) -> Any:
    """The Arrow schema of a listing with `columns`: size and mtime_ns int64, the rest strings."""
    import pyarrow as pa

    types = {"size": pa.int64(), "mtime_ns": pa.int64()}
    return pa.schema([pa.field(name, types.get(name, pa.string())) for name in columns])


def _empty(columns: tuple[str, ...]) -> Any:
    return listing_schema(columns).empty_table()


def _rows_table(rows: list[tuple], columns: tuple[str, ...]) -> Any:
    """An Arrow table of `rows` (tuples in `columns` order), built column by column."""
    import pyarrow as pa

    schema = listing_schema(columns)
    values = list(zip(*rows)) or [()] * len(columns)
    return pa.Table.from_arrays([pa.array(v, f.type) for v, f in zip(values, schema)], schema=schema)


def arrow_table(relation: Any) -> Any:
    """A DuckDB relation's rows as an Arrow table (DuckDB 2 hands back a RecordBatchReader)."""
    result = relation.arrow()
    return result.read_all() if hasattr(result, "read_all") else result


@dataclass
class Segment:
    """One Parquet file of cached rows: `files` sidecars' (or drift cohort-runs') rows."""

    name: str
    source: str
    files: int
    size: int
    mtime_ns: int


def segment_name(source: str) -> str:
    """A new segment's file name; names sort in the order segments were made."""
    return f"{source}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def _read_listing(folder: Path, name: str, columns: tuple[str, ...]) -> tuple[Any, dict[str, Segment]] | None:
    """The rows (an Arrow table of `columns`) and segments of one listing file (the
    manifest or the drift index), or None.

    A listing of another version, or naming a segment that is missing or differs in size or
    mtime from what it recorded (a partial copy, a hand edit), is not trusted: the cache is
    derived, so it is rebuilt instead.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(folder / name).read()
        metadata = table.schema.metadata or {}
        if metadata.get(b"metricsduck.schema") != MANIFEST_SCHEMA_ID.encode():
            return None
        segments = {s["name"]: Segment(**s) for s in json.loads(metadata[SEGMENTS_KEY])}
        for segment in segments.values():
            stat = (folder / segment.name).stat()
            if (stat.st_size, stat.st_mtime_ns) != (segment.size, segment.mtime_ns):
                return None
        return table.cast(listing_schema(columns)), segments
    except Exception:
        return None


def _sorted(table: Any) -> Any:
    """`table` in the order of all its columns (a listing's canonical order)."""
    return table.sort_by([(name, "ascending") for name in table.column_names])


def _segment_counts(segments: Any) -> dict[str, int]:
    """How many rows of an Arrow column name each segment."""
    import pyarrow.compute as pc

    return {item["values"]: item["counts"] for item in pc.value_counts(segments).to_pylist()
            if item["values"] is not None}


def _live(entries: Any) -> Any:
    """The manifest rows of good sidecars (the bad ones have a reason and no segment)."""
    import pyarrow.compute as pc

    return entries.filter(pc.is_null(entries.column("reason")))


def _located(snapshot: "Snapshot", table: Any) -> Any:
    """`table` plus `segment_file`: the path of the segment holding each row's rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(snapshot.segments)
    paths = pa.array([str(snapshot.segment_path(name)) for name in names], pa.string())
    index = pc.index_in(table.column("segment"), value_set=pa.array(names, pa.string()))
    return table.append_column("segment_file", pc.take(paths, index))


def _write_listing(folder: Path, name: str, table: Any, segments: list[Segment],
                   retired: dict[str, float]) -> None:
    from .files import parquet_bytes, write_atomic

    write_atomic(folder / name, parquet_bytes(_sorted(table).replace_schema_metadata({
        b"metricsduck.schema": MANIFEST_SCHEMA_ID.encode(),
        SEGMENTS_KEY: json.dumps([vars(s) for s in segments]).encode(),
        RETIRED_KEY: json.dumps(retired, sort_keys=True).encode(),
    }), compression="zstd"))


# --- a snapshot ------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """What one snapshot of the tree reads: segments (cached and freshly staged) and bad files.

    `stage_dir` is the private temp folder of the segments staged for this snapshot
    (removed by `close`); `bound` the segment files the views read lazily. `entries` (the
    manifest of this snapshot's sidecars) and `drift` (the drift index of the cohort-runs
    whose drift rows are valid for its inputs) are Arrow tables of `ENTRY` and `DRIFT_ENTRY`.
    """

    root: Path
    stage_dir: Path
    use_cache: bool = True
    segments: dict[str, Segment] = field(default_factory=dict)  # name -> segment (cached + staged)
    staged: set[str] = field(default_factory=set)
    entries: Any = field(default_factory=lambda: _empty(ENTRY))
    drift: Any = field(default_factory=lambda: _empty(DRIFT_ENTRY))
    stale: int = 0  # cohort-runs whose drift the cache does not hold
    walked: bool = True  # False: the sidecars the manifest lists, as of the last refresh
    bound: list[str] = field(default_factory=list)

    def segment_path(self, name: str) -> Path:
        return (self.stage_dir if name in self.staged else cache_dir(self.root)) / name

    def files(self) -> list[str]:
        """Every file the snapshot's views read lazily (to allow them on a locked connection)."""
        return list(self.bound)

    def status(self) -> list[tuple[str, str, str]]:
        """`(section, item, value)` rows: how much of this snapshot the cache served."""
        if not self.use_cache:
            return [("cache", "used", "no")]
        counts = _segment_counts(_live(self.entries).column("segment"))
        staged = sum(count for name, count in counts.items() if name in self.staged)
        return [
            ("cache", "folder", str(cache_dir(self.root))),
            ("cache", "tree walked", "yes" if self.walked else "no: as of the last refresh (--cached)"),
            ("cache", "sidecars read from the cache", str(sum(counts.values()) - staged)),
            ("cache", "sidecars read from the tree", str(staged)),
            ("cache", "cohort-runs with drift cached", str(self.drift.num_rows)),
            ("cache", "cohort-runs to refresh", str(self.stale)),
        ]

    def close(self) -> None:
        shutil.rmtree(self.stage_dir, ignore_errors=True)


def read_files(schema: Any, union_by_name: bool = True) -> str:
    """The sidecar columns (plus source_file) of the Parquet files bound as `?`, each cast
    to its sidecar type: a file whose values do not fit (text in `value`) fails the read.

    Without `union_by_name` DuckDB matches every file's columns by name to the first file's
    and casts them to its types, and a file lacking one of them fails the read.
    """
    columns = ", ".join([f"CAST({f.name} AS {_ARROW_TO_DUCKDB[str(f.type)]}) AS {f.name}" for f in schema]
                        + ["source_file"])
    return (
        f"SELECT {columns} FROM ({typed_empty(schema)}\nUNION ALL BY NAME\n"
        f"SELECT * FROM read_parquet(?, union_by_name = {str(union_by_name).lower()}, "
        "hive_partitioning = false, filename = 'source_file'))"
    )


def unreadable(exc: Exception, path: str) -> str:
    reason = re.sub(r"^[\w ]*Error: ", "", str(exc).strip().splitlines()[0])
    reason = reason.replace(f"'{path}'", "").replace(f'"{path}"', "").replace("  ", " ").strip()
    return f"unreadable as a sidecar ({reason}); rewrite or remove it"


def _copy_to(con: Any, query: str, target: Path, params: list | None = None) -> None:
    con.execute(f"COPY ({query}) TO {sql_string(str(target))} "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)", params)


def _stage(con: Any, files: list[str], schema: Any, dest: Path, source: str,
           strip: int, template: Path | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Copy the rows of `files` into new segments under `dest`; return their names and the
    `(path, reason)` of files DuckDB cannot read.

    One read for the whole list; if DuckDB rejects it, the list is halved until the bad
    files are alone, so a few bad files cost a few extra reads, not one read per file.
    `source_file` is stored relative to the root (its first `strip` characters dropped),
    so the cache does not depend on where the tree lives.

    With `template`, an empty file of the sidecar schema, the first read goes without
    `union_by_name`: the files are matched by name to the template's columns and cast to
    its types, which spares the pass union_by_name makes over every footer first (500
    sample sidecars: 0.29-0.36 s against 0.47-0.63 s). A file lacking a column fails that
    read, and the list is read again by union.
    """
    import duckdb

    name = segment_name(source)
    relative = f"SELECT * REPLACE (substr(source_file, {strip + 1}) AS source_file) FROM ({{}})"
    if template is not None:
        try:
            _copy_to(con, relative.format(read_files(schema, union_by_name=False)), dest / name,
                     [[str(template), *files]])
            return [name], []
        except duckdb.Error:
            (dest / name).unlink(missing_ok=True)
    query = relative.format(read_files(schema))
    try:
        _copy_to(con, query, dest / name, [files])
        return [name], []
    except duckdb.Error as exc:
        (dest / name).unlink(missing_ok=True)
        if len(files) == 1:
            return [], [(files[0], unreadable(exc, files[0]))]
    middle = len(files) // 2
    names_a, bad_a = _stage(con, files[:middle], schema, dest, source, strip)
    names_b, bad_b = _stage(con, files[middle:], schema, dest, source, strip)
    return names_a + names_b, bad_a + bad_b


def misfits(con: Any, relation: str, source: str, params: list | None = None) -> list[tuple[str, str]]:
    """`(source_file, reason)` of the files in `relation` that are not sidecars this version
    understands: a NULL in a required column, or a newer schema_version."""
    required = REQUIRED[source]
    missing = ", ".join(f"CASE WHEN bool_or({c} IS NULL) THEN '{c}' END" for c in required)
    version = (
        f"CASE WHEN max(schema_version) > {SCHEMA_VERSION} THEN 'schema_version ' || "
        f"max(schema_version) || ' is newer than this metricsduck reads ({SCHEMA_VERSION}); "
        "upgrade metricsduck' END" if "schema_version" in required else "NULL"
    )
    rows = con.execute(
        f"SELECT source_file, {version}, concat_ws(', ', {missing}) FROM {relation} "
        "GROUP BY source_file ORDER BY source_file", params
    ).fetchall()
    bad = []
    for path, newer, nulls in rows:
        if newer:
            bad.append((path, newer))
        elif nulls:
            bad.append((path, f"not a metricsduck sidecar: no value for {nulls}; rewrite or remove it"))
    return bad


def take_snapshot(con: Any, root: Path, config: Config, *, use_cache: bool = True,
                  cached_only: bool = False) -> tuple[Snapshot, list[tuple[str, str, str]]]:
    """Bind `facts_raw` (a table) and `samples_raw` (a view over Parquet segments) on `con`.

    Sidecars the cache already holds unchanged are read from its segments; the rest are
    read by explicit file list into segments staged in a private temp folder. With
    `cached_only` the tree is not walked: the snapshot is the sidecars the manifest lists,
    as of the last refresh (the tree is walked if there is no usable manifest). Returns
    the snapshot and the `(path, source, reason)` of every file left out.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .writer import metrics_schema, samples_schema

    root = Path(root).resolve()
    prefix = str(root)
    schemas = {"facts_raw": metrics_schema(), "samples_raw": samples_schema()}
    names = {sidecar_name(config.prefix, "metrics", "parquet"): "facts_raw",
             sidecar_name(config.prefix, "samples", "parquet"): "samples_raw"}
    snapshot = Snapshot(root, Path(tempfile.mkdtemp(prefix="metricsduck-snapshot-")), use_cache)
    try:
        cached = _read_listing(cache_dir(root), MANIFEST_FILE, ENTRY) if use_cache else None
        known = _empty(ENTRY)
        if cached is not None:
            known, segments = cached
            snapshot.segments.update(segments)
        if cached is not None and cached_only:
            found, unlisted = known.select(list(FOUND)), []
            snapshot.walked = False
        else:
            found, unlisted = walk(root, names)
        kept, fresh = _match(found, known, set(snapshot.segments))
        bad = [(path, "tree", reason) for path, reason in unlisted]
        bad += [(f"{prefix}/{row['path']}", row["source"], row["reason"])
                for row in kept.filter(pc.is_valid(kept.column("reason"))).to_pylist()]
        parts = [kept]
        for source in SOURCES:
            mine = fresh.filter(pc.equal(fresh.column("source"), source))
            if mine.num_rows:
                staged, reasons = _stage_fresh(con, snapshot, source, mine, schemas[source], prefix)
                parts.append(staged)
                bad += reasons
        snapshot.entries = pa.concat_tables(parts)
        drift = _read_listing(cache_dir(root), DRIFT_INDEX_FILE, DRIFT_ENTRY) if use_cache else None
        if drift is not None:
            snapshot.drift, segments = drift
            snapshot.segments.update(segments)
        _prune(snapshot)
        _bind(con, snapshot, schemas, prefix)
    except BaseException:
        snapshot.close()
        raise
    return snapshot, bad


def _match(found: Any, known: Any, segments: set[str]) -> tuple[Any, Any]:
    """Split the sidecars `found` into the manifest rows of those the cache holds unchanged
    (same size and mtime, and their segment still there) and those to read (new, changed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def key(table: Any) -> Any:
        return pc.binary_join_element_wise(table.column("source"), table.column("path"), "/")

    prior = known.take(pc.index_in(key(found), value_set=key(known)))  # NULL rows: not known
    same = pc.and_kleene(pc.equal(prior.column("size"), found.column("size")),
                         pc.equal(prior.column("mtime_ns"), found.column("mtime_ns")))
    segment = prior.column("segment")
    held = pc.or_kleene(pc.is_null(segment), pc.is_in(segment, value_set=pa.array(sorted(segments), pa.string())))
    usable = pc.fill_null(pc.and_kleene(same, held), False)
    return prior.filter(usable), found.filter(pc.invert(usable))


def _prune(snapshot: Snapshot) -> None:
    """Forget segments that no live sidecar or drift entry refers to any more."""
    used = {*_segment_counts(snapshot.entries.column("segment")), *_segment_counts(snapshot.drift.column("segment"))}
    snapshot.segments = {n: s for n, s in snapshot.segments.items() if n in used}


def _stage_fresh(con: Any, snapshot: Snapshot, source: str, fresh: Any, schema: Any,
                 prefix: str) -> tuple[Any, list[tuple[str, str, str]]]:
    """Read new and changed sidecars (`fresh`, `FOUND` columns) into staged segments; return
    their manifest rows and the `(path, source, reason)` of the bad ones."""
    import pyarrow.parquet as pq

    template = snapshot.stage_dir / f"template-{source}.parquet"
    pq.write_table(schema.empty_table(), template)
    relative = fresh.column("path").to_pylist()
    staged, unread = _stage(con, [f"{prefix}/{path}" for path in relative], schema,
                            snapshot.stage_dir, source, len(prefix) + 1, template)
    reasons = {path[len(prefix) + 1:]: reason for path, reason in unread}
    holds: dict[str, tuple[str, str | None, str | None]] = {}  # path -> segment, key, run
    for name in staged:
        location = str(snapshot.stage_dir / name)
        reasons.update(misfits(con, "read_parquet(?)", source, [location]))
        rows = con.execute("SELECT source_file, min(baseline_key), min(run_id) FROM read_parquet(?) "
                           "GROUP BY source_file", [location]).fetchall()
        holds.update((path, (name, key, run)) for path, key, run in rows)
        stat = (snapshot.stage_dir / name).stat()
        snapshot.segments[name] = Segment(name, source, len(rows), stat.st_size, stat.st_mtime_ns)
        snapshot.staged.add(name)
    entries = []
    stats = zip(relative, fresh.column("size").to_pylist(), fresh.column("mtime_ns").to_pylist())
    for path, size, mtime_ns in stats:
        reason = reasons.get(path)
        if reason is not None:
            entries.append((path, source, size, mtime_ns, None, reason, None, None))
        elif path in holds:  # a file with no rows holds nothing to read
            segment, key, run = holds[path]
            entries.append((path, source, size, mtime_ns, segment, None, key, run))
    bad = [(f"{prefix}/{path}", source, reason) for path, reason in sorted(reasons.items())]
    return _rows_table(entries, ENTRY), bad


def _segment_reads(snapshot: Snapshot, source: str, live: dict[str, int], columns: str,
                   filter_sql: str) -> list[str]:
    """SELECTs over the segments of `source`: whole where every row is live, else filtered."""
    mine = sorted(n for n, s in snapshot.segments.items() if s.source == source)
    whole = [str(snapshot.segment_path(n)) for n in mine if live.get(n) == snapshot.segments[n].files]
    partial = [str(snapshot.segment_path(n)) for n in mine if live.get(n, 0) < snapshot.segments[n].files]
    snapshot.bound += whole + partial
    read = f"SELECT {columns} FROM read_parquet([{{}}], filename = 'segment_file')"
    parts = [read.format(", ".join(map(sql_string, whole)))] if whole else []
    if partial:
        parts.append(read.format(", ".join(map(sql_string, partial))) + f" WHERE {filter_sql}")
    return parts


def relation_kind(con: Any, name: str) -> str | None:
    """'VIEW' or 'TABLE' for a relation of the main schema, None if there is none."""
    rows = con.execute("SELECT table_type FROM information_schema.tables "
                       "WHERE table_schema = 'main' AND table_name = ?", [name]).fetchall()
    return ("VIEW" if rows[0][0] == "VIEW" else "TABLE") if rows else None


def _create_from(con: Any, name: str, rows: Any, query: str) -> None:
    """`CREATE OR REPLACE TABLE name AS query`, where the query reads the Arrow table as `rows`."""
    con.register("rows", rows)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {query}")
    finally:
        con.unregister("rows")


def _bind(con: Any, snapshot: Snapshot, schemas: dict[str, Any], prefix: str) -> None:
    """`facts_raw` as a table and `samples_raw` as a view over the live rows of the segments.

    A segment whose every file is still live is read whole; one holding rows of changed,
    deleted or bad files is filtered to the rows of its live files (`cache_live`: each live
    sidecar with the one segment that holds its current rows).
    """
    live = _live(snapshot.entries)
    _create_from(con, "cache_live", _located(snapshot, live),
                 "SELECT path AS source_file, * EXCLUDE (path) FROM rows")
    counts = _segment_counts(live.column("segment"))
    snapshot.bound = []
    for source, kind in (("facts_raw", "TABLE"), ("samples_raw", "VIEW")):
        schema = schemas[source]
        columns = ", ".join(f.name for f in schema) + f", {sql_string(prefix + '/')} || source_file AS source_file"
        parts = [typed_empty(schema)] + _segment_reads(
            snapshot, source, counts, columns,
            "(source_file, segment_file) IN (SELECT source_file, segment_file FROM cache_live "
            f"WHERE source = {sql_string(source)})")
        existing = relation_kind(con, source)
        if existing:
            con.execute(f"DROP {existing} {source}")
        con.execute(f"CREATE {kind} {source} AS " + "\nUNION ALL\n".join(parts))


# --- publishing ------------------------------------------------------------------------------

def _compact(snapshot: Snapshot, folder: Path) -> None:
    """Merge the segments of a source into one, in `folder`, when there are too many of them
    or when most of their rows belong to changed, deleted or bad files (read no more)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def key(table: Any, source: str) -> Any:
        """What identifies a row's origin: its sidecar, or for drift its cohort-run."""
        if source != DRIFT_SOURCE:
            return table.column("source_file")
        return pc.binary_join_element_wise(table.column("baseline_key"), table.column("run_id"), "\x1f")

    live = _live(snapshot.entries)
    live = live.rename_columns(["source_file" if n == "path" else n for n in live.column_names])
    for source in SOURCES + (DRIFT_SOURCE,):
        mine = sorted(n for n, s in snapshot.segments.items() if s.source == source)
        listing = snapshot.drift if source == DRIFT_SOURCE else live
        rows = listing.filter(pc.is_in(listing.column("segment"), value_set=pa.array(mine, pa.string())))
        if not rows.num_rows or (len(mine) <= MAX_SEGMENTS
                                 and 2 * rows.num_rows >= sum(snapshot.segments[n].files for n in mine)):
            continue
        name = segment_name(source)
        tmp = folder / f".{name}.tmp"
        writer = None
        try:
            for segment in mine:
                wanted = key(rows.filter(pc.equal(rows.column("segment"), segment)), source)
                for batch in pq.ParquetFile(snapshot.segment_path(segment)).iter_batches():
                    if writer is None:  # segments differ in which columns were all non-null
                        schema = pa.schema([f.with_nullable(True) for f in batch.schema])
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                    kept = batch.filter(pc.is_in(key(batch, source), value_set=wanted))
                    writer.write_batch(kept.cast(schema))
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, folder / name)
        stat = (folder / name).stat()
        for stale in mine:
            del snapshot.segments[stale]
            snapshot.staged.discard(stale)
        snapshot.segments[name] = Segment(name, source, rows.num_rows, stat.st_size, stat.st_mtime_ns)
        merged = pa.array(mine, pa.string())
        for attribute in ("entries", "drift"):  # a bad sidecar's NULL segment stays NULL
            table = getattr(snapshot, attribute)
            segment = table.column("segment")
            setattr(snapshot, attribute, table.set_column(
                table.schema.get_field_index("segment"), "segment",
                pc.if_else(pc.is_in(segment, value_set=merged), pa.scalar(name, pa.string()), segment)))


def publish(snapshot: Snapshot) -> bool:
    """Make the cache what this snapshot read: copy its staged segments in, write the
    manifest and the drift index.

    Call it under the refresh lock. Returns False if the cache already matched. Segments
    no longer referenced are retired: kept for an hour, for stores still reading them,
    then deleted. The views of the snapshot's store keep reading the files they read.
    """
    if not snapshot.use_cache:
        return False
    folder = cache_dir(snapshot.root)
    _prune(snapshot)
    if not snapshot.staged:  # else there is something to publish: no need to read the listings
        manifest = _read_listing(folder, MANIFEST_FILE, ENTRY)
        index = _read_listing(folder, DRIFT_INDEX_FILE, DRIFT_ENTRY)
        if (manifest is not None and index is not None
                and _sorted(manifest[0]).equals(_sorted(snapshot.entries))
                and _sorted(index[0]).equals(_sorted(snapshot.drift))
                and set(manifest[1]) | set(index[1]) == set(snapshot.segments)):
            return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _compact(snapshot, folder)
        for name in sorted(snapshot.staged & set(snapshot.segments)):
            if (folder / name).exists():  # published by an earlier call (segments never change)
                continue
            tmp = folder / f".{name}.tmp"
            shutil.copyfile(snapshot.stage_dir / name, tmp)
            os.replace(tmp, folder / name)
        segments = []
        for name, segment in sorted(snapshot.segments.items()):
            stat = (folder / name).stat()
            segments.append(Segment(name, segment.source, segment.files, stat.st_size, stat.st_mtime_ns))
        retired = _retire(folder, set(snapshot.segments))
        raw = [s for s in segments if s.source != DRIFT_SOURCE]
        _write_listing(folder, MANIFEST_FILE, snapshot.entries, raw, retired)
        _write_listing(folder, DRIFT_INDEX_FILE, snapshot.drift,
                       [s for s in segments if s.source == DRIFT_SOURCE], retired)
    except OSError as exc:
        raise StorageError(f"{folder}: cannot update the cache ({exc.strerror}); "
                           "the sidecars are unchanged, and deleting the folder is safe") from None
    return True


def _retire(folder: Path, referenced: set[str]) -> dict[str, float]:
    """`{segment: retired_at}` of the unreferenced segments still kept; older ones are deleted.

    A store that took its snapshot before this publish may still read a retired segment,
    so it stays for RETIRED_GRACE_S after it was first seen unreferenced.
    """
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(folder / MANIFEST_FILE).metadata or {}
        known = json.loads(metadata.get(RETIRED_KEY, b"{}"))
    except Exception:
        known = {}
    now = time.time()
    kept = {}
    for path in folder.glob("*-*.parquet"):
        if path.name in referenced:
            continue
        retired_at = known.get(path.name, now)
        if now - retired_at > RETIRED_GRACE_S:
            path.unlink(missing_ok=True)
        else:
            kept[path.name] = retired_at
    return kept
