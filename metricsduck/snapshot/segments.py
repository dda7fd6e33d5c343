"""The compacted cache's files under ROOT/.metricsduck/cache/: segments and their listings.

A *segment* is one Parquet file of cached rows: the rows of many sidecars (or the drift
rows of many cohort-runs), in path order. The *manifest* lists every sidecar with its
stat and the segment holding its rows (or why it is bad); the *drift index* lists every
cohort-run whose drift rows are cached, with the fingerprint of their inputs. `publish`
makes the cache what a snapshot read, under the refresh lock; segments no longer listed
are retired, kept an hour for stores still reading them, then deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from ..layout import CACHE_DIR
from ..vocab import MANIFEST_SCHEMA_ID, SCHEMA_METADATA_KEY

if TYPE_CHECKING:
    from . import Snapshot

CACHE_SUBDIR = "cache"
MANIFEST_FILE = "manifest.parquet"
SEGMENTS_KEY = b"metricsduck.segments"
RETIRED_KEY = b"metricsduck.retired"
SOURCES = ("facts_raw", "samples_raw")
DRIFT_SOURCE = "drift"
DRIFT_INDEX_FILE = "drift_index.parquet"
RETIRED_GRACE_S = 3600  # a retired segment may still be read by an open store for a while
MAX_SEGMENTS = 32  # per source; beyond it, a publish merges the live rows into one segment

def cache_dir(root: Path) -> Path:
    return Path(root) / CACHE_DIR / CACHE_SUBDIR


# The listings are Arrow tables, in memory and on disk: at 100,000 cohort-runs the manifest
# has a row per sidecar, 200,000 of them.

# The manifest: one row per sidecar with its stat, the segment holding its rows (NULL if
# bad) or why it is bad, and the cohort-run it holds (which drift fingerprints follow).
ENTRY = ("path", "source", "size", "mtime_ns", "segment", "reason", "baseline_key", "run_id")
FOUND = ENTRY[:4]  # what a walk of the tree sees
# The drift index: the materialised drift rows of one cohort-run, computed from inputs with
# `fingerprint`, are held by `segment`; its trend and rollup files were written by the
# definitions whose cache key is `outputs`.
DRIFT_ENTRY = ("baseline_key", "run_id", "fingerprint", "outputs", "segment")


def listing_schema(columns: tuple[str, ...]) -> Any:
    """The Arrow schema of a listing with `columns`: size and mtime_ns int64, the rest strings."""
    import pyarrow as pa

    types = {"size": pa.int64(), "mtime_ns": pa.int64()}
    return pa.schema([pa.field(name, types.get(name, pa.string())) for name in columns])


def _empty(columns: tuple[str, ...]) -> Any:
    return listing_schema(columns).empty_table()


def _rows_table(rows: list[tuple], columns: tuple[str, ...]) -> Any:
    """An Arrow table of `rows` (tuples in `columns` order), built column by column."""
    import pyarrow as pa

    schema = listing_schema(columns)
    values = list(zip(*rows, strict=True)) or [()] * len(columns)
    return pa.Table.from_arrays([pa.array(v, f.type) for v, f in zip(values, schema, strict=True)], schema=schema)


@dataclass
class Segment:
    """One Parquet file of cached rows: `files` sidecars' (or drift cohort-runs') rows."""

    name: str
    source: str
    files: int
    size: int
    mtime_ns: int


def segment_name(source: str) -> str:
    """A new segment's file name; names sort in the order segments were made."""
    return f"{source}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def segment_glob(source: str) -> str:
    """The pattern every segment name of `source` matches."""
    return f"{source}-*.parquet"


