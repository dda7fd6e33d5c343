"""The one renderer of rows for the CLI: table, JSON or CSV, to stdout or a file."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "json", "csv")
SUFFIXES = {".json": "json", ".csv": "csv"}  # the format an -o file's extension names


def output_format(fmt: str | None, output: str | None) -> str:
    """`--format` if given, else the format the extension of `-o` names, else table."""
    if fmt is not None:
        return fmt
    return SUFFIXES.get(Path(output).suffix.lower(), "table") if output else "table"


def check_output(output: str | None) -> str | None:
    """`-o FILE` whose folder exists (it is not created: a typo there would scatter files)."""
    if output is not None and not Path(output).parent.is_dir():
        from .errors import StorageError

        raise StorageError(f"{output}: the folder {Path(output).parent} does not exist; create it or write "
                           "somewhere else")
    return output


def _plain(value: Any) -> Any:
    """A JSON-ready value: ISO timestamps, finite floats, None for NaN."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    """A table cell: short floats, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    value = _plain(value)
    return value if isinstance(value, str) else json.dumps(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Rows as text in `fmt`. Zero rows still print a header / `[]`, never nothing."""
    if fmt == "json":
        records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _plain(v) for v in row])
        return buffer.getvalue()
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                                  for r in rows if r[i] is not None) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    return "\n".join(out) + "\n"


def emit(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str | None, output: str | None) -> None:
    """Render (in `output_format`) and write to stdout, or atomically to `output`."""
    text = render(columns, rows, output_format(fmt, output))
    if output:
        from .files import write_atomic

        write_atomic(Path(output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def emit_relation(relation: duckdb.DuckDBPyRelation, fmt: str | None, output: str | None,
                  table_columns: Sequence[str] | None = None) -> None:
    """Render a DuckDB relation (all of it) like any other rows; as a table, only
    `table_columns` if given (json and csv carry every column)."""
    if table_columns is not None and output_format(fmt, output) == "table":
        relation = relation.select(*table_columns)
    emit(relation.columns, relation.fetchall(), fmt, output)


def progress_reporter(label: str) -> Callable[[int, int], None]:
    """A `(done, total)` callback on stderr: click's progress bar (count, elapsed and ETA) on
    a terminal; elsewhere (a log, a pipe) at most a line at the start, half way and the end,
    with the elapsed time and (once it can be told from the pace) the time left."""
    import time

    import click

    tty = sys.stderr.isatty()
    started = time.monotonic()
    state: dict[str, Any] = {"last": -1, "bar": None}

    def report(done: int, total: int) -> None:
        if total <= 0:
            return
        if tty:
            bar = state["bar"]
            if bar is None:
                bar = state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True,
                                                       show_pos=True)
                bar.__enter__()
            bar.update(done - bar.pos)
            if done >= total:
                bar.__exit__(None, None, None)
                state["bar"] = None
            return
        now = time.monotonic()
        # the time left follows the pace since the first step, which also carries the start-up
        first_done, first_at = state.setdefault("first", (done, now))
        decile = 10 * done // total
        if decile != state["last"] and (decile % 5 == 0 or done >= total):
            state["last"] = decile
            pace = (now - first_at) / (done - first_done) if done > first_done else None
            left = f", about {pace * (total - done):.0f} s left" if pace is not None and done < total else ""
            sys.stderr.write(f"metricsduck: {label}: {done}/{total}, {now - started:.0f} s elapsed{left}\n")

    return report
