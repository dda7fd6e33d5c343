"""JSON renderings of the artifacts: readable shapes of the Parquet rows, with schema ids.

Renderers take plain row dicts and return JSON-ready documents; `files.json_bytes`
serialises them canonically. No wall-clock time goes in: same rows, same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


from .vocab import (
    DISTRIBUTION_KINDS,
    DRIFT_SCHEMA_ID,
    FINGERPRINT_FIELDS,
    ITEM_KINDS,
    METRICS_SCHEMA_ID,
    ROLLUP_STAGE_SCHEMA_ID,
    ROLLUP_VIEW_SCHEMA_ID,
    TIERS,
    TREND_SCHEMA_ID,
)

_IDENTITY = ("stage", "view", "target", "symbol", "baseline_key", "run_id", "run_started_at", "cohort_id")
_METRIC_FIELDS = (
    "kind", "status", "tier", "is_critical", "good_direction", "current_value", "baseline_value",
    "baseline_std", "delta", "rel_delta", "rel_delta_status", "z", "current_text", "baseline_text",
)
# a distribution's fields by its kind: numbers (PSI, KS, distances) or text (categories)
_DISTRIBUTION_FIELDS = {
    kind: ("kind", "status", "tier", "n", "m", "chi2", "chi2_p", "q_value", "distance_tier", *own)
    for kind, own in zip(DISTRIBUTION_KINDS, (
        ("psi", "psi_critical", "psi_significant", "ks_d", "ks_p", "ks_method", "wasserstein", "js_distance",
         "psi_tier", "ks_tier"),
        ("linf", "categories_new", "categories_gone"),
    ), strict=True)
}


def iso(value: Any) -> Any:
    """ISO 8601 in UTC with a Z for datetimes; anything else unchanged."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def metrics_mirror(facts: pa.Table) -> dict[str, Any]:
    """The readable JSON mirror of one metrics sidecar table (one cohort-run)."""
    rows = facts.to_pylist()
    first = rows[0]
    return {
        "schema": METRICS_SCHEMA_ID,
        "schema_version": first["schema_version"],
        "identity": {
            k: iso(first[k])
            for k in ("run_id", "run_started_at", "written_at", "stage", "view", "target",
                      "symbol", "cohort_id", "baseline_key")
        },
        "fingerprints": {k: first[k] for k in FINGERPRINT_FIELDS},
        "verdict": {"good": first["good"], "audit_valid": first["audit_valid"]},
        "metrics": {
            row["metric"]: {"kind": row["kind"], "value": row["value"], "value_text": row["value_text"]}
            for row in rows
        },
    }


def worst_tier(tiers: Iterable[str | None]) -> str | None:
    ranked = [TIERS.index(t) for t in tiers if t in TIERS]
    return TIERS[max(ranked)] if ranked else None


def drift_mirror(rows: list[Mapping[str, Any]], fingerprints: Mapping[str, Any]) -> dict[str, Any]:
    """The readable JSON of one cohort-run's drift rows (all baseline kinds and items)."""
    first = rows[0]
    baselines: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    distributions: dict[str, dict[str, Any]] = {}
    counts = {kind: {tier: 0 for tier in TIERS} for kind in ITEM_KINDS}
    for row in rows:
        kind = row["baseline_kind"]
        baselines.setdefault(kind, {
            "baseline_run_id": row["baseline_run_id"],
            "baseline_runs": row["baseline_runs"],
            "baseline_view": row["baseline_view"],
            "current_view": row["current_view"],
            "sanity_status": row["sanity_status"],
            "fingerprint_diff": row["fingerprint_diff"].split(",") if row["fingerprint_diff"] else [],
        })
        if row["tier"] in TIERS:
            counts[row["item_kind"]][row["tier"]] += 1
        if row["item_kind"] == "metric":
            metrics.setdefault(row["item"], {})[kind] = {f: row[f] for f in _METRIC_FIELDS}
        else:
            distributions.setdefault(row["item"], {})[kind] = {f: row[f] for f in _DISTRIBUTION_FIELDS[row["kind"]]}
    return {
        "schema": DRIFT_SCHEMA_ID,
        "identity": {key: iso(first[key]) for key in _IDENTITY},
        "fingerprints": dict(fingerprints),
        "baselines": baselines,
        "summary": {
            "worst_tier": worst_tier(row["tier"] for row in rows),
            "tier_counts": counts,
        },
        "metrics": metrics,
        "distributions": distributions,
    }


_TREND_FIELDS = (
    "n_runs", "slope", "slope_per_day", "intercept", "r2", "theil_sen_slope", "first_value",
    "last_value", "mean", "direction", "good_direction", "assessment",
)


def trend_mirror(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The readable JSON of one cohort-run's trends: one entry per metric."""
    first = rows[0]
    identity = ("stage", "view", "target", "symbol", "baseline_key", "run_id", "run_started_at")
    return {
        "schema": TREND_SCHEMA_ID,
        "identity": {key: iso(first[key]) for key in identity},
        "metrics": {row["metric"]: {f: row[f] for f in _TREND_FIELDS} for row in rows},
    }


def _rollup_node(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Measures of one level and key, grouped the way a person reads them."""
    node: dict[str, Any] = {}
    for row in rows:
        measure, metric, kind = row["measure"], row["metric"], row["baseline_kind"]
        if measure == "worst_item":
            node.setdefault("worst_items", []).append(
                {"place": int(row["value"]), "item": metric, "baseline_kind": kind, "detail": row["detail"]})
        elif measure.startswith("population_"):
            entry = node.setdefault("population_drift", {}).setdefault(metric, {})
            entry[measure[len("population_"):]] = row["value"]
            entry["tier"] = row["detail"]
        elif kind is not None:
            node.setdefault("tiers", {}).setdefault(kind, {})[measure] = row["value"]
        elif metric is not None:
            node.setdefault("metrics", {}).setdefault(metric, {})[measure] = row["value"]
        else:
            node.setdefault("counts", {})[measure] = row["value"]
    if "worst_items" in node:
        node["worst_items"].sort(key=lambda item: item["place"])
    return node


def view_rollup_mirror(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The readable JSON of one run x stage x view rollup, nested by target and symbol."""
    first = rows[0]
    levels: dict[str, dict[Any, list]] = {"view": {}, "target": {}, "symbol": {}}
    for row in rows:
        key = {"view": None, "target": row["target"], "symbol": row["symbol"]}[row["level"]]
        levels[row["level"]].setdefault(key, []).append(row)
    return {
        "schema": ROLLUP_VIEW_SCHEMA_ID,
        "identity": {key: iso(first[key]) for key in ("run_id", "run_started_at", "stage", "view")},
        "view": _rollup_node(levels["view"].get(None, [])),
        "targets": {t: _rollup_node(r) for t, r in levels["target"].items()},
        "symbols": {s: _rollup_node(r) for s, r in levels["symbol"].items()},
    }


def stage_rollup_mirror(entries: list[Mapping[str, Any]], prefix: str) -> dict[str, Any]:
    """The stage container: a reference to each view's rollup with its counts, no mixing."""
    first = entries[0]
    return {
        "schema": ROLLUP_STAGE_SCHEMA_ID,
        "identity": {key: iso(first[key]) for key in ("run_id", "run_started_at", "stage")},
        "views": {
            e["view"]: {
                "rollup": f"{e['view']}/{prefix}_rollup.json",
                "cohorts": e["cohorts"],
                "tier_counts": {"OK": e["tier_ok"], "WARN": e["tier_warn"], "ALERT": e["tier_alert"]},
                "worst_tier": e["worst_tier"],
            }
            for e in entries
        },
    }
