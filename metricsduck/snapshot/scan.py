"""The walk of a results tree: every sidecar with its stat, metricsduck's own folder skipped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..layout import CACHE_DIR
from .segments import FOUND, listing_schema


def walk(root: Path, names: dict[str, str]) -> tuple[Any, list[tuple[str, str]]]:
    """Stat every sidecar under `root` (resolved): an Arrow table of `FOUND` columns
    (path relative to the root, source, size, mtime_ns), sorted by path.

    `names` maps a sidecar file name to its source table. metricsduck's own folder is
    skipped; a folder that cannot be listed is returned as `(path, reason)`.
    """
    import pyarrow as pa

    paths: list[str] = []
    sources: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    unlisted = []
    start = len(str(root)) + 1
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != CACHE_DIR:
                            stack.append(entry.path)
                    elif entry.name in names:
                        try:
                            stat = entry.stat()
                        except OSError:
                            continue  # deleted since the listing: it is gone
                        paths.append(entry.path[start:])
                        sources.append(names[entry.name])
                        sizes.append(stat.st_size)
                        mtimes.append(stat.st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):
            continue  # no tree yet, or a folder deleted since it was listed: nothing to read
        except OSError as exc:
            unlisted.append((folder, f"cannot list this folder ({exc.strerror}); its sidecars are left out"))
    found = pa.Table.from_arrays([pa.array(paths, pa.string()), pa.array(sources, pa.string()),
                                  pa.array(sizes, pa.int64()), pa.array(mtimes, pa.int64())],
                                 schema=listing_schema(FOUND))
    return found.sort_by([("path", "ascending"), ("source", "ascending")]), unlisted
