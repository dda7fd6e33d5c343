"""`connect(root)`: a DuckDB connection whose views are ready, for notebooks and the CLI."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .catalog import (
    Catalog,
    bind_snapshot,
    build,
    catalog_path,
    catalog_states,
    discover,
    init_catalog,
    persisted_fingerprints,
)
from .compute import LATEST_RUN
from .config import Config, resolve_config
from .engine import new_connection, quiet
from .errors import InputError, StorageError
from .snapshot import Snapshot
from .vocab import BASELINE_KINDS, DIRECTIONS, ITEM_KINDS, LEVELS, ROLLUP_MEASURES, TIERS


def check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def unknown_value(name: str, value: str, known: Sequence[str], where: str) -> InputError:
    """The error for a filter value the tree does not hold: the closest known values, or
    (with none close) the known ones, the first ten of them."""
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.6)
    if not close:  # case and prefix slips that difflib's ratio misses: 'tsla', 'mean_scor'
        close = [k for k in known if k.lower().startswith(value.lower()) or value.lower() == k.lower()][:3]
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    elif not known:
        hint = "it has none"
    else:
        hint = f"known: {', '.join(known[:10])}" + (f" ({len(known)} in all)" if len(known) > 10 else "")
    return InputError(f"{name} {value}: no such {name} in {where}; {hint}")


# The view whose column of the same name lists each filter's known values.
KNOWN_IN = {"stage": "cohort_runs", "view": "cohort_runs", "target": "cohort_runs", "symbol": "cohort_runs",
            "baseline_key": "cohort_runs", "metric": "facts", "distribution": "samples"}


class Store:
    """An in-memory DuckDB catalog over one results tree.

    `store.sql(query, params)` returns a DuckDB relation (`.df()`, `.arrow()`, `.pl()`,
    `.fetchall()`) on a cursor of its own; parameters are bound, never pasted. `store.con` is
    the store's own connection, which its methods and the refresh use (temp tables included);
    `store.cursor()` is a new session of it that reads the views by name as `store.con` does
    (a plain `store.con.cursor()` sees only the store's own relations, not the definitions).
    """

    def __init__(self, root: Path, config: Config, con: Any, catalog: Catalog,
                 snapshot: Snapshot | None = None) -> None:
        self.root = root
        self.config = config
        self.con = con
        self.catalog = catalog
        self._snapshot: Snapshot | None = None
        self._locked = False
        self._scopes = itertools.count()
        # where the definitions are read from: a cursor is a session of its own, and starts
        # without it (`catalog.built`)
        self._search_path = con.execute("SELECT current_setting('search_path')").fetchall()[0][0]
        self._take(snapshot)

    def _take(self, snapshot: Snapshot | None) -> None:
        """Hold `snapshot`, dropping the one held before.

        Its staged segments are removed by `close` (or `reload`) or at exit, never when the
        store is garbage-collected: a relation it handed out reads them lazily and may
        outlive it (`metricsduck.connect(root).sql(query).fetchall()`).
        """
        import atexit

        if self._snapshot is not None:
            atexit.unregister(self._snapshot.close)
            self._snapshot.close()
        self._snapshot = snapshot
        if snapshot is not None:
            atexit.register(snapshot.close)

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot of the tree the views read (None: a store over live globs)."""
        return self._snapshot

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """`query` as a DuckDB relation on a cursor of its own: a result left undrained (an
        `.arrow()` reader, a relation Jupyter keeps in `Out[n]`) never blocks the next call."""
        return self.cursor().sql(query, params=params)

    def cursor(self) -> Any:
        """A new session of the store's connection, reading the views by name as it does."""
        from .engine import sql_string

        cursor = quiet(self.con.cursor())
        if self._search_path:
            cursor.execute(f"SET search_path = {sql_string(self._search_path)}")
        return cursor

    def register(self, name: str, data: Any) -> None:
        """Copy `data` (a pyarrow Table or RecordBatchReader, a pandas or polars DataFrame) into
        table `name`, which every later `sql` query can join with the views."""
        from .catalog.definitions import INPUTS
        from .engine import sql_identifier

        if name in self.catalog or name in INPUTS:
            raise InputError(f"register {name!r}: that is a name of metricsduck's catalog; choose another")
        self.con.register("metricsduck_incoming", data)
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {sql_identifier(name)} AS SELECT * FROM metricsduck_incoming")
        finally:
            self.con.unregister("metricsduck_incoming")

    def status(self) -> list[tuple[str, str, str]]:
        """`(section, item, value)` rows describing the tree and the catalog; writes nothing."""
        rows = [("tree", "root", str(self.root.resolve())),
                ("tree", "config", self.config.source)]
        persisted = persisted_fingerprints(self.root)
        rows.append(("catalog", "persisted", "no (`metricsduck init` writes one)" if persisted is None
                     else str(catalog_path(self.root))))
        for definition, state in catalog_states(self.catalog, persisted):
            rows.append(("sql", definition.label, f"{definition.fingerprint[:12]} {state}"))
        counts = self.con.sql(
            "SELECT (SELECT count(DISTINCT source_file) FROM facts_raw), "
            "(SELECT count(DISTINCT source_file) FROM samples_raw), "
            "(SELECT count(*) FROM runs), (SELECT count(*) FROM cohort_runs), "
            "(SELECT count(DISTINCT baseline_key) FROM cohort_runs), (SELECT count(*) FROM facts)"
        ).fetchall()[0]
        names = ("metric sidecars", "sample sidecars", "runs", "cohort-runs", "baseline keys", "fact rows")
        rows += [("data", name, str(value)) for name, value in zip(names, counts, strict=True)]
        bad = self.bad_files()
        rows.append(("data", "bad files", str(len(bad))))
        if self._snapshot is not None:
            rows += self._snapshot.status()
        rows += [("bad file", path, reason) for path, _, reason in bad]
        return rows

    def bad_files(self) -> list[tuple[str, str, str]]:
        """`(path, source, reason)` of every file left out of this snapshot."""
        return self.con.sql("SELECT path, source, reason FROM bad_files ORDER BY path").fetchall()

    def drift(self, *, stage: str | None = None, view: str | None = None,
              target: str | None = None, symbol: str | None = None, baseline: str | None = None,
              tier: str | None = None, run: str | None = None, item: str | None = None,
              metric: str | None = None) -> Any:
        """Rows of the `drift` view matching the filters, worst first (a DuckDB relation):
        by tier, then by how far they moved (|rel_delta| of a metric, PSI then KS D of a
        distribution, L-infinity of a categorical one), then newest run first.

        `tier` keeps rows at least that bad (WARN: WARN and ALERT); `run` is a run id or
        'latest'; `baseline` a baseline kind; `item` 'metric' or 'distribution'; `metric`
        the rows of one metric or distribution.
        """
        check_choice("baseline", baseline, BASELINE_KINDS)
        check_choice("item", item, ITEM_KINDS)
        if metric is not None:
            self._check_item(metric, item)
        run = self._run(run)
        self.compute_drift(run=run)
        return self._filtered(
            "drift",
            {"stage": stage, "view": view, "target": target, "symbol": symbol,
             "baseline_kind": baseline, "item_kind": item, "item": metric},
            tier=tier, run=run,
            order="tier_rank DESC NULLS LAST, coalesce(abs(rel_delta), psi, linf) DESC NULLS LAST, "
                  "ks_d DESC NULLS LAST, run_started_at DESC, run_id, baseline_key, baseline_kind, item_kind, item",
        )

    def trends(self, *, stage: str | None = None, view: str | None = None,
               target: str | None = None, symbol: str | None = None, metric: str | None = None,
               direction: str | None = None, run: str | None = None) -> Any:
        """Rows of the `trends` view matching the filters (a DuckDB relation).

        `run` is a run id, 'latest' (the newest run) or None (the trend as of every run).
        With a run only that run's trends are computed (`trends_of`): a run filter on the
        `trends` view cannot pass its per-series ranking, so it computes every trend of the
        history first.
        """
        check_choice("direction", direction, DIRECTIONS)
        run = self._run(run)
        return self._filtered(
            "trends" if run is None else f"trends_of('{self._run_scope(run)}')",
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
        run = self._run(run)
        self.compute_drift(run=run)  # the rollups count drift tiers
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

    def psi_bins(self, *, stage: str | None = None, view: str | None = None,
                 target: str | None = None, symbol: str | None = None,
                 baseline_key: str | None = None, baseline: str | None = None,
                 run: str | None = None, distribution: str | None = None) -> Any:
        """The PSI bins behind each distribution's PSI (a DuckDB relation), one row per
        cohort-run x baseline kind x distribution x bin, in bin order.

        Columns: the cohort-run's identity, `baseline_kind`, `baseline_run_id` (NULL for
        rolling, which pools `baseline_runs` runs), `distribution`, `bin` (0 = lowest),
        `lower_edge` (NULL for the first bin) and `upper_edge` (NULL for the last) of the
        right-closed bin, `n` and `m` (finite values now and in the baseline), each side's
        count and share, and `contribution`; the contributions of a distribution sum to its
        `psi` in `drift`. Filters are equalities as in `drift` (`baseline` is the baseline
        kind, `run` a run id or 'latest') plus `baseline_key` and `distribution`.
        """
        return self._pair_query(
            "SELECT picked.* EXCLUDE (pair_id), b.bin, b.lower_edge, b.upper_edge, "
            "b.n, b.m, b.baseline_count, b.current_count, b.baseline_share, b.current_share, "
            "b.contribution "
            "FROM two_sample_bins('psi_source') AS b JOIN picked USING (pair_id, distribution) "
            "ORDER BY run_started_at DESC, run_id, baseline_key, baseline_kind, distribution, bin",
            stage=stage, view=view, target=target, symbol=symbol, baseline_key=baseline_key,
            baseline=baseline, run=run, distribution=distribution,
        )

    def ecdf(self, *, stage: str | None = None, view: str | None = None,
             target: str | None = None, symbol: str | None = None,
             baseline_key: str | None = None, baseline: str | None = None,
             run: str | None = None, distribution: str | None = None) -> Any:
        """Both empirical CDFs behind each KS statistic (a DuckDB relation): one row per
        cohort-run x baseline kind x distribution x distinct finite value of either side.

        `current_cdf` is the share of the current values <= `value` (right-continuous) and
        `baseline_cdf` the same for the baseline values (pooled for rolling); the largest
        `abs(current_cdf - baseline_cdf)` of a distribution is its `ks_d` in `drift`.
        `current_count` / `baseline_count` are the values equal to `value`, `n` and `m`
        each side's finite values (a side without any has NULL CDFs). Filters as in
        `psi_bins`.
        """
        return self._pair_query(
            "SELECT picked.* EXCLUDE (pair_id), c.value, CAST(c.n AS BIGINT) AS n, "
            "CAST(c.m AS BIGINT) AS m, "
            "c.current_count, c.baseline_count, "
            "CASE WHEN c.n > 0 THEN c.current_cumulative / c.n END AS current_cdf, "
            "CASE WHEN c.m > 0 THEN c.baseline_cumulative / c.m END AS baseline_cdf "
            "FROM ("
            "  SELECT *,"
            "    sum(current_count) OVER w AS current_cumulative,"
            "    sum(baseline_count) OVER w AS baseline_cumulative,"
            "    sum(current_count) OVER whole AS n,"
            "    sum(baseline_count) OVER whole AS m"
            "  FROM ("
            "    SELECT pair_id, distribution, value,"
            "      count(*) FILTER (WHERE side = 'current') AS current_count,"
            "      count(*) FILTER (WHERE side = 'baseline') AS baseline_count"
            "    FROM psi_source WHERE value IS NOT NULL"
            "    GROUP BY pair_id, distribution, value"
            "  )"
            "  WINDOW w AS (PARTITION BY pair_id, distribution ORDER BY value"
            "               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),"
            "    whole AS (PARTITION BY pair_id, distribution)"
            ") AS c JOIN picked USING (pair_id, distribution) "
            "ORDER BY run_started_at DESC, run_id, baseline_key, baseline_kind, distribution, value",
            stage=stage, view=view, target=target, symbol=symbol, baseline_key=baseline_key,
            baseline=baseline, run=run, distribution=distribution,
        )

    def category_shares(self, *, stage: str | None = None, view: str | None = None,
                        target: str | None = None, symbol: str | None = None,
                        baseline_key: str | None = None, baseline: str | None = None,
                        run: str | None = None, distribution: str | None = None) -> Any:
        """The counts per category behind each categorical drift (a DuckDB relation): one
        row per cohort-run x baseline kind x text distribution x category either side holds.

        Columns: the identity and baseline columns of `psi_bins`, `category`, `n` and `m`
        (text values now and in the baseline), each side's count and share (a category one
        side lacks has count 0 there); the largest `abs(current_share - baseline_share)` of
        a distribution is its `linf` in `drift`. Filters as in `psi_bins`.
        """
        return self._pair_query(
            "SELECT picked.* EXCLUDE (pair_id), c.category, c.n, c.m, c.baseline_count, c.current_count, "
            "c.baseline_share, c.current_share "
            "FROM category_counts('category_source') AS c JOIN picked USING (pair_id, distribution) "
            "ORDER BY run_started_at DESC, run_id, baseline_key, baseline_kind, distribution, category",
            stage=stage, view=view, target=target, symbol=symbol, baseline_key=baseline_key,
            baseline=baseline, run=run, distribution=distribution,
        )

    def _pair_query(self, select: str, *, stage: str | None, view: str | None,
                    target: str | None, symbol: str | None, baseline_key: str | None,
                    baseline: str | None, run: str | None, distribution: str | None) -> Any:
        """`select` run over the compared cohort-run x baseline kind x distribution triples
        that match the filters (as `picked`: identity columns, distribution and pair_id;
        only distributions the cohort-run has) and their `distribution_values` (as
        `psi_source`; its text values counted per category as `category_source`).

        The pairs are filtered before any statistic is computed: the `psi_bins` view
        computes the bins of every pair in the tree and only then filters.
        `two_sample_bins('psi_source')` is that view's own definition applied to the picked
        pairs alone, as `category_counts('category_source')` is `category_shares`'s (tests hold
        each pair equal).
        """
        check_choice("baseline", baseline, BASELINE_KINDS)
        run = self._run(run)
        pairs = (
            "(SELECT c.stage, c.view, c.target, c.symbol, p.baseline_key, p.run_id, c.run_started_at, "
            "p.baseline_kind, p.baseline_run_id, p.baseline_runs, d.distribution, p.pair_id "
            "FROM baseline_summary AS p JOIN cohort_runs AS c USING (baseline_key, run_id) "
            "JOIN (SELECT DISTINCT baseline_key, run_id, distribution FROM samples) AS d "
            "USING (baseline_key, run_id)) AS pairs"
        )
        picked = self._filtered(
            pairs,
            {"stage": stage, "view": view, "target": target, "symbol": symbol,
             "baseline_key": baseline_key, "baseline_kind": baseline, "distribution": distribution},
            tier=None, run=run, order="baseline_key, run_id, baseline_kind, distribution",
        )
        return picked.query(
            "picked",
            "WITH psi_source AS (SELECT dv.pair_id, dv.distribution, dv.side, dv.value, dv.value_text "
            "FROM distribution_values AS dv SEMI JOIN picked USING (pair_id, distribution)), "
            "category_source AS (SELECT pair_id, distribution, side, value_text, count(*) AS count "
            "FROM psi_source WHERE value_text IS NOT NULL GROUP BY ALL) "
            + select,
        )

    def compute_drift(self, *, run: str | None = None, progress: Any = None) -> int:
        """Compute the drift rows the compacted cache does not hold yet, of one run (a run
        id or 'latest') or of every run, so that queries on `drift` read them; return the
        number of cohort-runs computed (0 when the cache held them all).

        `drift()`, `rollups()`, the report and `metricsduck sql` call it; call it yourself
        before your own SQL on `drift` over a tree not refreshed since it changed
        (`metricsduck.compute.ensure_drift`). `progress(done, total)` follows each batch.
        """
        from .compute import ensure_drift

        return ensure_drift(self, run=run, progress=progress)

    def _run(self, run: str | None) -> str | None:
        """`run` as the filters use it: None, 'latest' (any case) or a run id of the tree; a
        run folder's name resolves to the run id of the sidecars in it. Anything else is an
        InputError naming the newest run ids."""
        if run is None:
            return None
        if not isinstance(run, str):
            raise InputError(f"run must be a string, got {type(run).__name__} {run!r}")
        if run.lower() == "latest":
            return "latest"
        known = [r for (r,) in self.con.sql("SELECT run_id FROM runs ORDER BY ordinal DESC").fetchall()]
        if run in known:
            return run
        root = str(self.root.resolve()).rstrip("/") + "/"
        folders = self.con.sql(
            "SELECT DISTINCT run_id FROM cohort_runs WHERE starts_with(source_file, $root) "
            "AND split_part(substr(source_file, length($root) + 1), '/', 1) = $folder",
            params={"root": root, "folder": run}).fetchall()
        if len(folders) == 1:
            return str(folders[0][0])
        raise unknown_value("run", run, ["latest", *known], str(self.root))

    def run_id(self, run: str) -> str:
        """The run id `run` names: itself, the newest for 'latest', or the run of a run
        folder's sidecars; else an InputError naming the closest run ids."""
        resolved = self._run(run)
        if resolved == "latest":
            newest = self.con.sql("SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1").fetchall()
            if not newest:
                raise InputError(f"run latest: {self.root} holds no runs yet")
            return str(newest[0][0])
        return str(resolved)

    def _check_values(self, equals: dict[str, Any]) -> None:
        """Each filter value the tree holds, or an InputError with the closest known ones."""
        for column, value in equals.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise InputError(f"{column} must be a string, got {type(value).__name__} {value!r}")
            if column == "measure" and value not in ROLLUP_MEASURES:
                raise unknown_value(column, value, ROLLUP_MEASURES, "the view rollup")
            if column in KNOWN_IN:
                query = f"SELECT DISTINCT {column} FROM {KNOWN_IN[column]}"
                known = sorted(v for (v,) in self.con.sql(query).fetchall()
                               if v is not None)
                if value not in known:
                    raise unknown_value(column, value, known, str(self.root))

    def _check_item(self, name: Any, item: str | None) -> None:
        """An InputError unless the tree has a metric or distribution `name` (of kind `item`
        when given), naming the closest ones it has."""
        if not isinstance(name, str):
            raise InputError(f"metric must be a string, got {type(name).__name__} {name!r}")
        held = {kind: {v for (v,) in self.con.sql(f"SELECT DISTINCT {kind} FROM {KNOWN_IN[kind]}").fetchall()
                       if v is not None} for kind in ITEM_KINDS}
        wanted = [item] if item else list(ITEM_KINDS)
        if any(name in held[kind] for kind in wanted):
            return
        for kind in ITEM_KINDS:
            if name in held[kind]:
                raise InputError(f"{name} is a {kind}, not a {item}; drop item {item!r}")
        raise unknown_value("metric", name, sorted(set().union(*(held[k] for k in wanted))), str(self.root))

    def _run_scope(self, run: str) -> str:
        """A new table of the cohort-runs (baseline_key, run_id) of `run` (a run id or
        'latest'), for the macros that compute chosen cohort-runs only; returns its name."""
        name = f"run_scope_{next(self._scopes)}"
        if run == "latest":
            condition, params = f"run_id = {LATEST_RUN}", None
        else:
            condition, params = "run_id = $run_id", {"run_id": run}
        # not TEMP: the relation that reads it runs on a cursor of its own (`sql`)
        self.con.execute(f"CREATE TABLE {name} AS SELECT baseline_key, run_id FROM cohort_runs WHERE {condition}",
                         params)
        return name

    def _filtered(self, view: str, equals: dict[str, Any], *, tier: str | None, run: str | None,
                  order: str) -> Any:
        """`SELECT * FROM view` with equality filters on known columns; values are bound.
        A value the tree does not hold is an InputError, never an empty result."""
        self._check_values(equals)
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
            conditions.append(f"run_id = {LATEST_RUN}")
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

        summary = refresh(self, runs=runs, all_runs=all_runs, stage=stage, cohort_files=cohort_files,
                          progress=progress, on_wait=on_wait)
        if not self._locked:  # serve what was just computed
            self._bind_drift()
        return summary

    def _bind_drift(self) -> None:
        """Point `drift` at the cached drift rows of this store's snapshot."""
        from .compute import bind_drift

        if self._snapshot is not None:
            bind_drift(self.con, self._snapshot, self.catalog, self.config)

    @property
    def cached_drift(self) -> bool:
        """Whether `drift` reads back the drift rows the compacted cache holds."""
        return self._snapshot is not None and self._snapshot.use_cache

    def update_cache(self) -> bool:
        """Make this store's snapshot the tree's compacted cache (ROOT/.metricsduck/cache/).

        `refresh` calls it under its lock; returns False when the cache already matched.
        """
        from .snapshot import publish

        return self._snapshot is not None and publish(self._snapshot)

    def lock_down(self) -> None:
        """Forbid this connection any file access and further setting changes.

        The views read the snapshot tables, so nothing is lost; a user's `sql` query can
        then neither read nor write files (COPY TO, read_text, ATTACH …) and cannot turn
        this back on. `reload()` needs file access and is unavailable afterwards.
        """
        if self._snapshot is not None:  # the sample segments are read lazily, and only they
            self.con.execute("SET allowed_paths = ?", [self._snapshot.files()])
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self._locked = True

    def reload(self) -> None:
        """Take a new snapshot of the sidecars and marks (new and changed files appear)."""
        previous = self._snapshot
        self._take(bind_snapshot(self.con, self.root, self.config,
                                 use_cache=previous is None or previous.use_cache,
                                 cached_only=previous is not None and not previous.walked))
        self._bind_drift()

    def close(self) -> None:
        self.con.close()
        self._take(None)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tree_root(root: str | Path) -> Path:
    """`root` as a results tree to read: an existing folder (it may be empty), else an error
    saying what to give instead; a mistyped path never reads as an empty tree."""
    root = Path(root)
    if root.is_dir():
        return root
    if root.exists():
        raise InputError(f"{root}: is a file, not a folder; give the results tree, the folder that holds "
                         "the run folders")
    raise InputError(f"{root}: no such folder; give the results tree (the folder that holds the run "
                     f"folders), or write a demo tree there with `metricsduck demo {root}`")


def connect(root: str | Path, config: Config | None = None, *, sql_dir: Path | None = None,
            use_cache: bool = True, cached_only: bool = False) -> Store:
    """Open a store over the tree at `root`, an existing folder (which may be empty; a
    missing one is an error, `tree_root`).

    Views are built in memory over a snapshot of the sidecars taken now (call
    `store.reload()` to see files written since), so several processes can query one
    tree at once. Sidecars already in the compacted cache (ROOT/.metricsduck/cache/,
    kept by `refresh`) are read from it, the rest from the tree; `use_cache=False` reads
    every sidecar. `cached_only=True` skips the walk of the tree, which dominates on big
    trees: the store then serves what the last refresh cached, and sidecars written,
    changed or deleted since are not seen (`refresh` refuses such a store). The cache is
    only read here, never written.
    """
    root = tree_root(root)
    return _opened(root, config or resolve_config(root), sql_dir, use_cache=use_cache, cached_only=cached_only)


def _opened(root: Path, config: Config, sql_dir: Path | None, **sources: Any) -> Store:
    """A store over a catalog built on a new connection from `sources` (`catalog.build`'s)."""
    catalog = discover(sql_dir)
    con = new_connection(config)
    try:
        snapshot = build(con, root, config, catalog=catalog, **sources)
    except BaseException:
        con.close()
        raise
    return Store(root, config, con, catalog, snapshot)


def connect_part(root: str | Path, rows: Mapping[str, Any], config: Config | None = None, *,
                 given: Mapping[str, Any] | None = None, sql_dir: Path | None = None) -> Store:
    """A store over one part of the tree at `root` handed over as Arrow tables instead of
    read from its files: `rows` maps `facts_raw` and `samples_raw` (the sidecar rows, with
    their `source_file`) and `marks_raw` to their rows (`catalog.bind_rows`).

    What an engine that cuts a tree by baseline key runs in each part (docs/design.md §13):
    every view whose shard is baseline_key gives the part's keys the rows it gives them
    over the whole tree. `drift` is `drift_computed` (no cache is read or written).
    `given` maps views of the catalog to Arrow tables that stand in for them: what the one
    who cut the tree computed over all of it, such as the broadcast `runs`.
    """
    root = Path(root)
    return _opened(root, config or resolve_config(root), sql_dir, rows=rows, given=given or {})


def init(root: str | Path, config: Config | None = None, *, sql_dir: Path | None = None,
         progress: Callable[[str], Callable[[int, int], None]] | None = None) -> Path:
    """Refresh ROOT, then persist the catalog under `ROOT/.metricsduck/` (and save the
    config beside it); returns the catalog's path.

    The persisted catalog reads the compacted cache, which `refresh` keeps: it shows the
    tree as the last refresh left it. `progress(step)` gives the `(done, total)` callback
    of each step ('refresh', 'catalog').
    """
    from .files import write_atomic
    from .layout import CACHE_DIR, CONFIG_FILE

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)  # init makes a tree on purpose (see `tree_root`)
    config = config or resolve_config(root)
    if config.source != "<defaults>":
        saved = root / CACHE_DIR / CONFIG_FILE
        source = Path(config.source)
        if source.resolve() != saved.resolve():
            write_atomic(saved, source.read_bytes())
    with connect(root, config, sql_dir=sql_dir) as store:
        summary = store.refresh(progress=progress and progress("refresh"))
    if summary.failed:
        path, reason = summary.failed[0]
        raise StorageError(f"{path}: could not write it ({reason}), nor {len(summary.failed) - 1} more; "
                           "the catalog was not written: fix the folder's permissions or space and rerun init")
    path, _ = init_catalog(root, config, sql_dir=sql_dir, progress=progress and progress("catalog"))
    return path
