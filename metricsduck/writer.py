"""Sidecars: metric facts and distribution samples in the schemas of docs/design.md §3.

`write_cohort_metrics` validates everything before it writes anything, so bad input
never leaves a half-written cohort; each file is written atomically and
deterministically (same input, same bytes).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, load_config
from .errors import InputError
from .files import json_bytes, parquet_bytes, write_atomic
from .layout import baseline_key, check_name, check_symbol, cohort_id_from_dir, sidecar_name
from .mirrors import metrics_mirror
from .vocab import FINGERPRINT_FIELDS, METRICS_SCHEMA_ID, SAMPLES_SCHEMA_ID, SCHEMA_METADATA_KEY

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SCHEMA_VERSION = 1

KIND_NUMBER, KIND_BOOL, KIND_TEXT = "number", "bool", "text"


def _identity_fields() -> list[pa.Field]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return [
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("run_started_at", ts, nullable=False),
        pa.field("written_at", ts, nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("view", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("cohort_id", pa.string(), nullable=False),
        pa.field("baseline_key", pa.string(), nullable=False),
        pa.field("git_commit", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("data_fingerprint", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("good", pa.bool_()),
        pa.field("audit_valid", pa.bool_()),
    ]


def metrics_schema() -> pa.Schema:
    """Arrow schema of `telemetry_metrics.parquet` (version 1)."""
    import pyarrow as pa

    fields = _identity_fields() + [
        pa.field("metric", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("value_text", pa.string()),
    ]
    return pa.schema(fields, metadata={SCHEMA_METADATA_KEY: METRICS_SCHEMA_ID.encode()})


def samples_schema() -> pa.Schema:
    """Arrow schema of `telemetry_samples.parquet` (version 1).

    The identity columns stop at baseline_key: fingerprints and verdicts live in the facts.
    """
    import pyarrow as pa

    identity = [f for f in _identity_fields() if f.name not in _FACT_ONLY]
    fields = identity + [
        pa.field("distribution", pa.string(), nullable=False),
        pa.field("n_total", pa.int64(), nullable=False),
        pa.field("n_missing", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
        # a column added within version 1: sidecars without it read as numbers only
        pa.field("value_text", pa.string()),
    ]
    return pa.schema(fields, metadata={SCHEMA_METADATA_KEY: SAMPLES_SCHEMA_ID.encode()})


_FACT_ONLY = {*FINGERPRINT_FIELDS, "good", "audit_valid"}


def utc_timestamp(key: str, value: Any) -> datetime:
    """A timezone-aware datetime converted to UTC and truncated to microseconds."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{key} {value!r} is not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise InputError(f"{key} must be a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(
            f"{key} {value.isoformat()} has no timezone; pass an aware datetime, "
            "e.g. datetime.now(timezone.utc)"
        )
    return value.astimezone(timezone.utc)


def _is_bool(value: Any) -> bool:
    """Python and numpy booleans (numpy's are not `bool` subclasses)."""
    return isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    )


def encode_metric(key: str, value: Any) -> tuple[str, float | None, str | None]:
    """`(kind, value, value_text)` of one metric value as docs/design.md §3.1 stores it.

    Bools are 1/0; non-finite numbers keep `nan`/`inf`/`-inf` in value_text; None is a
    number without a value; lists and dicts are rejected (they belong in samples).
    """
    if _is_bool(value):
        return KIND_BOOL, 1.0 if value else 0.0, None
    if value is None:
        return KIND_NUMBER, None, None
    if isinstance(value, str):
        return KIND_TEXT, None, value
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:
            raise InputError(f"metrics[{key!r}] = {value} does not fit in a double") from None
        if math.isnan(number):
            return KIND_NUMBER, None, "nan"
        if math.isinf(number):
            return KIND_NUMBER, None, "inf" if number > 0 else "-inf"
        return KIND_NUMBER, number, None
    if isinstance(value, (bytes, bytearray)):
        raise InputError(f"metrics[{key!r}] has unsupported type {type(value).__name__}; "
                         "use a number, bool, str or None")
    if isinstance(value, (list, tuple, set, frozenset, dict, Mapping)) or hasattr(value, "__len__"):
        raise InputError(
            f"metrics[{key!r}] is a {type(value).__name__}; metrics are scalars "
            "(number, bool, text) — pass lists of values as samples={...}"
        )
    raise InputError(
        f"metrics[{key!r}] has unsupported type {type(value).__name__}; "
        "use a number, bool, str or None"
    )


def _optional_text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string or None, got {type(value).__name__}")
    return value


