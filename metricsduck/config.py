"""YAML config → validated settings.

The packaged `config/safety.yaml` holds every default; a user file in the same shape
(`safety.telemetry`, or its alias `safety.metrics`) overrides it key by key. Unknown keys,
wrong types and impossible values raise `ConfigError` naming the key path. Keys beside
`safety.telemetry` belong to the pipeline and are left alone.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .layout import CACHE_DIR, CONFIG_FILE, check_name

SECTION_NAMES = ("telemetry", "metrics")
# drift's mappings of metric name to a rule: a user file adds to them metric by metric
PER_METRIC = ("overrides", "direction")
DEFAULT_CONFIG_TEXT = "safety.yaml"


# --- leaf validators: each returns the cleaned value or raises ConfigError(key) -----------

def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _int(minimum: int, maximum: int | None = None) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be a whole number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{key} must be at least {minimum}{upper}, got {value}")
        return value
    return check


def _number(low: float = 0.0, high: float = math.inf, open_low: bool = False,
            open_high: bool = False) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        too_low = value <= low if open_low else value < low
        too_high = value >= high if open_high else value > high
        if not math.isfinite(value) or too_low or too_high:
            lo = "(" if open_low else "["
            hi = ")" if open_high else "]"
            raise ConfigError(f"{key} must be in {lo}{low}, {high}{hi}, got {value}")
        return value
    return check


def _pair(key: str, value: Any) -> list[float]:
    """A `[warn, alert]` pair of non-negative numbers with warn ≤ alert."""
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{key} must be a list of two numbers [warn, alert], got {value!r}")
    warn, alert = (_number()(f"{key}[{i}]", v) for i, v in enumerate(value))
    if warn > alert:
        raise ConfigError(f"{key} is [{warn}, {alert}]: the WARN threshold must not exceed ALERT")
    return [warn, alert]


def _metric_name(key: str, value: Any) -> str:
    try:
        return check_name(key, value)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def _metric_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of metric names, got {value!r}")
    return sorted({_metric_name(f"{key}[{i}]", v) for i, v in enumerate(value)})


def _overrides(key: str, value: Any) -> dict[str, dict[str, list[float]]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of metric name to tiers, got {value!r}")
    out = {}
    for metric, tiers in value.items():
        where = f"{key}.{_metric_name(key, metric)}"
        out[metric] = _validate(tiers, {"relative": _pair, "absolute": _pair}, where)
        if not out[metric]:
            raise ConfigError(f"{where} must set relative and/or absolute")
    return out


def _directions(key: str, value: Any) -> dict[str, str]:
    """`<metric>: higher_is_better | lower_is_better | both`."""
    from .vocab import GOOD_DIRECTIONS

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of metric name to one of {', '.join(GOOD_DIRECTIONS)}, "
                          f"got {value!r}")
    out = {}
    for metric, direction in value.items():
        where = f"{key}.{_metric_name(key, metric)}"
        if direction not in GOOD_DIRECTIONS:
            raise ConfigError(f"{where} must be one of {', '.join(GOOD_DIRECTIONS)}, got {direction!r}")
        out[metric] = direction
    return out


_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", re.I)


def _size(key: str, value: Any) -> str:
    """`auto` or a size DuckDB reads (4GB, 512MB, 1.5GiB)."""
    if not isinstance(value, str) or not (value == "auto" or _SIZE.fullmatch(value.strip())):
        raise ConfigError(f"{key} must be a size such as 4GB or 512MB, or auto, got {value!r}")
    return value.strip()


def _prefix(key: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,39}", value):
        raise ConfigError(
            f"{key} must be letters, digits and underscores starting with a letter, got {value!r}"
        )
    return value


SPEC: dict[str, Any] = {
    "enabled": _bool,
    "baselines": {
        "previous_run": _bool,
        "rolling_window_k": _int(1, 1000),
        "last_good_run": _bool,
        "last_good_uses_audit": _bool,
    },
    "drift": {
        "psi_threshold": _number(),
        "psi_warn": _number(),
        "ks_threshold": _number(0, 1),
        "ks_warn": _number(0, 1),
        "ks_alpha": _number(0, 1, open_low=True),  # 1: any p < 1 is evidence enough
        "psi_alpha": _number(0, 1, open_low=True),
        "min_samples": _int(1),
        # ks_exact_p_of divides by C(n + m, n) as a double: finite up to n * m = 250,000
        "ks_exact_max": _int(0, 250_000),
        "fdr_q": _number(0, 1),  # 0: off
        # distances, tiered only where set (0: reported, not tiered)
        "wasserstein_warn": _number(),
        "wasserstein_threshold": _number(),
        "js_warn": _number(0, 1),
        "js_threshold": _number(0, 1),
        "categorical": {
            "warn": _number(0, 1),
            "threshold": _number(0, 1),
            "alpha": _number(0, 1, open_low=True),
        },
        "psi_bins": _int(2, 1000),
        "psi_epsilon": _number(0, 1, open_low=True, open_high=True),
        "tiers": {
            "relative": _pair,
            "absolute": _pair,
            "critical_relative": _pair,
            "critical_absolute": _pair,
        },
        "critical_metrics": _metric_list,
        "overrides": _overrides,
        "direction": _directions,
    },
    "trend": {
        "window": _int(2, 10000),
        "min_runs": _int(2, 10000),
        "min_r2": _number(0, 1),
        "min_rel_change": _number(),
    },
    "samples": {"max_per_distribution": _int(1)},
    "files": {"prefix": _prefix},
    "engine": {"memory_limit": _size, "temp_directory_size": _size},
}
# Sections that configure the process, not the views: no settings column of theirs.
NOT_SQL = ("engine",)


def _validate(raw: Any, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check `raw` against `spec` (only the keys present), returning cleaned values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{where}.{key}"
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise ConfigError(f"{path} is not a known key (known here: {known})")
        rule = spec[key]
        out[key] = _validate(value, rule, path) if isinstance(rule, dict) else rule(path, value)
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in PER_METRIC:
            merged[key] = _merge(merged[key], value)
        elif key in PER_METRIC:
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _section(document: Any, source: str) -> tuple[dict[str, Any], str]:
    """The `safety.telemetry` (or `safety.metrics`) mapping of a parsed YAML document."""
    if not isinstance(document, dict) or not isinstance(document.get("safety"), dict):
        raise ConfigError(f"{source}: no 'safety' mapping; expected safety.telemetry: {{...}}")
    present = [name for name in SECTION_NAMES if name in document["safety"]]
    if not present:
        raise ConfigError(f"{source}: no safety.telemetry (or safety.metrics) section")
    if len(present) > 1:
        raise ConfigError(f"{source}: both safety.telemetry and safety.metrics are set; keep one")
    where = f"safety.{present[0]}"
    section = document["safety"][present[0]]
    if section is None:
        return {}, where
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {section!r}")
    return section, where


@dataclass(frozen=True)
class Config:
    """Validated settings: `values` is the merged `safety.telemetry` mapping."""

    values: dict[str, Any]
    source: str = "<defaults>"

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def enabled(self) -> bool:
        return self.values["enabled"]

    @property
    def prefix(self) -> str:
        return self.values["files"]["prefix"]

    def settings_rows(self) -> list[tuple[str, float | None, str | None]]:
        """Scalar settings as `(key, value, text)` rows for the `settings` table.

        Booleans become 1/0 and `[warn, alert]` pairs become `<key>.warn` / `<key>.alert`,
        so SQL reads every threshold by name.
        """
        return sorted((key, None, value) if isinstance(value, str) else (key, float(value), None)
                      for key, value in scalar_settings(self.values))

    def metric_rows(self) -> list[tuple[str, bool, float | None, float | None, float | None, float | None,
                                        str | None]]:
        """Per-metric rules as `(metric, critical, rel_warn, rel_alert, abs_warn, abs_alert,
        good_direction)`."""
        drift = self.values["drift"]
        critical = set(drift["critical_metrics"])
        overrides, directions = drift["overrides"], drift["direction"]
        rows = []
        for metric in sorted(critical | set(overrides) | set(directions)):
            tiers = overrides.get(metric, {})
            rel = tiers.get("relative", [None, None])
            ab = tiers.get("absolute", [None, None])
            rows.append((metric, metric in critical, rel[0], rel[1], ab[0], ab[1], directions.get(metric)))
        return rows


def _flatten(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in PER_METRIC:
            yield from _flatten(value, f"{path}.")
        else:
            yield path, value


def scalar_settings(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """`(key, value)` of every scalar setting the views read, `[warn, alert]` pairs as
    `<key>.warn` and `<key>.alert`; the per-metric rules (critical metrics, overrides,
    directions) are not scalars, and the engine's limits are not the views'."""
    out: list[tuple[str, Any]] = []
    for key, value in _flatten(values):
        if key in ("drift.critical_metrics", *(f"drift.{k}" for k in PER_METRIC)) or key.split(".")[0] in NOT_SQL:
            continue
        if isinstance(value, list):
            out += [(f"{key}.warn", value[0]), (f"{key}.alert", value[1])]
        else:
            out.append((key, value))
    return out


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader, but reading `1e-4` as a number (YAML 1.2), as users write it."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def _read_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def _defaults() -> dict[str, Any]:
    text = (resources.files("metricsduck") / "config" / DEFAULT_CONFIG_TEXT).read_text("utf-8")
    section, where = _section(_read_yaml(text, "packaged safety.yaml"), "packaged safety.yaml")
    return _validate(section, SPEC, where)


def load_config(path: str | Path | None = None) -> Config:
    """Defaults overridden by the YAML file at `path` (if given), validated."""
    values = _defaults()
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from None
        section, where = _section(_read_yaml(text, str(path)), str(path))
        try:
            values = _merge(values, _validate(section, SPEC, where))
            _check_consistency(values, where)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        source = str(path)
    return Config(values, source)


def _check_consistency(values: Mapping[str, Any], where: str) -> None:
    drift, trend = values["drift"], values["trend"]
    pairs = [("psi_warn", "psi_threshold"), ("ks_warn", "ks_threshold")]
    # a distance tier that is off (0) on one side bounds nothing
    pairs += [(w, a) for w, a in (("wasserstein_warn", "wasserstein_threshold"), ("js_warn", "js_threshold"))
              if drift[w] > 0 and drift[a] > 0]
    bounds = [(drift[w], drift[a], w, a) for w, a in pairs]
    bounds.append((drift["categorical"]["warn"], drift["categorical"]["threshold"],
                   "categorical.warn", "categorical.threshold"))
    for warn_at, alert_at, warn, alert in bounds:
        if warn_at > alert_at:
            raise ConfigError(
                f"{where}.drift.{warn} ({warn_at}) is above {where}.drift.{alert} "
                f"({alert_at}); WARN must not exceed ALERT"
            )
    if trend["min_runs"] > trend["window"]:
        raise ConfigError(
            f"{where}.trend.min_runs ({trend['min_runs']}) is above {where}.trend.window "
            f"({trend['window']}); no trend could ever be computed"
        )


def resolve_config(root: str | Path | None, path: str | Path | None = None) -> Config:
    """The config a command uses: `path` if given, else the root's saved one, else defaults."""
    if path is None and root is not None:
        saved = Path(root) / CACHE_DIR / CONFIG_FILE
        if saved.is_file():
            path = saved
    return load_config(path)
