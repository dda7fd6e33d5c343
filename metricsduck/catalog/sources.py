"""The logical source tables the views read: `facts_raw`, `samples_raw` and `marks_raw`.

Python binds them to a snapshot of the tree (`bind_snapshot`: read once, through the
compacted cache; the in-memory store), to the compacted cache itself (`bind_cache`: the
persisted catalog, which reads the tree as the last refresh cached it), or to rows handed
over as Arrow tables (`bind_rows`: one part of a tree cut by baseline key, docs/design.md
§13). An empty tree gives empty typed tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..engine import sql_identifier, sql_string
from ..layout import CACHE_DIR
from ..snapshot import Snapshot, misfits, read_files, take_snapshot, typed_empty, unreadable
from ..snapshot.segments import DRIFT_ENTRY, DRIFT_INDEX_FILE, ENTRY, MANIFEST_FILE, SOURCES, cache_dir, segment_glob

if TYPE_CHECKING:
    from .definitions import Catalog, Definition

# Zero-row files that keep the persisted catalog's globs non-empty. They sit beside the
# cache folder, so `ROOT/.metricsduck/*/<name>` matches them and whatever the cache holds:
# DuckDB rejects a glob that matches nothing, and a catalog made before the first refresh
# must see what refreshes cache later. They hold no rows, so they change no result.
PLACEHOLDER_DIR = "empty"


def _marks(root: Path) -> tuple[str, Any, Path]:
    from ..marks import MARKS_DIR, marks_glob, marks_schema

    return marks_glob(root), marks_schema(), root / CACHE_DIR / MARKS_DIR / "empty.parquet"


def in_cache(root: Path, name: str) -> str:
    """The persisted catalog's glob over a file of the cache folder (or its segments, with
    `name` a pattern): it matches the placeholder too."""
    return f"{Path(root).resolve()}/{CACHE_DIR}/*/{name}"


def _write_empty(path: Path, schema: Any) -> None:
    from ..files import parquet_bytes, write_atomic

    write_atomic(path, parquet_bytes(schema.empty_table()))


def write_placeholder(root: Path, name: str, schema: Any) -> None:
    """A zero-row file `name` (of `schema`) that `in_cache(root, name)` matches."""
    _write_empty(Path(root) / CACHE_DIR / PLACEHOLDER_DIR / name.replace("*", "placeholder"), schema)


def write_placeholders(root: Path) -> None:
    """The placeholders of `bind_cache`'s globs and of the marks glob."""
    from ..snapshot.segments import listing_schema
    from ..writer import metrics_schema, samples_schema

    for name, schema in ((segment_glob("facts_raw"), _with_source_file(metrics_schema())),
                         (segment_glob("samples_raw"), _with_source_file(samples_schema())),
                         (MANIFEST_FILE, listing_schema(ENTRY)), (DRIFT_INDEX_FILE, listing_schema(DRIFT_ENTRY))):
        write_placeholder(root, name, schema)
    _, marks, path = _marks(root)
    _write_empty(path, marks)


def segment_rows(root: Path, source: str, select: str, listing: str, keys: str) -> str:
    """`SELECT select FROM` the rows of the cached segments of `source` (and its placeholder)
    that `listing`, a query of `keys` and `segment_file`, names: a retired segment, or an
    old segment holding a changed sidecar's rows, is not listed."""
    return (f"SELECT {select} FROM read_parquet({sql_string(in_cache(root, segment_glob(source)))}, "
            "union_by_name = true, hive_partitioning = false, filename = 'segment_file') "
            f"SEMI JOIN ({listing}) USING ({keys}, segment_file)")


def _with_source_file(schema: Any) -> Any:
    import pyarrow as pa

    return schema.append(pa.field("source_file", pa.string()))


def bind_cache(con: Any, root: Path, config: Config) -> None:
    """Create the source tables of the persisted catalog as views over the compacted cache.

    `facts_raw` and `samples_raw` are the rows of the sidecars the cache's manifest lists
    (each live sidecar with the segment holding its rows), as the last refresh left them;
    `bad_files` the sidecars it left out; `marks_raw` reads the marks on every query.
    `write_placeholders` first: DuckDB binds a view as it creates it.
    """
    root = root.resolve()
    prefix, manifest = sql_string(f"{root}/"), f"read_parquet({sql_string(in_cache(root, MANIFEST_FILE))})"
    con.execute(f"CREATE OR REPLACE VIEW bad_files AS SELECT {prefix} || path AS path, source, reason "
                f"FROM {manifest} WHERE reason IS NOT NULL")
    for source in SOURCES:
        listing = (f"SELECT path AS source_file, {sql_string(f'{cache_dir(root)}/')} || segment AS segment_file "
                   f"FROM {manifest} WHERE reason IS NULL AND source = {sql_string(source)}")
        con.execute(f"CREATE OR REPLACE VIEW {source} AS " + segment_rows(
            root, source, f"* EXCLUDE (segment_file) REPLACE ({prefix} || source_file AS source_file)",
            listing, "source_file"))
    pattern, schema, _ = _marks(root)
    con.execute(
        f"CREATE OR REPLACE VIEW marks_raw AS {typed_empty(schema)}\nUNION ALL BY NAME\n"
        f"SELECT * FROM read_parquet({sql_string(pattern)}, union_by_name = true, hive_partitioning = false, "
        "filename = 'source_file')")