def _optional_bool(key: str, value: Any) -> bool | None:
    if value is None:
        return None
    if _is_bool(value):
        return bool(value)
    raise InputError(f"{key} must be True, False or None, got {value!r}")


def _optional_seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"seed must be an integer or None, got {value!r}")
    if not -(2**63) <= int(value) < 2**63:
        raise InputError(f"seed {value} does not fit in int64")
    return int(value)


def _sample_values(name: str, values: Iterable[Any], limit: int, salt: str) -> tuple[list, bool, int, int]:
    """`(retained values, are they text, n_total, n_missing)`, subsampled deterministically.

    A distribution is numbers (non-finite ones are missing) or text (categories; None is
    missing), never both: a string among numbers is refused rather than parsed.
    """
    import numpy as np

    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise InputError(f"samples[{name!r}] must be a sequence of numbers or of strings, "
                         f"got {type(values).__name__}")
    raw = values if hasattr(values, "__array__") else list(values)
    kind = getattr(raw, "dtype", np.dtype(object)).kind  # lists are objects; numeric arrays skip the scan
    text = kind in "US" or (
        kind == "O" and any(isinstance(v, (str, bytes)) for v in np.asarray(raw, dtype=object).ravel()))
    if text:
        retained, n_total = _text_values(name, np.asarray(raw, dtype=object))
    else:
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"samples[{name!r}] holds a value that is not a number") from None
        if array.ndim != 1:
            raise InputError(f"samples[{name!r}] must be one-dimensional, got shape {array.shape}")
        retained, n_total = array[np.isfinite(array)], int(array.size)
    n_missing = n_total - len(retained)
    if len(retained) > limit:
        # Seeded by the cohort-run and distribution: the same input keeps the same rows.
        seed = int.from_bytes(hashlib.sha256(f"{salt}\0{name}".encode()).digest()[:8], "little")
        keep = np.sort(np.random.default_rng(seed).choice(len(retained), size=limit, replace=False))
        retained = retained[keep]
    return retained.tolist(), text, n_total, n_missing


def _text_values(name: str, array: np.ndarray) -> tuple[np.ndarray, int]:
    """`(the strings of a text distribution, n_total)`; None (or NaN) is a missing value."""
    import numpy as np

    if array.ndim != 1:
        raise InputError(f"samples[{name!r}] must be one-dimensional, got shape {array.shape}")
    kept = []
    for value in array:
        if isinstance(value, str):
            kept.append(value)
        elif isinstance(value, bytes):
            raise InputError(f"samples[{name!r}] holds bytes {value[:20]!r}; decode them to str")
        elif not (value is None or (isinstance(value, float) and math.isnan(value))):
            raise InputError(f"samples[{name!r}] mixes text with {value!r}: a distribution is all numbers "
                             "(compared by PSI and KS) or all strings (compared by category); "
                             "convert the values to one kind")
    return np.asarray(kept, dtype=object), int(array.size)


