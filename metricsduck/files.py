"""The one place that writes files: atomic, deterministic, and never rewriting equal bytes.

Every artifact goes through `write_atomic`: bytes land in a hidden temporary name in the
same folder (never matched by the sidecar globs), are fsynced, then renamed over the
target, so a reader sees the old file or the new one and never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StorageError

if TYPE_CHECKING:
    import pyarrow as pa

TEMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically; return False (and touch nothing) if unchanged."""
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the existing file ({exc.strerror})") from None
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise StorageError(f"{path}: cannot write ({exc.strerror}); the old file is unchanged") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return True


def json_bytes(document: Any) -> bytes:
    """Canonical JSON: sorted keys, two-space indent, UTF-8, trailing newline, no NaN."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def parquet_bytes(table: pa.Table, compression: str = "none") -> bytes:
    """Serialise an Arrow table to Parquet bytes; the same table always gives the same bytes.

    Uncompressed (dictionary-encoded) by default: the files metricsduck writes per cohort
    hold tens of rows, where zstd frames add more bytes than they save and slow every
    write (the measurements are in CHANGELOG.md). Pass `compression="zstd"` for large tables.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, write_statistics=True)
    return sink.getvalue().to_pybytes()
