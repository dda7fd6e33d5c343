"""sql/ files → DuckDB: the settings, the source tables and every definition, in order.

`build` makes the catalog on a connection (the in-memory store of `connect`);
`init_catalog` persists one as `ROOT/.metricsduck/catalog.duckdb` for the DuckDB CLI and
other tools. The persisted catalog records the fingerprint of each definition it holds;
it is derived, so one that no longer matches the SQL is rebuilt by `init`, never trusted
or refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import SqlFileError, StorageError
from ..layout import CACHE_DIR, CATALOG_FILE
from .built import attach_built
from .definitions import (
    INPUTS,
    Catalog,
    Definition,
    discover,
    ledger_changes,
    packaged_sql_dir,
    read_ledger,
    update_ledger,
)
from .settings import fill_settings, settings_values
from .sources import bind_cache, bind_given, bind_rows, bind_snapshot, write_placeholders

if TYPE_CHECKING:
    import duckdb

    from ..snapshot import Snapshot

__all__ = [
    "INPUTS", "STORAGE_VERSION", "Catalog", "Definition", "apply", "bind_cache", "bind_rows", "bind_snapshot",
    "build", "cache_key", "catalog_path", "catalog_states", "discover", "fill_settings", "init_catalog",
    "ledger_changes", "packaged_sql_dir", "persisted_fingerprints", "read_ledger", "update_ledger",
    "write_placeholders"
]

CATALOG_TABLE = "metricsduck_catalog"


def cache_key(catalog: Catalog, name: str, config: Config) -> str:
    """What a result of `name` depends on besides its input rows: its fingerprint and the
    values of every setting it and its dependencies read. A cached result stays valid
    exactly as long as this does."""
    keys = catalog.reads(name)
    text = json.dumps([catalog[name].fingerprint, settings_values(config, keys)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _statement_line(text: str, start: int) -> int:
    return text.count("\n", 0, start) + 1


def apply(con: duckdb.DuckDBPyConnection, definition: Definition, database: str | None = None) -> None:
    """Create one definition on `con` (in `database`, else the current one), a failure
    reported with its file and line; its documentation becomes the object's comment."""
    import duckdb

    from ..engine import sql_string

    start = definition.text.find(definition.statement)
    name = f"{database}.main.{definition.name}" if database else definition.name
    try:
        con.execute(definition.statement_as(name))
    except duckdb.Error as exc:
        message = str(exc).strip()
        inner = re.search(r"LINE (\d+):", message)
        line = _statement_line(definition.text, start) + (int(inner[1]) - 1 if inner else 0)
        raise SqlFileError(definition.path, line, message.splitlines()[0]) from None
    if definition.doc:
        kind = "MACRO TABLE" if definition.table_macro else definition.kind
        con.execute(f"COMMENT ON {kind} {name} IS {sql_string(definition.doc)}")


def build(con: duckdb.DuckDBPyConnection, root: Path, config: Config, *, sql_dir: Path | None = None,
          catalog: Catalog | None = None, persisted: bool = False, use_cache: bool = True,
          cached_only: bool = False, rows: Mapping[str, Any] | None = None,
          given: Mapping[str, Any] | None = None,
          progress: Callable[[int, int], None] | None = None) -> Snapshot | None:
    """Fill the settings, bind the sources and apply every definition on `con`.

    The sources are a snapshot of the tree (returned; `bind_snapshot`), with `persisted`
    the compacted cache as the last refresh left it (`bind_cache`; returns None), or with
    `rows` those Arrow tables (`bind_rows`; returns None, and `drift` is `drift_computed`),
    and `given` Arrow tables that stand in for those views of the catalog (`bind_given`).
    Otherwise `drift` is served by `compute`, not computed by every query. The definitions of
    the in-memory store are those of the built file (`attach_built`), where one can be
    kept. `progress(done, total)` is called after each definition.
    """
    from ..compute import SERVED, bind_drift, serve_cached

    catalog = catalog or discover(sql_dir)
    con.execute("SET GLOBAL TimeZone = 'UTC'")  # global: the cursors of `Store.sql` inherit it
    fill_settings(con, config, root)
    taken = None
    definitions = list(catalog)
    if persisted:
        write_placeholders(root)
        bind_cache(con, root, config)
    elif rows is not None:
        bind_rows(con, rows)
        definitions = bind_given(con, catalog, given or {})
    else:
        taken = bind_snapshot(con, root, config, use_cache=use_cache, cached_only=cached_only)
    served = False

    def serve() -> None:
        nonlocal served
        served = True
        if persisted:
            serve_cached(con, root)
        elif not (taken is not None and bind_drift(con, taken, catalog, config)):
            apply(con, catalog[SERVED])  # in the store's own database, like a served one

    def place(con: duckdb.DuckDBPyConnection, definition: Definition, database: str | None = None) -> None:
        # `drift` is served before the rollup views are bound over it: binding them over
        # the computed chain costs more
        if definition.name == SERVED:
            serve()
        else:
            apply(con, definition, database)

    done = itertools.count(1)

    def step() -> None:
        if progress is not None:
            progress(min(next(done), len(catalog)), len(catalog))

    try:
        if persisted or not attach_built(con, catalog, definitions, place, step):
            for definition in definitions:
                place(con, definition)
                step()
        if SERVED in catalog and not served:
            serve()
        if taken is not None and SERVED not in catalog:
            bind_drift(con, taken, catalog, config)
    except BaseException:
        if taken is not None:
            taken.close()
        raise
    return taken


