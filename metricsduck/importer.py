"""`metricsduck import`: sidecars for cohort folders the pipeline wrote before metricsduck.

Reads each `cohort=<id>/` folder's own `metrics.json`, `metadata.json` and
`audit_report.json` (docs/design.md §2) and writes the sidecars `save_cohort` would have
written beside them. The pipeline's files are only read. A folder that already has a facts
sidecar is left alone, so a second import writes nothing.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import InputError, MetricsDuckError
from .layout import AUDIT_FILE, METADATA_FILE, METRICS_FILE, REPRO_DIR, cohort_id_from_dir, sidecar_name
from .vocab import FINGERPRINT_FIELDS
from .writer import utc_timestamp, write_cohort_metrics

# Run ids the pipeline derives from its start time: `2025-12-14_12-00-00`, and the
# tracker's default `2026-01-05_09-00-00_000000` (read as UTC).
RUN_ID_TIMES = ("%Y-%m-%d_%H-%M-%S_%f", "%Y-%m-%d_%H-%M-%S")
# How the tracker writes non-finite metric values into metrics.json (JSON has no NaN).
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass
class ImportSummary:
    """What an import did (or, with `dry_run`, would do)."""

    imported: list[Path] = field(default_factory=list)  # cohort folders given sidecars
    present: int = 0  # cohort folders that already had them (left alone)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (file or folder, reason)

    def rows(self, dry_run: bool) -> list[tuple[str, int]]:
        return [("would import" if dry_run else "imported", len(self.imported)),
                ("already had sidecars", self.present), ("could not read", len(self.failed))]


def cohort_folders(root: Path) -> Iterator[Path]:
    """Every `cohort=<id>` folder below a REPRODUCIBILITY folder of `root`, in path order."""
    for repro in sorted(p for p in root.rglob(REPRO_DIR) if p.is_dir()):
        yield from sorted(p for p in repro.rglob("cohort=*") if p.is_dir())


def import_tree(root: str | Path, *, config: Config | None = None, dry_run: bool = False,
                progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Write the sidecars of every cohort folder of `root` that has none; see the module."""
    from .store import tree_root

    root = tree_root(root)
    config = config or load_config()
    facts_name = sidecar_name(config.prefix, "metrics", "parquet")
    folders = list(cohort_folders(root))
    if not folders:
        raise InputError(f"{root}: no cohort=<id> folders below a {REPRO_DIR} folder; give the results tree "
                         f"(<tree>/<run>/{REPRO_DIR}/<stage>/<view>/<target>/cohort=<id>/metrics.json)")
    summary = ImportSummary()
    for done, folder in enumerate(folders, 1):
        if (folder / facts_name).exists():
            summary.present += 1
        elif not (folder / METRICS_FILE).is_file():
            summary.failed.append((folder, f"no {METRICS_FILE}: nothing to import"))
        else:
            try:
                cohort = read_cohort(folder, root)
                if not dry_run:
                    write_cohort_metrics(folder, config=config, **cohort)
            except MetricsDuckError as exc:
                summary.failed.append((folder, str(exc)))
            else:
                summary.imported.append(folder)
        if progress is not None:
            progress(done, len(folders))
    return summary


def read_cohort(folder: Path, root: Path) -> dict[str, Any]:
    """The `write_cohort_metrics` arguments of one cohort folder, from its JSON files.

    Identity: metadata.json's `stage`, `view`, `target`, `symbol`, else the folder names
    (`<run>/REPRODUCIBILITY/<stage>/<view>/<target>[/symbol=<sym>]/cohort=<id>`). The run id
    is metadata's `run_id`, else the name of the run folder (the one below `root` holding
    REPRODUCIBILITY/); its start time metadata's
    `run_started_at`, else the run id read as a UTC timestamp. `written_at` is when
    metrics.json was last written. Nested objects in metrics.json become dotted metric
    names, lists of numbers or of strings (categories) become samples.
    """
    metadata = _read_json(folder / METADATA_FILE, required=False)
    audit = _read_json(folder / AUDIT_FILE, required=False)
    metrics, samples = _split_metrics(_read_json(folder / METRICS_FILE, required=True))
    parts = folder.parts
    repro = len(parts) - 1 - parts[::-1].index(REPRO_DIR)
    below = parts[repro + 1:-1]  # stage, view, target[, symbol=<sym>]
    symbol_dir = next((p[len("symbol="):] for p in below[3:] if p.startswith("symbol=")), None)
    from_path = {"stage": _at(below, 0), "view": _at(below, 1), "target": _at(below, 2), "symbol": symbol_dir}
    identity = {key: metadata.get(key, value) for key, value in from_path.items()}
    run_folder = Path(*parts[:repro])
    run_id = metadata.get("run_id") or (run_folder.name if run_folder != root else None)
    if run_id is None:
        raise InputError(f"{folder / METADATA_FILE}: no run_id, and {REPRO_DIR}/ is not inside a run folder; "
                         "add run_id to the run's metadata.json files")
    return {
        **identity,
        "cohort_id": cohort_id_from_dir(folder),
        "run_id": run_id,
        "run_started_at": _run_started_at(folder, metadata, run_id),
        "metrics": metrics,
        "samples": samples or None,
        **{key: metadata.get(key) for key in FINGERPRINT_FIELDS},
        "good": metadata.get("good"),
        "audit_valid": audit.get("is_valid"),
        "written_at": datetime.fromtimestamp((folder / METRICS_FILE).stat().st_mtime, timezone.utc),
    }


def _at(parts: tuple[str, ...], index: int) -> str | None:
    return parts[index] if index < len(parts) else None


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        if required:
            raise InputError(f"{path}: missing") from None
        return {}
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f"{path}: not readable JSON ({exc}); fix or remove it, then import again") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: holds a JSON {type(document).__name__}, not an object")
    return document


def _split_metrics(document: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, list]]:
    """`(scalar metrics, samples)` of metrics.json: objects flattened to `a.b`, lists of
    numbers or of strings (categories) as samples; anything else is left for
    `write_cohort_metrics` to accept or refuse."""
    metrics: dict[str, Any] = {}
    samples: dict[str, list] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            inner_metrics, inner_samples = _split_metrics(value, f"{name}.")
            metrics.update(inner_metrics)
            samples.update(inner_samples)
        elif isinstance(value, list) and value and (
                all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
                or all(isinstance(v, str) for v in value)):
            samples[name] = value
        else:
            metrics[name] = NON_FINITE.get(value, value) if isinstance(value, str) else value
    return metrics, samples


def _run_started_at(folder: Path, metadata: Mapping[str, Any], run_id: str) -> datetime:
    if "run_started_at" in metadata:
        return utc_timestamp(f"{folder / METADATA_FILE}: run_started_at", metadata["run_started_at"])
    for shape in RUN_ID_TIMES:
        try:
            return datetime.strptime(run_id, shape).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise InputError(
        f"{folder / METADATA_FILE}: no run_started_at, and run id {run_id!r} is not a timestamp "
        "(YYYY-MM-DD_HH-MM-SS); add run_started_at (ISO 8601, with a timezone) to the run's metadata.json files")