def _bad_files(con: Any) -> None:
    """An empty `bad_files` (path, source, reason): the sidecars a snapshot leaves out."""
    con.execute("CREATE OR REPLACE TABLE bad_files (path VARCHAR, source VARCHAR, reason VARCHAR)")


def bind_rows(con: Any, rows: Mapping[str, Any]) -> None:
    """Create `facts_raw`, `samples_raw` and `marks_raw` as tables of the Arrow tables of `rows`
    (by those names; a missing one is empty), cast to the sidecar schemas, and an empty
    `bad_files`: the sources of one part of a tree, read by whoever cut it."""
    from ..marks import marks_schema
    from ..writer import metrics_schema, samples_schema

    unknown = sorted(set(rows) - set(SOURCES) - {"marks_raw"})
    if unknown:
        raise ValueError(f"bind_rows: {unknown[0]!r} is not a source table (facts_raw, samples_raw, marks_raw)")
    _bad_files(con)
    for source, schema in (("facts_raw", metrics_schema()), ("samples_raw", samples_schema()),
                           ("marks_raw", marks_schema())):
        con.execute(f"CREATE OR REPLACE TABLE {source} AS {typed_empty(schema)}")
        if source in rows:
            con.register("bound_rows", rows[source])
            try:
                con.execute(f"INSERT INTO {source} BY NAME SELECT * FROM bound_rows")
            finally:
                con.unregister("bound_rows")


def bind_given(con: Any, catalog: Catalog, given: Mapping[str, Any]) -> list[Definition]:
    """Create a table of each Arrow table of `given`, named after the view of `catalog` it
    stands in for (what the one who cut a tree computed over all of it, such as the broadcast
    `runs`); return the definitions still to apply, those views left out. The tables are
    made before the definitions, so the views that read one read the table."""
    for name, table in given.items():
        if name not in catalog or catalog[name].kind != "VIEW":
            raise ValueError(f"given {name!r} is not a view of the catalog")
        con.register("given_rows", table)
        try:
            con.execute(f"CREATE TABLE {sql_identifier(name)} AS SELECT * FROM given_rows")
        finally:
            con.unregister("given_rows")
    return [definition for definition in catalog if definition.name not in given]


def _load_marks(con: Any, files: list[str], schema: Any) -> list[tuple[str, str]]:
    """Insert the rows of the mark files into `marks_raw`; return `(path, reason)` of the
    unreadable ones (the list is halved until each bad file stands alone)."""
    import duckdb

    try:
        con.execute(f"INSERT INTO marks_raw {read_files(schema)}", [files])
        return []
    except duckdb.Error as exc:
        if len(files) == 1:
            return [(files[0], unreadable(exc, files[0]))]
    middle = len(files) // 2
    return _load_marks(con, files[:middle], schema) + _load_marks(con, files[middle:], schema)


def bind_marks(con: Any, root: Path) -> list[tuple[str, str, str]]:
    """Create `marks_raw` from the mark files of `root`; return `(path, source, reason)` of
    each one left out (unreadable, or not a mark)."""
    pattern, schema, _ = _marks(root)
    files = [row[0] for row in con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()]
    con.execute(f"CREATE OR REPLACE TABLE marks_raw AS {typed_empty(schema)}")
    unread = _load_marks(con, files, schema) if files else []
    odd = misfits(con, "marks_raw", "marks_raw")
    for path, _ in odd:
        con.execute("DELETE FROM marks_raw WHERE source_file = ?", [path])
    return [(path, "marks_raw", reason) for path, reason in unread + odd]


def bind_snapshot(con: Any, root: Path, config: Config, *, use_cache: bool = True,
                  cached_only: bool = False) -> Snapshot:
    """Create `facts_raw`, `samples_raw`, `marks_raw` and `bad_files` from one snapshot of
    the files under `root`, and return it.

    They are read once (`metricsduck.snapshot.take_snapshot`, through the compacted cache
    unless `use_cache` is False; with `cached_only`, the sidecars the cache lists, as of
    its last refresh, without a walk of the tree): files that cannot be read, or are not
    sidecars, are left out and listed in `bad_files` (path, source, reason) instead of
    failing the whole tree.
    """
    _bad_files(con)
    # Sidecars and marks are read once each, and may change between snapshots: their
    # footers are not kept (a cold snapshot reads 200,000 of them at 100k cohort-runs).
    con.execute("SET GLOBAL parquet_metadata_cache = false")
    taken, bad = take_snapshot(con, root, config, use_cache=use_cache, cached_only=cached_only)
    bad += bind_marks(con, root)
    if bad:
        con.executemany("INSERT INTO bad_files VALUES (?, ?, ?)", sorted(bad))
    # What the views read from now on are the snapshot's segments, which never change (a
    # new segment gets a new name): their footers are parsed once, not by every view
    # bound over them and every query.
    con.execute("SET GLOBAL parquet_metadata_cache = true")
    return taken
