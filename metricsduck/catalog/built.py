"""A built catalog, reused: the definitions kept in a read-only DuckDB file per SQL version.

Creating a view makes DuckDB bind its query down to the sources, so applying the 40-odd
definitions cost about 0.3 s on every `connect`, most of its fixed cost, although every
query binds the views it reads again anyway. A view read from a database file is not bound
until a query reads it, so the definitions are applied once into a file of the user's cache
folder and each store attaches that file read-only (as `BUILT`) instead; the store's own
relations (sources, settings, the served `drift`, temporaries) stay in its in-memory
database, which is searched first, so the views read them by their plain names.

A file is named after everything the bound views depend on: the DuckDB version, the text
of each definition's file (its documentation included), and the columns of every relation the store made before them
(the sources and settings). Anything else gets a file of its own, so a file is never read
by a store it does not fit; DuckDB would refuse a view whose columns changed. It is a cache:
where it cannot be written, the definitions are applied in memory as before, with the same
results. `METRICSDUCK_SQL_CACHE` names the folder (empty: no file, always in memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from .definitions import Catalog, Definition

BUILT = "metricsduck_sql"  # the attached database holding the definitions
CACHE_ENV = "METRICSDUCK_SQL_CACHE"
KEEP = 32  # built files kept in the folder, the most recently used


def cache_folder() -> Path | None:
    """Where built catalogs are kept: METRICSDUCK_SQL_CACHE, else the user's cache folder
    (`$XDG_CACHE_HOME/metricsduck`, `~/.cache/metricsduck`); None when disabled."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return Path(value) if value.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metricsduck"


def search_path(con: duckdb.DuckDBPyConnection) -> None:
    """Let `con` (the store's connection or a cursor of it, a session of its own) read the
    built definitions by their plain names, after its own relations."""
    con.execute(f"SET search_path = 'memory.main,{BUILT}.main'")


def built_name(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> str:
    """The file name of the built `catalog` over the relations `con` holds now."""
    import duckdb

    columns = con.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                          "WHERE database_name = 'memory' AND schema_name = 'main' "
                          "ORDER BY table_name, column_index").fetchall()
    # the whole text of each file: a fingerprint leaves out the documentation, the comments
    text = "\n".join([duckdb.__version__, *(f"{d.kind} {d.name}\n{d.text}" for d in catalog),
                      *("|".join(map(str, c)) for c in columns)])
    return f"sql-{hashlib.sha256(text.encode()).hexdigest()[:24]}.duckdb"


def attach_built(con: duckdb.DuckDBPyConnection, catalog: Catalog, definitions: Iterable[Definition],
                 apply: Callable[[duckdb.DuckDBPyConnection, Definition, str], None],
                 progress: Callable[[], None] | None = None) -> bool:
    """Attach the built file of `catalog` on `con`, building it first (`apply(con,
    definition, database)` for each of `definitions`) when the folder holds none; returns
    False, having changed nothing, when there is no folder to use."""
    import duckdb

    from ..engine import sql_string

    folder = cache_folder()
    if folder is None:
        return False
    path = folder / built_name(con, catalog)
    if not path.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # one name per process and thread: two stores built at once never share a file
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.unlink(missing_ok=True)
            con.execute(f"ATTACH {sql_string(str(tmp))} AS {BUILT}")
        except (OSError, duckdb.Error):
            return False
        try:
            search_path(con)
            for definition in definitions:
                apply(con, definition, BUILT)
                if progress is not None:
                    progress()
            con.execute(f"DETACH {BUILT}")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DETACH {BUILT}")
            con.execute("RESET search_path")
            tmp.unlink(missing_ok=True)
            for leftover in tmp.parent.glob(f"{tmp.name}.wal"):
                leftover.unlink(missing_ok=True)
            raise
        _prune(folder)
    else:
        with contextlib.suppress(OSError):
            os.utime(path)  # used: `_prune` keeps the most recently used
        if progress is not None:
            for _ in definitions:
                progress()
    try:
        con.execute(f"ATTACH {sql_string(str(path))} AS {BUILT} (READ_ONLY)")
    except duckdb.Error:  # unreadable (a disk error, another DuckDB): built in memory instead
        con.execute("RESET search_path")
        return False
    search_path(con)
    return True


def _prune(folder: Path) -> None:
    """Keep the KEEP most recently used built files of `folder`."""
    files = []
    for path in folder.glob("sql-*.duckdb"):
        with contextlib.suppress(OSError):
            files.append((path.stat().st_mtime_ns, path))
    for _, path in sorted(files, reverse=True)[KEEP:]:
        with contextlib.suppress(OSError):
            path.unlink()
