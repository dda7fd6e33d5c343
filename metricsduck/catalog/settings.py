"""The settings tables every view reads its thresholds from, generated from the config.

`settings` holds one row per scalar config key (`key`, `value` as a number, `text`);
`settings_wide` is that table as one typed row, one column per key, which views cross-join
as `cfg`; `settings_metrics` holds the per-metric rules (critical metrics, overrides,
good directions). The columns come from the packaged config: a key added there is a column
here, with nothing written by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, load_config, scalar_settings

if TYPE_CHECKING:
    import duckdb

# Prefixes dropped from a key to name its column: `drift.tiers.relative.warn` is
# `relative_warn`, `baselines.rolling_window_k` `rolling_window_k`; `trend.window` keeps
# its section, `trend_window`.
_DROPPED = ("drift.tiers.", "drift.", "baselines.")


@dataclass(frozen=True)
class SettingColumn:
    key: str  # the config key (pairs as `<key>.warn` / `<key>.alert`)
    column: str  # its column in settings_wide
    type: str  # its DuckDB type


def column_name(key: str) -> str:
    for prefix in _DROPPED:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.replace(".", "_")


@functools.lru_cache(maxsize=1)
def settings_columns() -> tuple[SettingColumn, ...]:
    """The columns of `settings_wide`, one per scalar key of the packaged config, typed by
    its default value (booleans, whole numbers, numbers, text)."""
    columns = []
    for key, value in scalar_settings(load_config(None).values):
        if isinstance(value, bool):
            kind = "BOOLEAN"
        elif isinstance(value, int):
            kind = "BIGINT"
        elif isinstance(value, float):
            kind = "DOUBLE"
        else:
            kind = "VARCHAR"
        columns.append(SettingColumn(key, column_name(key), kind))
    names = [c.column for c in columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    assert not duplicated, f"config keys share a settings column: {duplicated}"
    return tuple(columns)


def settings_wide_sql() -> str:
    """`CREATE OR REPLACE VIEW settings_wide`: the `settings` rows as one typed row."""
    lines = []
    for c in settings_columns():
        if c.type == "BOOLEAN":
            expression = f"max(value) FILTER (WHERE key = '{c.key}') = 1"
        elif c.type == "VARCHAR":
            expression = f"max(text) FILTER (WHERE key = '{c.key}')"
        else:
            expression = f"CAST(max(value) FILTER (WHERE key = '{c.key}') AS {c.type})"
        lines.append(f"    {expression} AS {c.column}")
    return "CREATE OR REPLACE VIEW settings_wide AS\nSELECT\n" + ",\n".join(lines) + "\nFROM settings"


def fill_settings(con: duckdb.DuckDBPyConnection, config: Config, root: Path) -> None:
    """The `settings`, `settings_wide` and `settings_metrics` relations for `config`."""
    con.execute("CREATE OR REPLACE TABLE settings (key VARCHAR PRIMARY KEY, value DOUBLE, text VARCHAR)")
    rows = config.settings_rows() + [("root", None, str(root.resolve()))]
    _insert(con, "settings", rows)
    con.execute(settings_wide_sql())
    con.execute(
        "CREATE OR REPLACE TABLE settings_metrics (metric VARCHAR PRIMARY KEY, critical BOOLEAN, "
        "relative_warn DOUBLE, relative_alert DOUBLE, absolute_warn DOUBLE, absolute_alert DOUBLE, "
        "good_direction VARCHAR)"
    )
    _insert(con, "settings_metrics", config.metric_rows())


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """`rows` into `table` in one statement (executemany runs one per row)."""
    if rows:
        row = "(" + ", ".join("?" * len(rows[0])) + ")"
        con.execute(f"INSERT INTO {table} VALUES " + ", ".join([row] * len(rows)),
                    [value for values in rows for value in values])


def settings_values(config: Config, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of `keys` in `config` (pair halves `<key>.warn` / `.alert` included)."""
    flat = dict(scalar_settings(config.values))
    values: dict[str, Any] = {}
    for key in keys:
        values[key] = flat[key] if key in flat else config.get(key)
    return values
