"""The one owner of drift: which cohort-runs must be computed, and serving the result.

`drift_computed` (sql/views) computes drift; `drift` is what every reader queries. On a
store with the compacted cache, `drift` is served here: the cached rows of each cohort-run
whose inputs are unchanged, the rows computed since, and `drift_computed` for the rest.

A cohort-run's drift depends on its own sidecars, those of the earlier cohort-runs of its
baseline key, the marks, and the definition of `drift_computed` with the settings it reads
(`catalog.cache_key`): its fingerprint hashes all of them (`cache_fingerprints`). Editing
a trend or rollup view, or a `trend.*` setting, leaves every cached drift row valid; it
changes `outputs_key`, the cache key of the definitions behind the trend and rollup files,
which the drift index records per cohort-run, so `refresh` redoes those runs' files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .cache import (
    DRIFT_ENTRY, DRIFT_SOURCE, Segment, Snapshot, _create_from, _located, _prune, _segment_counts,
    _segment_reads, arrow_table, listing_schema, segment_name,
)

if TYPE_CHECKING:
    import duckdb

    from .catalog import Catalog
    from .config import Config
    from .store import Store

COMPUTED = "drift_computed"  # the view that computes drift
SERVED = "drift"  # the relation every reader queries
OUTPUTS = ("trends_of", "rollup_view", "rollup_stage")  # what the trend and rollup files come from
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


def bind_drift(con: duckdb.DuckDBPyConnection, snapshot: Snapshot, catalog: Catalog, config: Config) -> None:
    """Fingerprint every cohort-run's drift inputs and serve `drift` from the cached drift
    rows still valid for them (`cache_drift`); the others are `cache_stale`.

    Drift rows stored by a refresh under the same fingerprint are read back as they were
    written; every other cohort-run is computed by `drift_computed`, or read from
    `drift_fresh` once `compute_drift` computed it a batch of runs at a time. With
    `use_cache` off nothing is read back and `drift` stays the plain view.
    """
    key = drift_key(catalog, config)
    if key is None or "cohort_runs" not in catalog:
        return  # a catalog without the views drift needs (a partial SQL folder)
    con.execute(
        "CREATE OR REPLACE TABLE cache_fingerprints AS "
        "WITH files AS (SELECT baseline_key, run_id, sum(hash(source_file, size, mtime_ns)) AS h "
        "FROM cache_live GROUP BY ALL), "
        "marks_digest AS (SELECT coalesce(string_agg(concat_ws(',', run_id, good, reason, marked_at), ';' "
        "ORDER BY run_id, marked_at, good, reason), '') AS m FROM marks_raw), "
        "cumulative AS (SELECT cr.baseline_key, cr.run_id, sum(coalesce(f.h, 0)) OVER (PARTITION BY "
        "cr.baseline_key ORDER BY cr.ordinal ROWS UNBOUNDED PRECEDING) AS h "
        "FROM cohort_runs AS cr LEFT JOIN files AS f USING (baseline_key, run_id)) "
        "SELECT baseline_key, run_id, md5(concat_ws('|', ?, m, h)) AS fingerprint "
        "FROM cumulative, marks_digest", [key])
    if not snapshot.use_cache:
        return
    _create_from(con, "cache_drift", _located(snapshot, snapshot.drift),
                 "SELECT * FROM rows SEMI JOIN cache_fingerprints USING (baseline_key, run_id, fingerprint)")
    snapshot.drift = arrow_table(con.sql(f"SELECT {', '.join(DRIFT_ENTRY)} FROM cache_drift")).cast(
        listing_schema(DRIFT_ENTRY))
    _prune(snapshot)
    con.execute("CREATE OR REPLACE TABLE cache_stale AS SELECT baseline_key, run_id FROM cache_fingerprints "
                "ANTI JOIN cache_drift USING (baseline_key, run_id)")
    snapshot.stale = con.execute("SELECT count(*) FROM cache_stale").fetchall()[0][0]
    # the drift of stale cohort-runs computed since, a batch of runs at a time (`compute_drift`)
    con.execute(f"CREATE OR REPLACE TABLE drift_fresh AS SELECT * FROM {COMPUTED} LIMIT 0")
    serve_drift(con, snapshot)


def serve_drift(con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
    """(Re)create the `drift` view: the cached rows still valid, the rows computed since
    (`drift_fresh`) and, while any remain, `drift_computed` for the stale cohort-runs
    (`cache_stale`). Without any, the view leaves `drift_computed` out: DuckDB would
    evaluate it in full even to join it with nothing."""
    # drift_fresh has drift_computed's columns; describing the view would bind it again
    columns = ", ".join(c[0] for c in con.execute("DESCRIBE drift_fresh").fetchall())
    live = _segment_counts(snapshot.drift.column("segment"))
    snapshot.bound = [b for b in snapshot.bound if not b.rsplit("/", 1)[-1].startswith(f"{DRIFT_SOURCE}-")]
    parts = _segment_reads(snapshot, DRIFT_SOURCE, live, columns,
                           "(baseline_key, run_id, segment_file) IN "
                           "(SELECT baseline_key, run_id, segment_file FROM cache_drift)")
    parts.append(f"SELECT {columns} FROM drift_fresh")
    if con.execute("SELECT count(*) FROM cache_stale").fetchall()[0][0]:
        parts.append(f"SELECT {columns} FROM {COMPUTED} SEMI JOIN cache_stale USING (baseline_key, run_id)")
    con.execute(f"CREATE OR REPLACE VIEW {SERVED} AS " + "\nUNION ALL\n".join(parts))


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
    return store.sql("SELECT count(*) FROM cache_stale").fetchall()[0][0]


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
        latest = store.sql(f"SELECT {LATEST_RUN}").fetchall()
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

    It goes a batch of runs at a time, each narrowed to its pairs as in a refresh, so a tree
    never refreshed costs what a refresh would in time and memory, not the whole history
    in one query.
    """
    from .refresh import _batches, _materialised, _narrowed

    con = store.con
    stale = [run for (run,) in store.sql(
        "SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM cache_stale) ORDER BY ordinal").fetchall()
        if runs is None or run in runs]
    if not stale:
        return 0
    total = store.sql("SELECT count(*) FROM cache_stale WHERE list_contains(?, run_id)", [stale]).fetchall()[0][0]
    done = 0
    with _materialised(store):
        for batch in _batches(store, stale):
            with _narrowed(store, batch, None) as scope:
                con.execute(f"INSERT INTO drift_fresh SELECT * FROM {COMPUTED} WHERE {scope} "
                            "AND (baseline_key, run_id) IN (SELECT baseline_key, run_id FROM cache_stale)")
            done += con.execute("DELETE FROM cache_stale WHERE list_contains(?, run_id)", [batch]).fetchall()[0][0]
            if progress:
                progress(done, total)
    serve_drift(con, store.snapshot)
    return done