def catalog_path(root: Path) -> Path:
    return Path(root) / CACHE_DIR / CATALOG_FILE


def persisted_fingerprints(root: Path) -> dict[str, str] | None:
    """`{name: fingerprint}` the persisted catalog was built from (opened read-only), or
    None when there is none; {} when it is one without fingerprints (an older release)."""
    import duckdb

    path = catalog_path(root)
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StorageError(f"{path}: cannot open the catalog ({str(exc).splitlines()[0]}); delete it and "
                           "run `metricsduck init` to rebuild it") from None
    try:
        return dict(con.execute(f"SELECT name, fingerprint FROM {CATALOG_TABLE}").fetchall())
    except duckdb.CatalogException:
        return {}
    finally:
        con.close()


OUT_OF_DATE, NOT_PERSISTED, CURRENT = CATALOG_STATES = ("out of date", "not persisted", "current")  # worst first


def catalog_states(catalog: Catalog, persisted: dict[str, str] | None) -> list[tuple[Definition, str]]:
    """Each definition with its state in the persisted catalog: `current` (same
    fingerprint), `out of date` (`metricsduck init` rebuilds it) or `not persisted`."""
    if persisted is None:
        return [(d, NOT_PERSISTED) for d in catalog]
    return [(d, CURRENT if persisted.get(d.name) == d.fingerprint else OUT_OF_DATE) for d in catalog]


# The storage version the persisted catalog is written in: the newest the newest DuckDB CLI
# on PyPI reads (`pip install duckdb-cli`, 1.5.x), which cannot open a file of DuckDB 2.
STORAGE_VERSION = "v1.5.0"


def init_catalog(root: Path, config: Config, *, sql_dir: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Path, list[tuple[Definition, str]]]:
    """Persist the catalog as `ROOT/.metricsduck/catalog.duckdb`, replacing it atomically.

    Its views read the compacted cache, so they show the tree as the last `refresh` left
    it. The file is written in `STORAGE_VERSION`. Returns the path and each definition's
    state before this call.
    """
    from ..engine import new_connection, sql_string

    path = catalog_path(root)
    catalog = discover(sql_dir)
    states = catalog_states(catalog, persisted_fingerprints(root))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        con = new_connection(config)
        try:
            con.execute(f"ATTACH {sql_string(str(tmp))} AS persisted (STORAGE_VERSION '{STORAGE_VERSION}')")
            con.execute("USE persisted")
            build(con, root, config, catalog=catalog, persisted=True, progress=progress)
            con.execute(f"CREATE OR REPLACE TABLE {CATALOG_TABLE} (name VARCHAR PRIMARY KEY, kind VARCHAR, "
                        "fingerprint VARCHAR, file VARCHAR)")
            con.executemany(f"INSERT INTO {CATALOG_TABLE} VALUES (?, ?, ?, ?)",
                            [(d.name, d.kind, d.fingerprint, d.label) for d in catalog])
            con.execute("USE memory")
            con.execute("DETACH persisted")
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path, states
