"""`connect(root)`: a DuckDB connection whose views are ready, for notebooks and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .catalog import (
    build, catalog_path, check_unchanged, discover, init_catalog, migration_states, read_ledger,
)
from .config import Config, resolve_config


class Store:
    """An in-memory DuckDB catalog over one results tree.

    `store.con` is the connection; `store.sql(query, params)` returns a DuckDB relation
    (`.df()`, `.arrow()`, `.pl()`, `.fetchall()`). Parameters are bound, never pasted.
    """

    def __init__(self, root: Path, config: Config, con: Any) -> None:
        self.root = root
        self.config = config
        self.con = con

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        return self.con.sql(query, params=params)

    def status(self) -> list[tuple[str, str, str]]:
        """`(section, item, value)` rows describing the tree and the catalog; writes nothing."""
        path = catalog_path(self.root)
        rows = [("tree", "root", str(self.root.resolve())),
                ("tree", "config", self.config.source)]
        ledger = read_ledger(path)
        rows.append(("catalog", "persisted", str(path) if path.exists() else "no (run `metricsduck init`)"))
        for migration, state in migration_states(discover(), ledger):
            rows.append(("sql", migration.label, state if path.exists() else "pending"))
        counts = self.sql(
            "SELECT (SELECT count(DISTINCT source_file) FROM facts_raw), "
            "(SELECT count(DISTINCT source_file) FROM samples_raw), "
            "(SELECT count(*) FROM runs), (SELECT count(*) FROM cohort_runs), "
            "(SELECT count(DISTINCT baseline_key) FROM cohort_runs), (SELECT count(*) FROM facts)"
        ).fetchall()[0]
        names = ("metric sidecars", "sample sidecars", "runs", "cohort-runs", "baseline keys", "fact rows")
        rows += [("data", name, str(value)) for name, value in zip(names, counts)]
        return rows

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(root: str | Path, config: Config | None = None, *, sql_dir: Path | None = None) -> Store:
    """Open a store over the tree at `root` (which may be empty or missing).

    Views are built in memory, so several processes can query one tree at once. If the
    tree has a persisted catalog, its ledger is checked first: an applied SQL file that has
    since been edited is an error.
    """
    import duckdb

    root = Path(root)
    config = config or resolve_config(root)
    migrations = discover(sql_dir)
    path = catalog_path(root)
    check_unchanged(migrations, read_ledger(path), path)
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        build(con, root, config, sql_dir=sql_dir)
    except BaseException:
        con.close()
        raise
    return Store(root, config, con)


def init(root: str | Path, config: Config | None = None, *, sql_dir: Path | None = None) -> Path:
    """Persist the catalog under `ROOT/.metricsduck/` and save the config beside it."""
    from .files import write_atomic
    from .layout import CACHE_DIR, CONFIG_FILE

    root = Path(root)
    config = config or resolve_config(root)
    if config.source != "<defaults>":
        saved = root / CACHE_DIR / CONFIG_FILE
        source = Path(config.source)
        if source.resolve() != saved.resolve():
            write_atomic(saved, source.read_bytes())
    path, _ = init_catalog(root, config, sql_dir=sql_dir)
    return path