def _read_listing(folder: Path, name: str, columns: tuple[str, ...]) -> tuple[Any, dict[str, Segment]] | None:
    """The rows (an Arrow table of `columns`) and segments of one listing file (the
    manifest or the drift index), or None.

    A listing of another version, or naming a segment that is missing or differs in size or
    mtime from what it recorded (a partial copy, a hand edit), is not trusted: the cache is
    derived, so it is rebuilt instead.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(folder / name).read()
        metadata = table.schema.metadata or {}
        if metadata.get(SCHEMA_METADATA_KEY) != MANIFEST_SCHEMA_ID.encode():
            return None
        segments = {s["name"]: Segment(**s) for s in json.loads(metadata[SEGMENTS_KEY])}
        for segment in segments.values():
            stat = (folder / segment.name).stat()
            if (stat.st_size, stat.st_mtime_ns) != (segment.size, segment.mtime_ns):
                return None
        return table.cast(listing_schema(columns)), segments
    except Exception:  # noqa: BLE001 - any unreadable listing is rebuilt: the cache is derived
        return None


def _sorted(table: Any) -> Any:
    """`table` in the order of all its columns (a listing's canonical order)."""
    return table.sort_by([(name, "ascending") for name in table.column_names])


def segment_counts(segments: Any) -> dict[str, int]:
    """How many rows of an Arrow column name each segment."""
    import pyarrow.compute as pc

    return {item["values"]: item["counts"] for item in pc.value_counts(segments).to_pylist()
            if item["values"] is not None}


def _live(entries: Any) -> Any:
    """The manifest rows of good sidecars (the bad ones have a reason and no segment)."""
    import pyarrow.compute as pc

    return entries.filter(pc.is_null(entries.column("reason")))


def located(snapshot: Snapshot, table: Any) -> Any:
    """`table` plus `segment_file`: the path of the segment holding each row's rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(snapshot.segments)
    paths = pa.array([str(snapshot.segment_path(name)) for name in names], pa.string())
    index = pc.index_in(table.column("segment"), value_set=pa.array(names, pa.string()))
    return table.append_column("segment_file", pc.take(paths, index))


def _write_listing(folder: Path, name: str, table: Any, segments: list[Segment],
                   retired: dict[str, float]) -> None:
    from ..files import parquet_bytes, write_atomic

    write_atomic(folder / name, parquet_bytes(_sorted(table).replace_schema_metadata({
        SCHEMA_METADATA_KEY: MANIFEST_SCHEMA_ID.encode(),
        SEGMENTS_KEY: json.dumps([vars(s) for s in segments]).encode(),
        RETIRED_KEY: json.dumps(retired, sort_keys=True).encode(),
    }), compression="zstd"))


def _compact(snapshot: Snapshot, folder: Path) -> None:
    """Merge the segments of a source into one, in `folder`, when there are too many of them
    or when most of their rows belong to changed, deleted or bad files (read no more)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def key(table: Any, source: str) -> Any:
        """What identifies a row's origin: its sidecar, or for drift its cohort-run."""
        if source != DRIFT_SOURCE:
            return table.column("source_file")
        return pc.binary_join_element_wise(table.column("baseline_key"), table.column("run_id"), "\x1f")

    live = _live(snapshot.entries)
    live = live.rename_columns(["source_file" if n == "path" else n for n in live.column_names])
    for source in SOURCES + (DRIFT_SOURCE,):
        mine = sorted(n for n, s in snapshot.segments.items() if s.source == source)
        listing = snapshot.drift if source == DRIFT_SOURCE else live
        rows = listing.filter(pc.is_in(listing.column("segment"), value_set=pa.array(mine, pa.string())))
        if not rows.num_rows or (len(mine) <= MAX_SEGMENTS
                                 and 2 * rows.num_rows >= sum(snapshot.segments[n].files for n in mine)):
            continue
        name = segment_name(source)
        tmp = folder / f".{name}.tmp"
        writer = None
        try:
            for segment in mine:
                wanted = key(rows.filter(pc.equal(rows.column("segment"), segment)), source)
                for batch in pq.ParquetFile(snapshot.segment_path(segment)).iter_batches():
                    if writer is None:  # segments differ in which columns were all non-null
                        schema = pa.schema([f.with_nullable(True) for f in batch.schema])
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                    kept = batch.filter(pc.is_in(key(batch, source), value_set=wanted))
                    writer.write_batch(kept.cast(schema))
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, folder / name)
        stat = (folder / name).stat()
        for stale in mine:
            del snapshot.segments[stale]
            snapshot.staged.discard(stale)
        snapshot.segments[name] = Segment(name, source, rows.num_rows, stat.st_size, stat.st_mtime_ns)
        merged = pa.array(mine, pa.string())
        for attribute in ("entries", "drift"):  # a bad sidecar's NULL segment stays NULL
            table = getattr(snapshot, attribute)
            segment = table.column("segment")
            setattr(snapshot, attribute, table.set_column(
                table.schema.get_field_index("segment"), "segment",
                pc.if_else(pc.is_in(segment, value_set=merged), pa.scalar(name, pa.string()), segment)))


