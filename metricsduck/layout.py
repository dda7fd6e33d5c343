"""The results tree: safe names, baseline keys, cohort ids and where each file lives.

Identity is always stored in columns; paths only tell writers where to put files
(docs/design.md §2). Every name that becomes part of a path passes `check_name` first.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import InputError

REPRO_DIR = "REPRODUCIBILITY"
CACHE_DIR = ".metricsduck"
CATALOG_FILE = "catalog.duckdb"
CONFIG_FILE = "config.yaml"
# The pipeline's own files of a cohort folder (written by the tracker, read by `import`).
METRICS_FILE, METADATA_FILE, AUDIT_FILE = "metrics.json", "metadata.json", "audit_report.json"

CROSS_SECTIONAL = "CROSS_SECTIONAL"
SYMBOL_SPECIFIC = "SYMBOL_SPECIFIC"
LOSO = "LOSO"
INDIVIDUAL = "INDIVIDUAL"
# Views whose cohorts sit under a `symbol=<SYM>/` level.
SYMBOL_VIEWS = frozenset({SYMBOL_SPECIFIC, LOSO})
# The pipeline's cohort-id prefixes; other views use their first two letters.
VIEW_PREFIXES = {CROSS_SECTIONAL: "cr", SYMBOL_SPECIFIC: "sy", LOSO: "lo", INDIVIDUAL: "in"}

MAX_NAME_LENGTH = 200


def check_name(key: str, value: Any) -> str:
    """Return `value` if it is safe as a folder name and an identity; raise naming `key`.

    Rejected: non-strings, empty strings, over 200 characters, path separators,
    `..`, `.` alone, and control characters (including NUL and newlines).
    """
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise InputError(f"{key} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InputError(
            f"{key} is {len(value)} characters long; names are limited to {MAX_NAME_LENGTH}"
        )
    if "/" in value or "\\" in value:
        raise InputError(f"{key} {value!r} contains a path separator; use another name")
    if value == "." or ".." in value:
        raise InputError(f"{key} {value!r} contains '..' or is '.'; use another name")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise InputError(
                f"{key} {value!r} contains the control character U+{ord(ch):04X}; "
                "use printable characters only"
            )
    return value


def baseline_key(stage: str, view: str, target: str, symbol: str | None) -> str:
    """`STAGE:VIEW:target` or `STAGE:VIEW:target:SYMBOL` (docs/design.md §3.1)."""
    parts = [stage, view, target] + ([symbol] if symbol is not None else [])
    return ":".join(parts)


def check_symbol(view: str, symbol: str | None) -> str | None:
    """Symbol-level views need a symbol; CROSS_SECTIONAL must not have one."""
    if view in SYMBOL_VIEWS and symbol is None:
        raise InputError(f"symbol is required for view {view} (it has a symbol level)")
    if view == CROSS_SECTIONAL and symbol is not None:
        raise InputError(f"symbol must be None for view {view} (it has no symbol level)")
    return None if symbol is None else check_name("symbol", symbol)


def cohort_dir(
    run_dir: Path, stage: str, view: str, target: str, symbol: str | None, cohort_id: str
) -> Path:
    """`<run_dir>/REPRODUCIBILITY/<STAGE>/<VIEW>/<target>[/symbol=<SYM>]/cohort=<id>`."""
    path = Path(run_dir) / REPRO_DIR / check_name("stage", stage) / check_name("view", view)
    path = path / check_name("target", target)
    if check_symbol(view, symbol) is not None:
        path = path / f"symbol={symbol}"
    return path / f"cohort={check_name('cohort_id', cohort_id)}"


def cohort_id_from_dir(path: Path) -> str | None:
    """The `<id>` of a `cohort=<id>` folder, else None."""
    name = Path(path).name
    if not name.startswith("cohort="):
        return None
    return name[len("cohort="):] or None


def sidecar_name(prefix: str, artifact: str, ext: str) -> str:
    """`telemetry_metrics.parquet` and friends, with the configured prefix."""
    return f"{prefix}_{artifact}.{ext}"


def _quarter(value: Any) -> str:
    """`2025Q3` from a date, datetime or ISO date string."""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(str(value)[:10])
        except ValueError as exc:
            raise InputError(
                f"cohort_metadata['date_start'] {value!r} is not an ISO date (YYYY-MM-DD)"
            ) from exc
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def derive_cohort_id(view: str, metadata: Mapping[str, Any]) -> str:
    """The pipeline's cohort id: `<view prefix>_<year>Q<quarter>_<8 hex of SHA-256>`.

    The hash covers N_effective, n_symbols, date_start, date_end and the cohort config
    with sorted keys, so the same cohort definition always gets the same id.
    """
    if "date_start" not in metadata:
        raise InputError(
            "cohort_metadata['date_start'] is needed to derive a cohort id; "
            "pass it or give cohort_metadata['cohort_id']"
        )
    prefix = VIEW_PREFIXES.get(view, view[:2].lower())
    payload = {
        "N_effective": metadata.get("N_effective"),
        "n_symbols": metadata.get("n_symbols"),
        "date_start": str(metadata.get("date_start")),
        "date_end": str(metadata.get("date_end")),
        "cohort_config": metadata.get("cohort_config") or {},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{prefix}_{_quarter(metadata['date_start'])}_{digest}"
