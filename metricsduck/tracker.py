"""ReproducibilityTracker: the integration point a training pipeline calls per cohort."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, load_config
from .errors import InputError
from .files import json_bytes, write_atomic
from .layout import AUDIT_FILE, METADATA_FILE, METRICS_FILE, REPRO_DIR, check_name, cohort_dir, derive_cohort_id
from .vocab import FINGERPRINT_FIELDS
from .writer import encode_metric, utc_timestamp, write_cohort_metrics

if TYPE_CHECKING:
    from .refresh import RefreshSummary



def default_run_id(started_at: datetime) -> str:
    """A UTC timestamp id, e.g. `2026-01-05_09-00-00_000000`."""
    return started_at.astimezone(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S_%f")


def _json_safe(value: Any) -> Any:
    """Pipeline JSON files: non-finite floats as strings, everything else as JSON allows."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (date, datetime)):  # date_start/date_end are often dates
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


class ReproducibilityTracker:
    """Writes one run's cohorts under `output_dir/REPRODUCIBILITY/` (docs/design.md §2).

    One tracker is one pipeline run: every cohort it saves shares its `run_id` and
    `run_started_at`. `output_dir` is the run's own folder inside the results tree
    (`RESULTS/<run>`); `root` names the tree, by default the folder holding `output_dir`.
    """

    def __init__(self, output_dir: str | Path, run_id: str | None = None,
                 run_started_at: datetime | None = None, config: Config | None = None, *,
                 root: str | Path | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.root = None if root is None else Path(root)
        if self.root is not None and not self.output_dir.resolve().is_relative_to(self.root.resolve()):
            raise InputError(f"output_dir {self.output_dir} is not inside root {self.root}: a run's folder "
                             "belongs inside the results tree ('RESULTS/<run>' with root='RESULTS')")
        self.config = config or load_config()
        started = run_started_at if run_started_at is not None else datetime.now(timezone.utc)
        self.run_started_at = utc_timestamp("run_started_at", started)
        self.run_id = check_name(
            "run_id", run_id if run_id is not None else default_run_id(self.run_started_at))

    def save_cohort(
        self,
        stage: str,
        view: str,
        target: str,
        metrics: Mapping[str, Any],
        *,
        symbol: str | None = None,
        cohort_metadata: Mapping[str, Any] | None = None,
        samples: Mapping[str, Iterable[float]] | None = None,
        audit_report: Mapping[str, Any] | None = None,
        written_at: datetime | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the pipeline's JSON files and the sidecars of one cohort; return its folder.

        The cohort id is `cohort_metadata['cohort_id']` when given, else derived from the
        cohort definition (see `layout.derive_cohort_id`). Fingerprints (git_commit,
        config_hash, data_fingerprint, seed) and `good` come from the metadata, and
        `audit_valid` from the audit report's `is_valid`. A cohort folder that holds another
        run's sidecars is an error (nothing is written) unless `overwrite`.
        """
        for key, value in (("metrics", metrics), ("cohort_metadata", cohort_metadata),
                           ("audit_report", audit_report)):
            if value is not None and not isinstance(value, Mapping):
                raise InputError(f"{key} must be a mapping (dict), got {type(value).__name__}")
        metadata = dict(cohort_metadata or {})
        cohort_id = metadata.get("cohort_id") or derive_cohort_id(view, metadata)
        folder = cohort_dir(self.output_dir, stage, view, target, symbol, cohort_id)
        for key, value in metrics.items():  # reject bad metrics before any file is written
            encode_metric(key, value)
        audit_valid = None if audit_report is None else audit_report.get("is_valid")
        pipeline_files = {
            METADATA_FILE: {**metadata, "cohort_id": cohort_id, "run_id": self.run_id,
                              "run_started_at": self.run_started_at.isoformat(),
                              "stage": stage, "view": view, "target": target, "symbol": symbol},
            METRICS_FILE: dict(metrics),
        }
        if audit_report is not None:
            pipeline_files[AUDIT_FILE] = dict(audit_report)
        rendered = {name: json_bytes(_json_safe(doc)) for name, doc in pipeline_files.items()}
        # Sidecars first: they validate every remaining input and write atomically.
        write_cohort_metrics(
            folder,
            run_id=self.run_id,
            run_started_at=self.run_started_at,
            stage=stage, view=view, target=target, symbol=symbol, cohort_id=cohort_id,
            metrics=metrics, samples=samples,
            **{key: metadata.get(key) for key in FINGERPRINT_FIELDS},
            good=metadata.get("good"),
            audit_valid=audit_valid,
            written_at=written_at,
            config=self.config,
            overwrite=overwrite,
        )
        for name, data in rendered.items():
            write_atomic(folder / name, data)
        return folder

    def generate_telemetry_rollups(self, stage: str, run_id: str | None = None) -> RefreshSummary:
        """Write the view and stage rollups of one stage of one run (default: this run).

        Population drift compares with the previous run, so the tree read is the results
        tree (`tree`), where earlier runs live too. Returns the refresh summary, whose
        `alerts` counts the run's ALERT rows of that stage by item kind.
        """
        from .store import connect

        with connect(self.tree(), self.config) as store:
            return store.refresh(runs=[run_id or self.run_id], stage=check_name("stage", stage),
                                 cohort_files=False)

    def tree(self) -> Path:
        """The results tree: `root`, else the folder holding this run's folder, provided
        each folder in it is a run folder (holds REPRODUCIBILITY/), so that a tracker given
        the tree itself never reads, nor writes a cache into, a folder nobody named."""
        if self.root is not None:
            return self.root
        tree = self.output_dir.resolve().parent
        strays = sorted(p.name for p in tree.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and not (p / REPRO_DIR).is_dir())
        if strays:
            raise InputError(
                f"{tree} is taken for the results tree (it holds this run's folder {self.output_dir.name}), "
                f"but it also holds {', '.join(strays[:3])}{' …' if len(strays) > 3 else ''}, which are not run "
                "folders: give the tracker a run folder inside the tree (ReproducibilityTracker('RESULTS/<run>')) "
                "or name the tree (root='RESULTS')")
        return tree
