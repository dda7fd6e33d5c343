"""Marks: a person's verdict on a run (`metricsduck mark`), one small Parquet file each.

Marks are append-only: a new verdict is a new file, and the newest `marked_at` wins
(the `marks` view). `last_good_run` baselines follow them at once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .files import parquet_bytes, write_atomic
from .layout import CACHE_DIR, check_name
from .vocab import MARKS_SCHEMA_ID, SCHEMA_METADATA_KEY

if TYPE_CHECKING:
    import pyarrow as pa

MARKS_DIR = "marks"


def marks_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("good", pa.bool_(), nullable=False),
            pa.field("reason", pa.string()),
            pa.field("marked_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ],
        metadata={SCHEMA_METADATA_KEY: MARKS_SCHEMA_ID.encode()},
    )


def marks_glob(root: Path) -> str:
    return f"{Path(root).resolve()}/{CACHE_DIR}/{MARKS_DIR}/*.parquet"


def write_mark(root: str | Path, run_id: str, good: bool, reason: str | None = None,
               marked_at: datetime | None = None) -> Path:
    """Record a verdict on `run_id` as a new file under ROOT/.metricsduck/marks/."""
    import pyarrow as pa

    check_name("run_id", run_id)
    marked_at = (marked_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    table = pa.Table.from_pydict(
        {"run_id": [run_id], "good": [bool(good)], "reason": [reason], "marked_at": [marked_at]},
        schema=marks_schema(),
    )
    digest = hashlib.sha256(f"{run_id}\0{good}\0{reason}".encode()).hexdigest()[:8]
    name = f"{marked_at.strftime('%Y%m%dT%H%M%S%fZ')}_{digest}.parquet"
    path = Path(root) / CACHE_DIR / MARKS_DIR / name
    write_atomic(path, parquet_bytes(table))
    return path
