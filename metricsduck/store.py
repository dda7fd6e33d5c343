"""`connect(root)`: a DuckDB connection whose views are ready, for notebooks and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .catalog import (
    bind_sources, build, catalog_path, check_unchanged, discover, init_catalog, migration_states, read_ledger,
)
from .config import Config, resolve_config
from .errors import InputError

TIERS = ("OK", "WARN", "ALERT")
BASELINE_KINDS = ("previous_run", "rolling", "last_good_run")
DIRECTIONS = ("increasing", "decreasing", "flat")
LEVELS = ("stage", "view", "target", "symbol")


def check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


class Store:
    """An in-memory DuckDB catalog over one results tree.

    `store.con` is the connection; `store.sql(query, params)` returns a DuckDB relation
    (`.df()`, `.arrow()`, `.pl()`, `.fetchall()`). Parameters are bound, never pasted.
    """

    def __init__(self, root: Path, config: Config, con: Any, sql_dir: Path | None = None) -> None:
        self.root = root
        self.config = config
        self.con = con
        self.sql_dir = sql_dir

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        return self.con.sql(query, params=params)

    def status(self) -> list[tuple[str, str, str]]:
        """`(section, item, value)` rows describing the tree and the catalog; writes nothing."""
        path = catalog_path(self.root)
        rows = [("tree", "root", str(self.root.resolve())),
                ("tree", "config", self.config.source)]
        ledger = read_ledger(path)
        rows.append(("catalog", "persisted", str(path) if path.exists() else "no (run `metricsduck init`)"))
        for migration, state in migration_states(discover(self.sql_dir), ledger):
            rows.append(("sql", migration.label, state if path.exists() else "pending"))
        counts = self.sql(
            "SELECT (SELECT count(DISTINCT source_file) FROM facts_raw), "
            "(SELECT count(DISTINCT source_file) FROM samples_raw), "
            "(SELECT count(*) FROM runs), (SELECT count(*) FROM cohort_runs), "
            "(SELECT count(DISTINCT baseline_key) FROM cohort_runs), (SELECT count(*) FROM facts)"
        ).fetchall()[0]
        names = ("metric sidecars", "sample sidecars", "runs", "cohort-runs", "baseline keys", "fact rows")
        rows += [("data", name, str(value)) for name, value in zip(names, counts)]
        bad = self.bad_files()
        rows.append(("data", "bad files", str(len(bad))))
        rows += [("bad file", path, reason) for path, _, reason in bad]
        return rows

    def bad_files(self) -> list[tuple[str, str, str]]:
        """`(path, source, reason)` of every file left out of this snapshot."""
        return self.sql("SELECT path, source, reason FROM bad_files ORDER BY path").fetchall()

    def drift(self, *, stage: str | None = None, view: str | None = None,
              target: str | None = None, symbol: str | None = None, baseline: str | None = None,
              tier: str | None = None, run: str | None = None, item: str | None = None) -> Any:
        """Rows of the `drift` view matching the filters, worst first (a DuckDB relation).

        `tier` keeps rows at least that bad (WARN: WARN and ALERT); `run` is a run id or
        'latest'; `baseline` a baseline kind; `item` 'metric' or 'distribution'.
        """
        check_choice("baseline", baseline, BASELINE_KINDS)
        check_choice("item", item, ("metric", "distribution"))
        return self._filtered(
            "drift",
            {"stage": stage, "view": view, "target": target, "symbol": symbol,
             "baseline_kind": baseline, "item_kind": item},
            tier=tier, run=run,
            order="tier_rank DESC NULLS LAST, run_started_at DESC, run_id, baseline_key, "
                  "baseline_kind, item_kind, item",
        )

    def trends(self, *, stage: str | None = None, view: str | None = None,
               target: str | None = None, symbol: str | None = None, metric: str | None = None,
               direction: str | None = None, run: str | None = None) -> Any:
        """Rows of the `trends` view matching the filters (a DuckDB relation).

        `run` is a run id, 'latest' (the newest run) or None (the trend as of every run).
        """
        check_choice("direction", direction, DIRECTIONS)
        return self._filtered(
            "trends",
            {"stage": stage, "view": view, "target": target, "symbol": symbol, "metric": metric,
             "direction": direction},
            tier=None, run=run,
            order="run_started_at DESC, run_id, direction = 'flat', baseline_key, metric",
        )

    def rollups(self, *, stage: str | None = None, view: str | None = None,
                run: str | None = None, level: str = "view", measure: str | None = None) -> Any:
        """Rollup rows (a DuckDB relation): `level` 'stage' reads `rollup_stage` (one row per
        view of each stage); 'view', 'target' or 'symbol' that level of `rollup_view`,
        optionally one `measure` of it."""
        check_choice("level", level, LEVELS)
        if level == "stage":
            if measure is not None:
                raise InputError("measure filters the view rollup; it does not apply to level 'stage'")
            return self._filtered("rollup_stage", {"stage": stage, "view": view}, tier=None, run=run,
                                  order="run_started_at DESC, run_id, stage, view")
        return self._filtered(
            "rollup_view", {"stage": stage, "view": view, "level": level, "measure": measure},
            tier=None, run=run,
            order="run_started_at DESC, run_id, stage, view, target NULLS FIRST, symbol NULLS FIRST, measure, "
                  "CASE WHEN measure = 'worst_item' THEN value END, metric, baseline_kind",
        )

    def _filtered(self, view: str, equals: dict[str, Any], *, tier: str | None, run: str | None,
                  order: str) -> Any:
        """`SELECT * FROM view` with equality filters on known columns; values are bound."""
        conditions, params = [], {}
        for column, value in equals.items():
            if value is not None:
                conditions.append(f"{column} = ${column}")
                params[column] = value
        if tier is not None:
            check_choice("tier", tier, TIERS)
            conditions.append("tier_rank >= $tier_rank")
            params["tier_rank"] = TIERS.index(tier)
        if run == "latest":
            conditions.append("run_id = (SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1)")
        elif run is not None:
            conditions.append("run_id = $run_id")
            params["run_id"] = run
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self.sql(f"SELECT * FROM {view}{where} ORDER BY {order}", params or None)

    def refresh(self, *, runs: Sequence[str] | None = None, all_runs: bool = False,
                stage: str | None = None, cohort_files: bool = True, progress: Any = None,
                on_wait: Any = None) -> Any:
        """Write drift, trend and rollup files into the tree (`metricsduck.refresh.refresh`)."""
        from .refresh import refresh

        return refresh(self, runs=runs, all_runs=all_runs, stage=stage, cohort_files=cohort_files,
                       progress=progress, on_wait=on_wait)

    def lock_down(self) -> None:
        """Forbid this connection any file access and further setting changes.

        The views read the snapshot tables, so nothing is lost; a user's `sql` query can
        then neither read nor write files (COPY TO, read_text, ATTACH …) and cannot turn
        this back on. `reload()` needs file access and is unavailable afterwards.
        """
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def reload(self) -> None:
        """Take a new snapshot of the sidecars and marks (new and changed files appear)."""
        bind_sources(self.con, self.root, self.config, snapshot=True)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spill_dir() -> str:
    """Where DuckDB may spill: the system temp dir, never the caller's working directory."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / "metricsduck-spill").replace("'", "''")


def connect(root: str | Path, config: Config | None = None, *, sql_dir: Path | None = None) -> Store:
    """Open a store over the tree at `root` (which may be empty or missing).

    Views are built in memory over a snapshot of the sidecars taken now (call
    `store.reload()` to see files written since), so several processes can query one
    tree at once. If the tree has a persisted catalog, its ledger is checked first: an
    applied SQL file that has since been edited is an error.
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
        con.execute(f"SET temp_directory = '{_spill_dir()}'")
        build(con, root, config, sql_dir=sql_dir, snapshot=True)
    except BaseException:
        con.close()
        raise
    return Store(root, config, con, sql_dir)


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
