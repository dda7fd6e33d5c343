"""The one owner of drift: which cohort-runs must be computed, and serving the result.

`drift_computed` (sql/views) computes drift; `drift` is what every reader queries. On a
store with the compacted cache, `drift` is served here: the cached rows of each cohort-run
whose inputs are unchanged, the rows computed since, and `drift_computed` for the rest.

A cohort-run's drift depends on its own sidecars, those of the earlier cohort-runs of its
baseline key, the marks of those earlier runs (their verdicts choose its last_good_run),
and the definition of `drift_computed` with the settings it reads
(`catalog.cache_key`); its q_values depend on those of every cohort-run of its run x stage
(the Benjamini-Hochberg family). Its fingerprint hashes all of them (`cache_fingerprints`),
so the cohort-runs of a run x stage are cached, and go stale, together. Editing
a trend or rollup view, or a `trend.*` setting, leaves every cached drift row valid; it
changes `outputs_key`, the cache key of the definitions behind the trend and rollup files,
which the drift index records per cohort-run, so `refresh` redoes those runs' files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine import arrow_table, sql_identifier
from .snapshot import create_from, segment_reads
from .snapshot.segments import (
    DRIFT_ENTRY,
    DRIFT_SOURCE,
    Segment,
    listing_schema,
    located,
    prune,
    segment_counts,
    segment_name,
)

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb

    from .catalog import Catalog
    from .config import Config
    from .snapshot import Snapshot
    from .store import Store

COMPUTED = "drift_computed"  # the view that computes drift
SERVED = "drift"  # the relation every reader queries
HELD = "drift_held"  # the served rows that need no computing: cached, or computed since
OUTPUTS = ("trends_of", "rollup_view_of", "rollup_stage_of")  # what the trend and rollup files come from
# Comparisons (a cohort-run, or one baseline cohort-run it is compared with) per batch of
# runs: the demo's 8 runs are one batch, a run of 5,000 cohorts with 10 pooled baselines
# is a batch of its own.
BATCH_COMPARISONS = 20_000
LATEST_RUN = "(SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1)"


def drift_key(catalog: Catalog, config: Config) -> str | None:
    """The cache key of computed drift (None: a catalog without drift)."""
    from .catalog import cache_key

    return cache_key(catalog, COMPUTED, config) if COMPUTED in catalog else None


def outputs_key(catalog: Catalog, config: Config) -> str:
    """The cache key of the trend and rollup files: valid while it and the drift rows are."""
    import hashlib

    from .catalog import cache_key

    keys = [cache_key(catalog, name, config) for name in OUTPUTS if name in catalog]
    return hashlib.sha256("|".join(keys).encode()).hexdigest()


def bind_drift(con: duckdb.DuckDBPyConnection, snapshot: Snapshot, catalog: Catalog, config: Config) -> bool:
    """Fingerprint every cohort-run's drift inputs and serve `drift` from the cached drift
    rows still valid for them (`cache_drift`); the others are `cache_stale`. Returns whether
    `drift` is served here (else it is the plain view of the SQL).

    Drift rows stored by a refresh under the same fingerprint are read back as they were
    written; every other cohort-run is computed by `drift_computed`, or read from
    `drift_fresh` once `compute_drift` computed it a batch of runs at a time. With
    `use_cache` off nothing is read back.
    """
    key = drift_key(catalog, config)
    if key is None or "cohort_runs" not in catalog:
        return False  # a catalog without the views drift needs (a partial SQL folder)
    con.execute(
        "CREATE OR REPLACE TABLE cache_fingerprints AS "
        "WITH files AS (SELECT baseline_key, run_id, sum(hash(source_file, size, mtime_ns)) AS h "
        "FROM cache_live GROUP BY ALL), "
        # the sidecars of the cohort-run and of the earlier ones of its key; the effective
        # verdicts of those earlier ones (mark, else good, else audit), which choose its
        # last_good_run (`baselines_of`): a mark that changes no verdict changes no drift
        "cumulative AS (SELECT cs.baseline_key, cs.run_id, sum(coalesce(f.h, 0)) OVER (PARTITION BY "
        "cs.baseline_key ORDER BY cs.ordinal ROWS UNBOUNDED PRECEDING) AS h, "
        "coalesce(sum(hash(cs.run_id, cs.effective_good)) OVER (PARTITION BY cs.baseline_key ORDER BY cs.ordinal "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS m "
        "FROM cohort_status AS cs LEFT JOIN files AS f USING (baseline_key, run_id)), "
        "own AS (SELECT baseline_key, run_id, md5(concat_ws('|', ?, m, h)) AS fingerprint FROM cumulative) "
        # and those of every cohort-run of its run x stage, whose KS p-values its q_value reads
        "SELECT o.baseline_key, o.run_id, md5(concat_ws('|', o.fingerprint, sum(hash(o.fingerprint)) "
        "OVER (PARTITION BY o.run_id, cr.stage))) AS fingerprint "
        "FROM own AS o JOIN cohort_runs AS cr USING (baseline_key, run_id)", [key])
    if not snapshot.use_cache:
        return False
    create_from(con, "cache_drift", located(snapshot, snapshot.drift),
                 "SELECT * FROM rows SEMI JOIN cache_fingerprints USING (baseline_key, run_id, fingerprint)")
    snapshot.drift = arrow_table(con.sql(f"SELECT {', '.join(DRIFT_ENTRY)} FROM cache_drift")).cast(
        listing_schema(DRIFT_ENTRY))
    prune(snapshot)
    con.execute("CREATE OR REPLACE TABLE cache_stale AS SELECT baseline_key, run_id FROM cache_fingerprints "
                "ANTI JOIN cache_drift USING (baseline_key, run_id)")
    snapshot.stale = con.execute("SELECT count(*) FROM cache_stale").fetchall()[0][0]
    # the drift of stale cohort-runs computed since, a batch of runs at a time (`compute_drift`),
    # made from the columns DuckDB stored with the view: selecting from it would bind it
    columns = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                          "ORDER BY column_index", [COMPUTED]).fetchall()
    con.execute("CREATE OR REPLACE TABLE drift_fresh ("
                + ", ".join(f"{sql_identifier(name)} {kind}" for name, kind in columns) + ")")
    serve_drift(con, snapshot)
    return True


def serve_drift(con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
    """(Re)create `drift_held`, the drift rows held without computing (the cached rows still
    valid and those computed since, `drift_fresh`), and `drift`: those and, while any
    remain, `drift_computed` for the stale cohort-runs (`cache_stale`). Without any, `drift`
    leaves `drift_computed` out: DuckDB would evaluate it in full even to join it with
    nothing."""
    # drift_fresh has drift_computed's columns; describing the view would bind it again
    columns = ", ".join(c[0] for c in con.execute("DESCRIBE drift_fresh").fetchall())
    live = segment_counts(snapshot.drift.column("segment"))
    snapshot.bound = [b for b in snapshot.bound if not b.rsplit("/", 1)[-1].startswith(f"{DRIFT_SOURCE}-")]
    parts = segment_reads(snapshot, DRIFT_SOURCE, live, columns,
                           "(baseline_key, run_id, segment_file) IN "
                           "(SELECT baseline_key, run_id, segment_file FROM cache_drift)")
    parts.append(f"SELECT {columns} FROM drift_fresh")
    con.execute(f"CREATE OR REPLACE VIEW {HELD} AS " + "\nUNION ALL\n".join(parts))
    served = f"SELECT * FROM {HELD}"
    if con.execute("SELECT count(*) FROM cache_stale").fetchall()[0][0]:
        served += f"\nUNION ALL\nSELECT {columns} FROM {COMPUTED} SEMI JOIN cache_stale USING (baseline_key, run_id)"
    con.execute(f"CREATE OR REPLACE VIEW {SERVED} AS {served}")


def serve_cached(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """The persisted catalog's `drift`: the drift rows the last refresh cached (the drift
    index names the segment holding each cohort-run's rows), read on every query.

    A refresh caches the drift of every cohort-run it saw, so this is the drift of the
    tree as the last refresh left it; nothing is computed on a query.
    """
    from .catalog.sources import in_cache, segment_rows, write_placeholder
    from .engine import sql_string
    from .snapshot.segments import DRIFT_INDEX_FILE, cache_dir, segment_glob

    schema = arrow_table(con.sql(f"SELECT * FROM {COMPUTED} LIMIT 0")).schema
    write_placeholder(root, segment_glob(DRIFT_SOURCE), schema)
    listing = (f"SELECT baseline_key, run_id, {sql_string(f'{cache_dir(root.resolve())}/')} || segment AS segment_file "
               f"FROM read_parquet({sql_string(in_cache(root, DRIFT_INDEX_FILE))})")
    con.execute(f"CREATE OR REPLACE VIEW {SERVED} AS " + segment_rows(
        root, DRIFT_SOURCE, ", ".join(schema.names), listing, "baseline_key, run_id"))


def stage_drift(con: duckdb.DuckDBPyConnection, snapshot: Snapshot, relation: str, outputs: str) -> None:
    """Record the cohort-runs of `relation` in the drift index once their outputs are
    written: stage the drift rows of those the cache does not hold yet, so that `publish`
    stores them, and mark all of them as written by the definitions of `outputs`."""
    if not snapshot.use_cache:
        return
    import pyarrow as pa

    written = f"SEMI JOIN (SELECT DISTINCT baseline_key, run_id FROM {relation}) USING (baseline_key, run_id)"
    con.register("held", snapshot.drift)
    try:
        held = arrow_table(con.sql(f"SELECT * REPLACE (CASE WHEN (baseline_key, run_id) IN (SELECT baseline_key, "
                                   f"run_id FROM {relation}) THEN ? ELSE outputs END AS outputs) FROM held",
                                   params=[outputs]))
    finally:
        con.unregister("held")
    snapshot.drift = held.cast(listing_schema(DRIFT_ENTRY))
    pending = f"FROM cache_fingerprints AS f ANTI JOIN cache_drift USING (baseline_key, run_id) {written}"
    entries = arrow_table(con.sql(f"SELECT f.baseline_key, f.run_id, f.fingerprint, ? AS outputs {pending}",
                                  params=[outputs]))
    if not entries.num_rows:
        return
    # written from Python, not by COPY: refresh may run on a connection without file access
    import pyarrow.parquet as pq

    name = segment_name(DRIFT_SOURCE)
    result = con.sql(f"SELECT d.* FROM {relation} AS d SEMI JOIN (SELECT f.baseline_key, f.run_id "
                     f"{pending}) USING (baseline_key, run_id)").arrow()  # a batch reader in DuckDB 2
    with pq.ParquetWriter(snapshot.stage_dir / name, result.schema, compression="zstd") as writer:
        for batch in (result.to_batches() if hasattr(result, "to_batches") else result):
            writer.write_batch(batch)
    stat = (snapshot.stage_dir / name).stat()
    snapshot.segments[name] = Segment(name, DRIFT_SOURCE, entries.num_rows, stat.st_size, stat.st_mtime_ns)
    snapshot.staged.add(name)
    entries = entries.append_column("segment", pa.array([name] * entries.num_rows, pa.string()))
    snapshot.drift = pa.concat_tables([snapshot.drift, entries.cast(listing_schema(DRIFT_ENTRY))])


def stale_count(store: Store) -> int:
    """Cohort-runs whose drift the served relation would compute now (0 without the cache)."""
    if not store.cached_drift:
        return 0
    return store.con.sql("SELECT count(*) FROM cache_stale").fetchall()[0][0]


def reads_drift(store: Store, query: str) -> bool:
    """Whether `query` reads the served drift, directly or through a view built on it
    (DuckDB's parser names the relations; the catalog knows what each is built on)."""
    import duckdb

    try:
        names = {n.rsplit(".", 1)[-1].lower() for n in duckdb.get_table_names(query, qualified=False)}
    except duckdb.Error:
        return False  # not a query DuckDB can parse: running it reports the error
    return SERVED in names or SERVED in store.catalog.closure(names)


def ensure_drift(store: Store, *, run: str | None = None, runs: Iterable[str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Compute the drift rows the compacted cache does not hold, of one run (a run id or
    'latest'), of `runs`, or of every run, so that queries on `drift` read them; return the
    number of cohort-runs computed (0 when the cache held them all).

    Every reader goes through here before it reads `drift`. It works a batch of runs at a
    time, as `refresh` does, instead of the whole history in one query, and writes nothing.
    `progress(done, total)` is called after each batch.
    """
    if not stale_count(store):
        return 0  # the common case, checked first
    wanted: list[str] | None = None
    if run == "latest":
        latest = store.con.sql(f"SELECT {LATEST_RUN}").fetchall()
        if not latest or latest[0][0] is None:
            return 0
        wanted = [latest[0][0]]
    elif run is not None:
        wanted = [run]
    elif runs is not None:
        wanted = list(runs)
    return compute_drift(store, wanted, progress)


def compute_drift(store: Store, runs: list[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Compute the stale drift rows (of `runs`, else of every run) into `drift_fresh`, which
    `drift` reads from then on; return how many cohort-runs that was.

    It goes a batch of runs at a time, each from its own rows (`scoped`) as in a refresh,
    so a tree never refreshed costs what a refresh would in time and memory, not the whole
    history in one query.
    """
    con = store.con
    stale = [run for (run,) in store.con.sql(
        "SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM cache_stale) ORDER BY ordinal").fetchall()
        if runs is None or run in runs]
    if not stale:
        return 0
    total = store.con.sql("SELECT count(*) FROM cache_stale WHERE list_contains(?, run_id)",
                          params=[stale]).fetchall()[0][0]
    done = 0
    with materialised(store):
        for batch in batches(store, stale):
            with scoped(store, batch, None) as scope:
                con.execute(f"INSERT INTO drift_fresh SELECT * FROM {scope.drift} "
                            "WHERE (baseline_key, run_id) IN (SELECT baseline_key, run_id FROM cache_stale)")
            done += con.execute("DELETE FROM cache_stale WHERE list_contains(?, run_id)", [batch]).fetchall()[0][0]
            if progress:
                progress(done, total)
    assert store.snapshot is not None  # cached drift implies a snapshot
    serve_drift(con, store.snapshot)
    return done


def batch_drift(store: Store, scope: Scope, table: str) -> None:
    """The drift rows of the cohort-runs of `scope` as the temp table `table`: those held
    (cached, or computed since) read back, the others computed from the scope's own rows."""
    con = store.con
    if not store.cached_drift:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {scope.drift}")
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {HELD} "
                f"SEMI JOIN {SCOPE_COHORTS} USING (baseline_key, run_id)")
    con.execute(f"INSERT INTO {table} SELECT * FROM {scope.drift} "
                "WHERE (baseline_key, run_id) IN (SELECT baseline_key, run_id FROM cache_stale)")


# --- computing a batch of runs from its own rows ------------------------------------------------

SCOPE_COHORTS = "scope_cohorts"  # the cohort-runs a batch computes (baseline_key, run_id)


@dataclass(frozen=True)
class Scope:
    """One batch's scope: `condition` picks its cohort-runs (or run x stage rows) from a
    relation, `drift` is the table-function call computing their drift."""

    condition: str
    drift: str


def batches(store: Store, selected: list[str]) -> list[list[str]]:
    """`selected` in order, cut into batches of at most BATCH_COMPARISONS comparisons
    (cohort-runs and the baseline cohort-runs they compare against); a run heavier than
    that is a batch of its own. Small trees refresh in one go, large ones run by run."""
    weights = dict(store.con.sql(
        "SELECT run_id, count(*) FROM (SELECT run_id FROM cohort_runs UNION ALL "
        "SELECT run_id FROM baselines) GROUP BY run_id").fetchall())
    cut: list[list[str]] = []
    load = 0
    for run_id in selected:
        weight = weights.get(run_id, 0)
        if not cut or load + weight > BATCH_COMPARISONS:
            cut.append([])
            load = 0
        cut[-1].append(run_id)
        load += weight
    return cut


@contextmanager
def materialised(store: Store) -> Iterator[None]:
    """For a whole refresh: `fact_sources` (the sidecar that counts, per cohort-run) and
    `cohort_runs`, which every batch and nearly every definition reads, computed once into
    temp tables of the same name and rows (the snapshot they read does not change), which
    the views read first."""
    con = store.con
    made = []
    try:
        for name in ("fact_sources", "cohort_runs"):
            # the view of that name: the temp table it fills does not exist yet
            con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}")
            made.append(name)
        yield
    finally:
        for name in reversed(made):
            con.execute(f"DROP TABLE temp.{name}")


@contextmanager
def scoped(store: Store, runs: list[str], stage: str | None) -> Iterator[Scope]:
    """The inputs of the drift of the cohort-runs of `runs` (of `stage`, if given), as temp
    tables handed by name to `drift_of`, so the batch computes from its own rows.

    The compared pairs (`scope_pairs`, `scope_summary`, `scope_missing`) are the runs' own,
    and the sample rows (`scope_sample_raw`, a view whose run filter is a constant list
    that the Parquet scans check against row-group statistics), the sidecars whose samples
    count (`scope_sample_sources`) and the scalar inputs (`scope_scalars`) those their pairs
    compare: the runs' and their baselines'. Samples are most of the data and their
    statistics most of the work, so the cost of a batch follows its runs and their
    baselines, not the whole history. The rows are those the full views give for these
    cohort-runs. `condition` (reading `refresh_scope`) and `scope_cohorts` stay valid
    after the block.
    """
    from .engine import sql_string

    con = store.con
    con.execute("CREATE OR REPLACE TEMP TABLE refresh_scope AS "
                "SELECT unnest(?::VARCHAR[]) AS run_id, ?::VARCHAR AS stage", [runs, stage])
    condition = ("run_id IN (SELECT run_id FROM refresh_scope) "
                 "AND stage IS NOT DISTINCT FROM coalesce((SELECT any_value(stage) FROM refresh_scope), stage)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {SCOPE_COHORTS} AS SELECT baseline_key, run_id FROM cohort_runs "
                f"WHERE {condition}")
    tables = {
        "scope_pairs": f"SELECT * FROM baselines_of('{SCOPE_COHORTS}')",
        "scope_summary": "SELECT * FROM baseline_summary_of('scope_pairs')",
        "scope_missing": f"SELECT * FROM missing_baselines_of('{SCOPE_COHORTS}', 'scope_summary')",
        "scope_compared": f"SELECT * FROM {SCOPE_COHORTS} UNION SELECT baseline_key, baseline_run_id FROM scope_pairs",
    }
    made: list[tuple[str, str]] = []
    try:
        for name, query in tables.items():
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")
            made.append(("TABLE", name))
        # constant run lists, which the Parquet scans check against row-group statistics
        listed = ", ".join(sql_string(run) for (run,) in con.execute(
            "SELECT DISTINCT run_id FROM scope_compared ORDER BY run_id").fetchall()) or "NULL"
        compared = (f"run_id IN ({listed}) AND (baseline_key, run_id) IN "
                    "(SELECT baseline_key, run_id FROM scope_compared)")
        steps = [
            ("VIEW", "scope_sample_raw", f"SELECT * FROM samples_raw WHERE {compared}"),
            # the winning sidecars over one row per sidecar, not per value
            ("TABLE", "scope_sample_files", "SELECT DISTINCT baseline_key, run_id, written_at, source_file, "
                                            "schema_version FROM scope_sample_raw"),
            ("TABLE", "scope_sample_sources", "SELECT * FROM newest_sidecars('scope_sample_files')"),
            ("VIEW", "scope_samples", "SELECT * FROM samples_of('scope_sample_raw', 'scope_sample_sources')"),
            ("TABLE", "scope_scalars", f"SELECT * FROM scalar_facts_of('facts', 'scope_samples') WHERE {compared}"),
        ]
        for kind, name, query in steps:
            con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS {query}")
            made.append((kind, name))
        yield Scope(condition, "drift_of('scope_pairs', 'scope_summary', 'scope_missing', 'scope_scalars', "
                               "'scope_samples')")
    finally:
        for kind, name in reversed(made):
            con.execute(f"DROP {kind} IF EXISTS temp.{name}")
