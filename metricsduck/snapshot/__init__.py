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

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..engine import ARROW_TO_DUCKDB, relation_kind, sql_string
from ..layout import sidecar_name
from ..writer import SCHEMA_VERSION
from .scan import walk
from .segments import (
    DRIFT_ENTRY,
    DRIFT_INDEX_FILE,
    ENTRY,
    FOUND,
    MANIFEST_FILE,
    SOURCES,
    Segment,
    _empty,
    _live,
    _read_listing,
    _rows_table,
    cache_dir,
    located,
    prune,
    publish,
    segment_counts,
    segment_name,
)

__all__ = ["Snapshot", "misfits", "publish", "read_files", "take_snapshot", "typed_empty", "unreadable"]


def typed_empty(schema: Any) -> str:
    """`SELECT CAST(NULL AS type) AS col, … WHERE false`: the sidecar schema with no rows."""
    columns = [f"CAST(NULL AS {ARROW_TO_DUCKDB[str(f.type)]}) AS {f.name}" for f in schema]
    columns.append("CAST(NULL AS VARCHAR) AS source_file")
    return "SELECT " + ", ".join(columns) + " WHERE false"


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
        counts = segment_counts(_live(self.entries).column("segment"))
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
    columns = ", ".join([f"CAST({f.name} AS {ARROW_TO_DUCKDB[str(f.type)]}) AS {f.name}" for f in schema]
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
    its types, which spares the pass union_by_name makes over every footer first. A file
    lacking a column fails that read, and the list is read again by union.
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


def required_columns(source: str) -> tuple[str, ...]:
    """Columns no row of `source` can do without (the non-nullable fields of its schema); a
    file with a NULL in any of them is not a sidecar."""
    from ..marks import marks_schema
    from ..writer import metrics_schema, samples_schema

    schema = {"facts_raw": metrics_schema, "samples_raw": samples_schema, "marks_raw": marks_schema}[source]()
    return tuple(f.name for f in schema if not f.nullable)


def misfits(con: Any, relation: str, source: str, params: list | None = None) -> list[tuple[str, str]]:
    """`(source_file, reason)` of the files in `relation` that are not sidecars this version
    understands: a NULL in a required column, or a newer schema_version."""
    required = required_columns(source)
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

    from ..writer import metrics_schema, samples_schema

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
            found, unlisted = known.select(list(FOUND)), list[tuple[str, str]]()
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
        prune(snapshot)
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
    entries: list[tuple[Any, ...]] = []
    stats = zip(relative, fresh.column("size").to_pylist(), fresh.column("mtime_ns").to_pylist(), strict=True)
    for path, size, mtime_ns in stats:
        reason = reasons.get(path)
        if reason is not None:
            entries.append((path, source, size, mtime_ns, None, reason, None, None))
        elif path in holds:  # a file with no rows holds nothing to read
            segment, key, run = holds[path]
            entries.append((path, source, size, mtime_ns, segment, None, key, run))
    bad = [(f"{prefix}/{path}", source, reason) for path, reason in sorted(reasons.items())]
    return _rows_table(entries, ENTRY), bad


def segment_reads(snapshot: Snapshot, source: str, live: dict[str, int], columns: str,
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


def create_from(con: Any, name: str, rows: Any, query: str) -> None:
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
    create_from(con, "cache_live", located(snapshot, live),
                 "SELECT path AS source_file, * EXCLUDE (path) FROM rows")
    counts = segment_counts(live.column("segment"))
    snapshot.bound = []
    for source, kind in (("facts_raw", "TABLE"), ("samples_raw", "VIEW")):
        schema = schemas[source]
        columns = ", ".join(f.name for f in schema) + f", {sql_string(prefix + '/')} || source_file AS source_file"
        parts = [typed_empty(schema)] + segment_reads(
            snapshot, source, counts, columns,
            "(source_file, segment_file) IN (SELECT source_file, segment_file FROM cache_live "
            f"WHERE source = {sql_string(source)})")
        existing = relation_kind(con, source)
        if existing:
            con.execute(f"DROP {existing} {source}")
        con.execute(f"CREATE {kind} {source} AS " + "\nUNION ALL\n".join(parts))