def prune(snapshot: Snapshot) -> None:
    """Forget segments that no live sidecar or drift entry refers to any more."""
    used = {*segment_counts(snapshot.entries.column("segment")), *segment_counts(snapshot.drift.column("segment"))}
    snapshot.segments = {n: s for n, s in snapshot.segments.items() if n in used}



def publish(snapshot: Snapshot) -> bool:
    """Make the cache what this snapshot read: copy its staged segments in, write the
    manifest and the drift index.

    Call it under the refresh lock. Returns False if the cache already matched. Segments
    no longer referenced are retired: kept for an hour, for stores still reading them,
    then deleted. The views of the snapshot's store keep reading the files they read.
    """
    if not snapshot.use_cache:
        return False
    folder = cache_dir(snapshot.root)
    prune(snapshot)
    if not snapshot.staged:  # else there is something to publish: no need to read the listings
        manifest = _read_listing(folder, MANIFEST_FILE, ENTRY)
        index = _read_listing(folder, DRIFT_INDEX_FILE, DRIFT_ENTRY)
        if (manifest is not None and index is not None
                and _sorted(manifest[0]).equals(_sorted(snapshot.entries))
                and _sorted(index[0]).equals(_sorted(snapshot.drift))
                and set(manifest[1]) | set(index[1]) == set(snapshot.segments)):
            return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _compact(snapshot, folder)
        for name in sorted(snapshot.staged & set(snapshot.segments)):
            if (folder / name).exists():  # published by an earlier call (segments never change)
                continue
            tmp = folder / f".{name}.tmp"
            shutil.copyfile(snapshot.stage_dir / name, tmp)
            os.replace(tmp, folder / name)
        segments = []
        for name, segment in sorted(snapshot.segments.items()):
            stat = (folder / name).stat()
            segments.append(Segment(name, segment.source, segment.files, stat.st_size, stat.st_mtime_ns))
        retired = _retire(folder, set(snapshot.segments))
        raw = [s for s in segments if s.source != DRIFT_SOURCE]
        _write_listing(folder, MANIFEST_FILE, snapshot.entries, raw, retired)
        _write_listing(folder, DRIFT_INDEX_FILE, snapshot.drift,
                       [s for s in segments if s.source == DRIFT_SOURCE], retired)
    except OSError as exc:
        raise StorageError(f"{folder}: cannot update the cache ({exc.strerror}); "
                           "the sidecars are unchanged, and deleting the folder is safe") from None
    return True


def _retire(folder: Path, referenced: set[str]) -> dict[str, float]:
    """`{segment: retired_at}` of the unreferenced segments still kept; older ones are deleted.

    A store that took its snapshot before this publish may still read a retired segment,
    so it stays for RETIRED_GRACE_S after it was first seen unreferenced.
    """
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(folder / MANIFEST_FILE).metadata or {}
        known = json.loads(metadata.get(RETIRED_KEY, b"{}"))
    except Exception:  # noqa: BLE001 - no readable record: every unlisted segment is new to it
        known = {}
    now = time.time()
    kept = {}
    for path in folder.glob("*-*.parquet"):
        if path.name in referenced:
            continue
        retired_at = known.get(path.name, now)
        if now - retired_at > RETIRED_GRACE_S:
            path.unlink(missing_ok=True)
        else:
            kept[path.name] = retired_at
    return kept