def write_cohort_metrics(
    cohort_dir: str | Path,
    *,
    run_id: str,
    run_started_at: datetime,
    stage: str,
    view: str,
    target: str,
    symbol: str | None = None,
    cohort_id: str | None = None,
    metrics: Mapping[str, Any],
    samples: Mapping[str, Iterable[float] | Iterable[str]] | None = None,
    git_commit: str | None = None,
    config_hash: str | None = None,
    data_fingerprint: str | None = None,
    seed: int | None = None,
    good: bool | None = None,
    audit_valid: bool | None = None,
    written_at: datetime | None = None,
    config: Config | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write one cohort-run's sidecars into `cohort_dir`; return the paths written.

    Writes `<prefix>_metrics.parquet` and its JSON mirror, plus `<prefix>_samples.parquet`
    when samples are given. Nothing is written if any input is invalid, and nothing at
    all when the config has `enabled: false`. A folder holds one run's cohort: sidecars of
    another run id already there are an error, unless `overwrite` (a rerun replacing them).
    """
    import pyarrow as pa

    config = config or load_config()
    if not config.enabled:
        return []
    cohort_dir = Path(cohort_dir)
    cohort_id = cohort_id if cohort_id is not None else cohort_id_from_dir(cohort_dir)
    if cohort_id is None:
        raise InputError(
            f"cohort_id is not given and {cohort_dir} is not a 'cohort=<id>' folder; pass cohort_id="
        )
    identity = {
        "schema_version": SCHEMA_VERSION,
        "run_id": check_name("run_id", run_id),
        "run_started_at": utc_timestamp("run_started_at", run_started_at),
        "written_at": utc_timestamp(
            "written_at", written_at if written_at is not None else datetime.now(timezone.utc)
        ),
        "stage": check_name("stage", stage),
        "view": check_name("view", view),
        "target": check_name("target", target),
        "symbol": check_symbol(view, symbol),
        "cohort_id": check_name("cohort_id", cohort_id),
        "baseline_key": baseline_key(stage, view, target, symbol),
    }
    facts_identity = {
        **identity,
        "git_commit": _optional_text("git_commit", git_commit),
        "config_hash": _optional_text("config_hash", config_hash),
        "data_fingerprint": _optional_text("data_fingerprint", data_fingerprint),
        "seed": _optional_seed(seed),
        "good": _optional_bool("good", good),
        "audit_valid": _optional_bool("audit_valid", audit_valid),
    }
    if not isinstance(metrics, Mapping):
        raise InputError(f"metrics must be a mapping of name to value, got {type(metrics).__name__}")
    encoded = {check_name("metric name", k): encode_metric(k, v) for k, v in metrics.items()}
    if not encoded:
        raise InputError("metrics is empty; a cohort-run is recorded by at least one metric")

    metric_names = sorted(encoded)
    facts = pa.Table.from_pydict(
        {
            **{k: [v] * len(metric_names) for k, v in facts_identity.items()},
            "metric": metric_names,
            "kind": [encoded[m][0] for m in metric_names],
            "value": [encoded[m][1] for m in metric_names],
            "value_text": [encoded[m][2] for m in metric_names],
        },
        schema=metrics_schema(),
    )
    facts_path = cohort_dir / sidecar_name(config.prefix, "metrics", "parquet")
    if not overwrite:
        _check_same_run(facts_path, str(identity["run_id"]))
    outputs: list[tuple[Path, bytes]] = []
    if samples:
        table = _samples_table(identity, samples, config)
        outputs.append((cohort_dir / sidecar_name(config.prefix, "samples", "parquet"), parquet_bytes(table)))
    outputs.append((facts_path, parquet_bytes(facts)))
    outputs.append((cohort_dir / sidecar_name(config.prefix, "metrics", "json"), json_bytes(metrics_mirror(facts))))
    for path, data in outputs:
        write_atomic(path, data)
    return [path for path, _ in outputs]


def _check_same_run(facts_path: Path, run_id: str) -> None:
    """Refuse to replace the sidecar of another run: each run writes into a folder of its own
    (`RESULTS/<run>/REPRODUCIBILITY/…`), so one run never erases another's cohort."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fix = ("give each run a folder of its own (ReproducibilityTracker('RESULTS/<run folder>')), "
           "or pass overwrite=True to replace it")
    if not facts_path.is_file():
        return  # nothing there, or a folder in the way, which the write reports
    try:
        held = pq.read_table(facts_path, columns=["run_id"]).column("run_id").unique().to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{facts_path}: a sidecar is already there and cannot be read "
                         f"({str(exc).splitlines()[0]}); {fix}") from None
    others = sorted(str(r) for r in held if r != run_id)
    if others:
        raise InputError(f"{facts_path.parent}: holds this cohort for run {others[0]}, not {run_id}; "
                         f"writing would replace that run's sidecars: {fix}")


def _samples_table(identity: Mapping[str, Any], samples: Mapping[str, Iterable[Any]],
                   config: Config) -> pa.Table:
    import pyarrow as pa

    if not isinstance(samples, Mapping):
        raise InputError(f"samples must be a mapping of distribution name to values, got {type(samples).__name__}")
    limit = config.get("samples.max_per_distribution")
    salt = f"{identity['baseline_key']}\0{identity['run_id']}"
    columns: dict[str, list] = {
        k: [] for k in [*identity, "distribution", "n_total", "n_missing", "value", "value_text"]}
    for name in sorted(samples):
        values, text, n_total, n_missing = _sample_values(
            check_name("distribution name", name), samples[name], limit, salt)
        # A distribution without any value keeps one null row so its counts survive.
        rows = values or [None]
        for key, value in identity.items():
            columns[key].extend([value] * len(rows))
        columns["distribution"].extend([name] * len(rows))
        columns["n_total"].extend([n_total] * len(rows))
        columns["n_missing"].extend([n_missing] * len(rows))
        columns["value"].extend([None] * len(rows) if text else rows)
        columns["value_text"].extend(rows if text else [None] * len(rows))
    return pa.Table.from_pydict(columns, schema=samples_schema())
