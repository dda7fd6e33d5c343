"""Materialise drift into the tree: `telemetry_drift.parquet` / `.json` per cohort-run.

The Parquet holds the cohort-run's rows of the `drift` view; the JSON mirrors it in a
readable shape. Files whose bytes would not change are not rewritten, so a second
refresh writes nothing; a file that cannot be written is reported, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import InputError, StorageError
from .files import json_bytes, parquet_bytes, write_atomic
from .layout import CACHE_DIR, sidecar_name
from .marks import MARKS_DIR
from .mirrors import DRIFT_SCHEMA_ID, drift_mirror

FINGERPRINTS = ("git_commit", "config_hash", "data_fingerprint", "seed")


@dataclass
class RefreshSummary:
    runs: list[str] = field(default_factory=list)
    cohorts: int = 0
    written: int = 0
    unchanged: int = 0
    alerts: dict[str, int] = field(default_factory=lambda: {"metric": 0, "distribution": 0})
    failed: list[tuple[str, str]] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """`(item, value)` rows for the CLI summary."""
        return [
            ("runs refreshed", str(len(self.runs))),
            ("cohort-runs", str(self.cohorts)),
            ("files written", str(self.written)),
            ("files unchanged", str(self.unchanged)),
            ("files failed", str(len(self.failed))),
            ("ALERT metrics", str(self.alerts["metric"])),
            ("ALERT distributions", str(self.alerts["distribution"])),
        ]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def stale_runs(store: Any) -> list[str]:
    """Runs with a cohort whose drift file is missing or older than any input it depends on.

    A cohort-run's inputs are its own sidecars and those of every earlier cohort-run of
    its baseline key, the marks and the config file.
    """
    prefix = store.config.prefix
    global_inputs = [_mtime(Path(store.config.source))] if store.config.source != "<defaults>" else []
    marks = store.root / CACHE_DIR / MARKS_DIR
    if marks.is_dir():
        global_inputs += [_mtime(p) for p in marks.glob("*.parquet")]
    newest_global = max([m for m in global_inputs if m is not None], default=0.0)
    rows = store.sql(
        "SELECT cr.baseline_key, cr.run_id, cr.source_file, s.source_file "
        "FROM cohort_runs AS cr LEFT JOIN (SELECT DISTINCT baseline_key, run_id, source_file "
        "FROM samples) AS s USING (baseline_key, run_id) ORDER BY cr.baseline_key, cr.ordinal"
    ).fetchall()
    stale: set[str] = set()
    key, newest_input = None, 0.0
    for baseline_key, run_id, facts_file, samples_file in rows:
        if baseline_key != key:
            key, newest_input = baseline_key, 0.0
        inputs = [_mtime(Path(facts_file))] + ([_mtime(Path(samples_file))] if samples_file else [])
        newest_input = max([newest_input] + [m for m in inputs if m is not None])
        drift = _mtime(Path(facts_file).parent / sidecar_name(prefix, "drift", "parquet"))
        if drift is None or drift < max(newest_input, newest_global):
            stale.add(run_id)
    return sorted(stale)


def _arrow(relation: Any) -> Any:
    result = relation.arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def refresh(store: Any, *, runs: Iterable[str] | None = None, all_runs: bool = False,
            progress: Callable[[int, int], None] | None = None) -> RefreshSummary:
    """Write drift files for `runs`, every run (`all_runs`), or by default the stale ones."""
    known = [r[0] for r in store.sql("SELECT run_id FROM runs ORDER BY ordinal").fetchall()]
    if all_runs:
        selected = known
    elif runs is not None:
        selected = list(dict.fromkeys(runs))
        unknown = [r for r in selected if r not in known]
        if unknown:
            raise InputError(
                f"run {unknown[0]!r} is not in {store.root} (known runs: {', '.join(known[-5:]) or 'none'})"
            )
    else:
        selected = stale_runs(store)
    summary = RefreshSummary(runs=selected)
    if not selected:
        return summary
    store.con.execute("CREATE OR REPLACE TEMP TABLE refresh_runs AS SELECT unnest(?::VARCHAR[]) AS run_id", [selected])
    cohorts = store.sql(
        "SELECT baseline_key, run_id, source_file, " + ", ".join(FINGERPRINTS) +
        " FROM cohort_runs WHERE run_id IN (SELECT run_id FROM refresh_runs) ORDER BY baseline_key, run_id"
    ).fetchall()
    table = _arrow(store.sql(
        "SELECT * FROM drift WHERE run_id IN (SELECT run_id FROM refresh_runs) "
        "ORDER BY baseline_key, run_id, baseline_kind, item_kind, item"
    ))
    table = table.replace_schema_metadata({b"metricsduck.schema": DRIFT_SCHEMA_ID.encode()})
    keys = list(zip(table.column("baseline_key").to_pylist(), table.column("run_id").to_pylist()))
    bounds: dict[tuple[str, str], tuple[int, int]] = {}
    for index, key in enumerate(keys):
        start, _ = bounds.get(key, (index, index))
        bounds[key] = (start, index + 1)
    prefix = store.config.prefix
    summary.cohorts = len(cohorts)
    for done, (baseline_key, run_id, facts_file, *fingerprints) in enumerate(cohorts, start=1):
        start, stop = bounds.get((baseline_key, run_id), (0, 0))
        part = table.slice(start, stop - start).combine_chunks()
        rows = part.to_pylist()
        folder = Path(facts_file).parent
        outputs = [(folder / sidecar_name(prefix, "drift", "parquet"), parquet_bytes(part))]
        if rows:
            document = drift_mirror(rows, dict(zip(FINGERPRINTS, fingerprints)))
            outputs.append((folder / sidecar_name(prefix, "drift", "json"), json_bytes(document)))
        for row in rows:
            if row["tier"] == "ALERT":
                summary.alerts[row["item_kind"]] += 1
        for path, data in outputs:
            try:
                if write_atomic(path, data):
                    summary.written += 1
                else:
                    summary.unchanged += 1
            except StorageError as exc:
                summary.failed.append((str(path), str(exc)))
        if progress:
            progress(done, len(cohorts))
    return summary
