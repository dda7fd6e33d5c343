"""The logical source tables the views read: `facts_raw`, `samples_raw` and `marks_raw`.

Python binds them either to a snapshot of the tree (read once, through the compacted
cache; the in-memory store) or to live globs over the sidecars (the persisted catalog,
which sees files written later). An empty tree gives empty typed tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..engine import sql_string
from ..layout import CACHE_DIR, sidecar_name
from ..snapshot import Snapshot, misfits, read_files, take_snapshot, typed_empty, unreadable

PLACEHOLDER_DIR = "empty"


def _sources(root: Path, config: Config) -> list[tuple[str, str, Any, Path]]:
    """`(view, glob, schema, placeholder)` of each logical source table under `root`."""
    from ..marks import MARKS_DIR, marks_glob, marks_schema
    from ..writer import metrics_schema, samples_schema

    root = root.resolve()
    metrics, samples = (sidecar_name(config.prefix, a, "parquet") for a in ("metrics", "samples"))
    empty = root / CACHE_DIR / PLACEHOLDER_DIR
    return [
        ("facts_raw", f"{root}/**/{metrics}", metrics_schema(), empty / metrics),
        ("samples_raw", f"{root}/**/{samples}", samples_schema(), empty / samples),
        ("marks_raw", marks_glob(root), marks_schema(), root / CACHE_DIR / MARKS_DIR / "empty.parquet"),
    ]


def write_placeholders(root: Path, config: Config) -> None:
    """Zero-row files that keep every source glob non-empty.

    The persisted catalog's views read the live glob, and DuckDB rejects a glob that
    matches nothing; with these, a catalog made on an empty tree sees sidecars and marks
    written later. They hold no rows, so they change no result.
    """
    import pyarrow as pa

    from ..files import parquet_bytes, write_atomic

    for _, _, schema, placeholder in _sources(root, config):
        write_atomic(placeholder, parquet_bytes(pa.Table.from_pylist([], schema=schema)))


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


def bind_sources(con: Any, root: Path, config: Config, *, snapshot: bool = False,
                 use_cache: bool = True, cached_only: bool = False) -> Snapshot | None:
    """Create `facts_raw`, `samples_raw` and `marks_raw` over the files under `root`.

    Each is the typed empty schema UNION ALL BY NAME the files, so an empty tree gives
    empty typed tables and sidecars missing an optional column read as NULL there.
    With `snapshot`, they are read once (`metricsduck.cache.take_snapshot`, through the
    compacted cache unless `use_cache` is False; with `cached_only`, the sidecars the cache
    lists, as of its last refresh, without a walk of the tree): files that cannot be read, or are not
    sidecars, are left out and listed in `bad_files` (path, source, reason) instead of
    failing the whole tree; the snapshot is returned. Without it they are live views over
    the glob that see new files on every query (the persisted catalog).
    """
    sources = _sources(root, config)
    if not snapshot:
        # Binding a view over `read_parquet(..., union_by_name)` reads every matching footer,
        # and each view binds the sources again through its dependencies: keep the footers
        # for this connection (DuckDB re-reads a file whose modification time changed).
        con.execute("SET parquet_metadata_cache = true")
        for view, pattern, schema, _ in sources:
            files = con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchall()[0][0]
            body = typed_empty(schema)
            if files:
                body += (
                    "\nUNION ALL BY NAME\nSELECT * FROM read_parquet("
                    f"{sql_string(pattern)}, union_by_name = true, hive_partitioning = false, "
                    "filename = 'source_file')"
                )
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
        return None
    con.execute("CREATE OR REPLACE TABLE bad_files (path VARCHAR, source VARCHAR, reason VARCHAR)")
    # Sidecars and marks are read once each, and may change between snapshots: their
    # footers are not kept (a cold snapshot reads 200,000 of them at 100k cohort-runs).
    con.execute("SET parquet_metadata_cache = false")
    taken, bad = take_snapshot(con, root, config, use_cache=use_cache, cached_only=cached_only)
    _, pattern, schema, _ = sources[2]
    files = [row[0] for row in con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()]
    con.execute(f"CREATE OR REPLACE TABLE marks_raw AS {typed_empty(schema)}")
    unread = _load_marks(con, files, schema) if files else []
    odd = misfits(con, "marks_raw", "marks_raw")
    for path, _ in odd:
        con.execute("DELETE FROM marks_raw WHERE source_file = ?", [path])
    bad += [(path, "marks_raw", reason) for path, reason in unread + odd]
    if bad:
        con.executemany("INSERT INTO bad_files VALUES (?, ?, ?)", sorted(bad))
    # What the views read from now on are the snapshot's segments, which never change (a
    # new segment gets a new name): their footers are parsed once, not by every view
    # bound over them and every query.
    con.execute("SET parquet_metadata_cache = true")
    return taken
