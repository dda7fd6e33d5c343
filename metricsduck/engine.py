"""DuckDB as metricsduck uses it: connections within bounds, and the small SQL helpers.

Every connection prints no progress bar, spills to a folder of its own, and stops at a
memory and a spill limit (`new_connection`, from `limits`: the environment, else the
config's `engine.*`, else defaults that leave the machine room); when DuckDB runs out of
either, the error says which limits were in force and where they came from
(`out_of_resources`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, ResourceError

if TYPE_CHECKING:
    import duckdb

    from .config import Config


ARROW_TO_DUCKDB = {
    "int32": "INTEGER",
    "int64": "BIGINT",
    "string": "VARCHAR",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def arrow_table(relation: Any) -> Any:
    """A DuckDB relation's rows as an Arrow table (DuckDB 2 hands back a RecordBatchReader)."""
    result = relation.arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def relation_kind(con: Any, name: str) -> str | None:
    """'VIEW' or 'TABLE' for a relation of the main schema, None if there is none."""
    rows = con.execute("SELECT table_type FROM information_schema.tables "
                       "WHERE table_schema = 'main' AND table_name = ?", [name]).fetchall()
    return ("VIEW" if rows[0][0] == "VIEW" else "TABLE") if rows else None


MEMORY_LIMIT_ENV = "METRICSDUCK_MEMORY_LIMIT"
TEMP_LIMIT_ENV = "METRICSDUCK_TEMP_LIMIT"
THREADS_ENV = "METRICSDUCK_THREADS"


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`con` without DuckDB's progress bar (a per-connection setting: each cursor needs it)."""
    import duckdb

    # it writes to stderr even without a terminal; inside Jupyter without ipywidgets DuckDB
    # refuses any progress-bar setting, and a locked configuration any setting at all
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    return con


@dataclass(frozen=True)
class Limit:
    setting: str  # DuckDB's setting
    value: str  # a size
    source: str  # where the value came from, for the error that names it


def limits(config: Config | None = None) -> tuple[Limit, Limit]:
    """The memory and spill limits a connection gets: METRICSDUCK_MEMORY_LIMIT /
    METRICSDUCK_TEMP_LIMIT when set, else the config's `engine.memory_limit` /
    `engine.temp_directory_size` unless `auto`, else half the machine's memory and a quarter
    of the spill folder's free space (at least 1 GB)."""
    spill = _spill_dir()
    out = []
    for setting, variable, key, default in (
            ("memory_limit", MEMORY_LIMIT_ENV, "engine.memory_limit", _memory_default),
            ("max_temp_directory_size", TEMP_LIMIT_ENV, "engine.temp_directory_size", lambda: _temp_default(spill))):
        configured = config.get(key) if config is not None else "auto"
        if os.environ.get(variable):
            out.append(Limit(setting, os.environ[variable], variable))
        elif configured != "auto":
            out.append(Limit(setting, configured, f"{key} in {config.source if config else 'the config'}"))
        else:
            out.append(Limit(setting, default(), f"{key}: auto; set it in the config, or {variable}"))
    return out[0], out[1]


def new_connection(config: Config | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that prints no progress bar and works within bounds.

    It spills to a folder of its own under `$TMPDIR/metricsduck-spill` once it holds its
    memory limit and stops with an error once the spill reaches its spill limit (`limits`):
    a mis-estimated join must neither take the machine nor fill its disk.
    METRICSDUCK_THREADS, if set, caps DuckDB's threads (default: one per core), for
    processes that share the cores. The folder is its own because DuckDB before 2.0 names
    spill files the same in every instance: two stores spilling into one folder overwrite
    each other's files (duckdb/duckdb#15173), and the first to close deletes the other's.
    """
    import duckdb

    con = quiet(duckdb.connect())
    con.execute("SET temp_directory = ?", [str(_own_spill_dir(_spill_dir()))])
    for limit in limits(config):
        try:
            con.execute(f"SET {limit.setting} = ?", [limit.value])
        except duckdb.Error as exc:
            con.close()
            raise InputError(f"{limit.source}={limit.value!r} is not a size DuckDB understands "
                             f"({str(exc).splitlines()[0]}); use a size such as 8GB or 512MB") from None
    threads = os.environ.get(THREADS_ENV)
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            con.close()
            raise InputError(f"{THREADS_ENV}={threads!r} is not a number of threads; use a whole number "
                             "such as 2, or unset it")
        con.execute(f"SET threads = {int(threads)}")
    return con


def out_of_resources(exc: Exception, config: Config | None = None) -> ResourceError:
    """What to do when DuckDB ran out of memory or spill space, naming the limits in force."""
    memory, temp = limits(config)
    return ResourceError(
        f"DuckDB ran out of memory or spill space ({str(exc).splitlines()[0]}); it may use "
        f"{memory.value} of memory ({memory.source}) and {temp.value} of spill files under {_spill_dir()} "
        f"({temp.source}): raise them, free disk space there, or refresh fewer runs at a time")


def _memory_default() -> str:
    return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2 // 2**20}MB"


def _temp_default(spill: Path) -> str:
    import shutil

    folder = spill if spill.exists() else spill.parent
    return f"{max(shutil.disk_usage(folder).free // 4 // 2**20, 1024)}MB"


def _spill_dir() -> Path:
    """Where DuckDB may spill: the system temp dir, never the caller's working directory."""
    import tempfile

    return Path(tempfile.gettempdir()) / "metricsduck-spill"


SPILL_SWEEP_AGE_S = 24 * 3600


def _own_spill_dir(spill: Path) -> Path:
    """A new folder name under `spill` for one connection, `<pid>-<random>`; DuckDB creates
    it on its first spill and deletes it on close. Folders left by processes that are gone
    (killed while spilling) are deleted here once a day old: a process of another PID
    namespace sharing the temp dir looks gone from here."""
    import shutil
    import time
    import uuid

    try:
        spill.mkdir(parents=True, exist_ok=True)
        for folder in spill.iterdir():
            pid = folder.name.partition("-")[0]
            if (pid.isdigit() and not _alive(int(pid))
                    and time.time() - folder.stat().st_mtime > SPILL_SWEEP_AGE_S):
                shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass  # an unwritable temp dir fails only when DuckDB needs to spill, as before
    return spill / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
