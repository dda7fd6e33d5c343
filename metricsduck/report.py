"""The drift report: one self-contained HTML page of a run (inline CSS and SVG, no scripts).

Every number on the page comes from the views (`runs`, `drift`, `baseline_summary`,
`psi_bins`, `distribution_values`, `facts`, `trends`); this module only arranges them and
draws them. Every name is escaped, nothing is fetched from anywhere (a Content-Security-
Policy says so to the browser as well), and the page carries no wall-clock time: the same
tree gives the same bytes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import arrow_table
from .errors import InputError
from .store import Store
from .vocab import BASELINE_KINDS

if TYPE_CHECKING:
    import duckdb

TOP_DEFAULT = 20
TIER_NAMES = {0: "OK", 1: "WARN", 2: "ALERT"}

# Worst first: tier, then the size of the change on the scale the default tiers share
# (PSI for distributions, |relative change| for metrics, else |change|), then names.
SEVERITY = "coalesce(psi, linf, abs(rel_delta), abs(delta))"
KIND_ORDER = "list_position(['previous_run', 'rolling', 'last_good_run'], baseline_kind)"


def esc(value: Any) -> str:
    """Text safe inside an element or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _tier(rank: int | None) -> str:
    return TIER_NAMES.get(rank, "none") if rank is not None else "none"


def _num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def _p(value: float | None) -> str:
    """A p-value: a p computed as 0 (below what the series or a double resolves) is shown as
    an upper bound, not as an impossible 0."""
    return "< 1e-16" if value == 0 else _num(value, 3)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return esc(value)


def _pill(tier: str, text: str | None = None) -> str:
    text = text if text is not None else ("no tier" if tier == "none" else tier)
    return f'<span class="tier tier-{esc(tier)}">{esc(text)}</span>'


# --------------------------------------------------------------------------- data


@dataclass
class Node:
    """One level of the drill-down with its counts (from one GROUPING SETS query)."""

    level: str
    name: str | None
    worst_rank: int | None
    counts: dict[str, int]
    rows: int
    children: dict[Any, Node] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)


def resolve_run(store: Store, run: str) -> tuple[Any, ...]:
    """`(run_id, run_started_at, cohort_runs, stages, ordinal, runs in tree)` of `run`
    ('latest' or a run id); an empty tree or an unknown run is an InputError."""
    runs = store.con.sql("SELECT run_id, run_started_at, cohort_runs, stages, ordinal FROM runs "
                     "ORDER BY ordinal").fetchall()
    if not runs:
        raise InputError(f"no runs in {store.root}: nothing to report (write sidecars first, "
                         "or try `metricsduck demo demo-tree`)")
    if run == "latest":
        return (*runs[-1], len(runs))
    for row in runs:
        if row[0] == run:
            return (*row, len(runs))
    raise InputError(f"run {run!r} is not in {store.root}; `metricsduck sql {store.root} "
                     "\"select * from runs\"` lists the runs")


def run_drift(store: Store, run_id: str) -> duckdb.DuckDBPyRelation:
    """The run's rows of the `drift` view, held in memory: a DuckDB relation that the
    helpers below query as `d`. Drift the cache does not hold is computed once, for this
    run only (`Store.compute_drift`).
    """
    store.compute_drift(run=run_id)
    rows = store.con.sql("SELECT * FROM drift WHERE run_id = $run", params={"run": run_id})
    return store.con.from_arrow(arrow_table(rows))


def _rows(drift: duckdb.DuckDBPyRelation, query: str) -> list[tuple[Any, ...]]:
    """The rows of a SELECT `query` over the run's drift rows, which it names `d`."""
    relation = drift.query("d", query)
    assert relation is not None  # None only for a statement that returns no rows at all
    return relation.fetchall()


def _tier_counts(drift: duckdb.DuckDBPyRelation) -> list[tuple[Any, ...]]:
    return _rows(
        drift, "SELECT baseline_kind, item_kind, "
        "count(*) FILTER (WHERE tier = 'OK'), count(*) FILTER (WHERE tier = 'WARN'), "
        "count(*) FILTER (WHERE tier = 'ALERT'), count(*) FILTER (WHERE tier IS NULL), count(*), "
        "max(tier_rank) "
        "FROM d GROUP BY baseline_kind, item_kind "
        f"ORDER BY {KIND_ORDER}, baseline_kind, item_kind")


# Statuses whose tier is OK on purpose (docs/design.md §5.1, §5.4): what the tiers held back.
HELD_BACK = (("IMPROVED", "improved"), ("INCONCLUSIVE", "inconclusive"), ("LOW_N", "too few values"))


def _held_back(drift: duckdb.DuckDBPyRelation) -> dict[str, int]:
    """Items (over every baseline kind) per status that keeps a changed item at tier OK."""
    return dict(_rows(drift, "SELECT status, count(DISTINCT (baseline_key, item_kind, item)) FROM d "
                             f"WHERE status IN ({', '.join(repr(s) for s, _ in HELD_BACK)}) GROUP BY status"))


def _sanity(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    """Cohort-runs x baseline kinds whose baseline is not a clean comparison."""
    return store.con.sql(
        "SELECT sanity_status, baseline_kind, coalesce(fingerprint_diff, ''), count(*) "
        "FROM baseline_summary WHERE run_id = $run AND sanity_status <> 'OK' "
        "GROUP BY sanity_status, baseline_kind, fingerprint_diff "
        f"ORDER BY sanity_status, {KIND_ORDER}, 3",
        params={"run": run_id}).fetchall()


def _tree(drift: duckdb.DuckDBPyRelation) -> Node:
    """The stage -> view -> target -> symbol hierarchy of the run's drift rows."""
    rows = _rows(
        drift, "SELECT stage, view, target, symbol, GROUPING(stage) = 0 AS has_stage, "
        "GROUPING(view) = 0 AS has_view, GROUPING(target) = 0 AS has_target, "
        "GROUPING(symbol) = 0 AS has_symbol, max(tier_rank), "
        "count(*) FILTER (WHERE tier = 'OK'), count(*) FILTER (WHERE tier = 'WARN'), "
        "count(*) FILTER (WHERE tier = 'ALERT'), count(*) FILTER (WHERE tier IS NULL), count(*) "
        "FROM d GROUP BY GROUPING SETS ((), (stage), (stage, view), (stage, view, target), "
        "(stage, view, target, symbol)) "
        "ORDER BY stage NULLS FIRST, view NULLS FIRST, target NULLS FIRST, symbol NULLS FIRST, "
        "has_stage, has_view, has_target, has_symbol")
    root: Node | None = None
    for row in rows:
        stage, view, target, symbol, has_stage, has_view, has_target, has_symbol, worst = row[:9]
        ok, warn, alert, none, total = row[9:]
        counts = {"OK": ok, "WARN": warn, "ALERT": alert, "none": none}
        if not has_stage:  # the grand total: the run itself
            root = Node("run", None, worst, counts, total)
            continue
        assert root is not None
        if not has_view:
            root.children[stage] = Node("stage", stage, worst, counts, total)
        elif not has_target:
            root.children[stage].children[view] = Node("view", view, worst, counts, total)
        elif not has_symbol:
            parent = root.children[stage].children[view]
            parent.children[target] = Node("target", target, worst, counts, total)
        elif symbol is not None:  # views without a symbol level end at the target
            parent = root.children[stage].children[view].children[target]
            parent.children[symbol] = Node("symbol", symbol, worst, counts, total)
    return root or Node("run", None, None, {"OK": 0, "WARN": 0, "ALERT": 0, "none": 0}, 0)


DRIFT_COLUMNS = (
    "stage", "view", "target", "symbol", "baseline_key", "baseline_kind", "baseline_run_id",
    "baseline_runs", "item_kind", "item", "kind", "tier", "tier_rank", "status", "current_value",
    "baseline_value", "delta", "rel_delta", "z", "current_text", "baseline_text", "n", "m", "psi",
    "psi_tier", "ks_d", "ks_p", "ks_tier", "chi2_p", "linf", "categories_new", "categories_gone",
    "sanity_status", "fingerprint_diff",
)


def _drifted(drift: duckdb.DuckDBPyRelation) -> list[dict[str, Any]]:
    """Every WARN or ALERT row of the run, worst first."""
    rows = _rows(
        drift, f"SELECT {', '.join(DRIFT_COLUMNS)} FROM d WHERE tier_rank >= 1 "
        f"ORDER BY tier_rank DESC, {SEVERITY} DESC NULLS LAST, baseline_key, item_kind, item, "
        f"{KIND_ORDER}")
    return [dict(zip(DRIFT_COLUMNS, row, strict=True)) for row in rows]


def _by_pair(relation: Any, columns: str, order: str, pairs: set[tuple[str, str, str]]) -> dict[tuple, list]:
    """The rows of `relation` (a pair helper of the store) for the given (baseline_key,
    baseline_kind, distribution) pairs: `columns` after those three, in `order` within a pair."""
    rows = relation.query("r", f"SELECT baseline_key, baseline_kind, distribution, {columns} FROM r "
                               f"ORDER BY baseline_key, baseline_kind, distribution, {order}").fetchall()
    found: dict[tuple, list] = {}
    for row in rows:
        if row[:3] in pairs:
            found.setdefault(row[:3], []).append(row[3:])
    return found


def _psi_bins(store: Store, run_id: str, pairs: set[tuple[str, str, str]]) -> dict[tuple, list]:
    """PSI bins of the given (baseline_key, baseline_kind, distribution) pairs of the run."""
    if not pairs:
        return {}
    return _by_pair(store.psi_bins(run=run_id), "bin, lower_edge, upper_edge, baseline_share, current_share, "
                    "contribution", "bin", pairs)


def _category_shares(store: Store, run_id: str, pairs: set[tuple[str, str, str]]) -> dict[tuple, list]:
    """`(category, baseline share, current share)` of the given pairs of the run, in order."""
    if not pairs:
        return {}
    return _by_pair(store.category_shares(run=run_id), "category, baseline_share, current_share", "category",
                    pairs)


def _ecdf(store: Store, run_id: str, key: str, kind: str, distribution: str) -> dict[str, list]:
    """Each side's empirical CDF (right-continuous, ties counted) from the compared samples."""
    rows = store.ecdf(run=run_id, baseline_key=key, baseline=kind, distribution=distribution).query(
        "e", "SELECT value, current_count, baseline_count, current_cdf, baseline_cdf FROM e "
        "ORDER BY value").fetchall()
    sides: dict[str, list] = {"baseline": [], "current": []}
    for value, current_count, baseline_count, current_cdf, baseline_cdf in rows:
        # a step where that side has values, as the view of one side alone would give
        if current_count:
            sides["current"].append((value, current_cdf))
        if baseline_count:
            sides["baseline"].append((value, baseline_cdf))
    return sides


def _series(store: Store, run_id: str, pairs: set[tuple[str, str]]) -> dict[tuple, list]:
    """The last trend.window finite values of each (baseline_key, metric) up to this run."""
    if not pairs:
        return {}
    rows = store.con.sql(
        "WITH points AS ("
        "  SELECT f.baseline_key, f.metric, cr.ordinal, f.value, row_number() OVER ("
        "    PARTITION BY f.baseline_key, f.metric ORDER BY cr.ordinal DESC) AS back "
        "  FROM facts AS f "
        "  JOIN cohort_runs AS cr ON cr.baseline_key = f.baseline_key AND cr.run_id = f.run_id "
        "  JOIN cohort_runs AS cur ON cur.baseline_key = f.baseline_key AND cur.run_id = $run "
        "  WHERE f.kind IN ('number', 'bool') AND f.value IS NOT NULL AND cr.ordinal <= cur.ordinal "
        "  AND f.metric IN (SELECT unnest($metrics))) "
        "SELECT baseline_key, metric, value FROM points, settings_wide AS cfg "
        "WHERE back <= cfg.trend_window ORDER BY baseline_key, metric, ordinal",
        params={"run": run_id, "metrics": sorted({p[1] for p in pairs})}).fetchall()
    found: dict[tuple, list] = {}
    for key, metric, value in rows:
        if (key, metric) in pairs:
            found.setdefault((key, metric), []).append(value)
    return found


TREND_COLUMNS = ("stage", "view", "target", "symbol", "baseline_key", "metric", "n_runs", "slope",
                 "intercept", "r2", "first_value", "last_value", "mean", "direction")


def _trends(store: Store, run_id: str) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The run's trends that are not flat, and how many trends go each way."""
    trends = store.trends(run=run_id)
    rows = trends.query(
        "t", f"SELECT {', '.join(TREND_COLUMNS)} FROM t WHERE direction <> 'flat' "
        "ORDER BY direction, abs(slope) * (n_runs - 1) / nullif(abs(mean), 0) DESC NULLS LAST, "
        "baseline_key, metric").fetchall()
    counts = trends.query("t", "SELECT direction, count(*) FROM t GROUP BY direction ORDER BY direction").fetchall()
    return [dict(zip(TREND_COLUMNS, row, strict=True)) for row in rows], counts


# --------------------------------------------------------------------------- drawing


def _f(value: float) -> str:
    """An SVG coordinate: one decimal, no '-0.0', so the same numbers give the same bytes."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _sparkline(values: Sequence[float], fit: tuple[float, float] | None = None,
               width: int = 140, height: int = 34, label: str = "") -> str:
    """A line of `values` (oldest left); `fit` = (intercept, slope) over x = 0, 1, 2, ..."""
    n = len(values)
    if n == 0:
        return ""
    ends = [fit[0], fit[0] + fit[1] * (n - 1)] if fit and n > 1 else []
    lo, hi = min([*values, *ends]), max([*values, *ends])
    span = hi - lo or 1.0
    pad = 4

    def x(i: float) -> float:
        return pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * ((v - lo) / span if hi > lo else 0.5)

    body = []
    if ends:
        body.append(f'<line class="fit" x1="{_f(x(0))}" y1="{_f(y(ends[0]))}" '
                    f'x2="{_f(x(n - 1))}" y2="{_f(y(ends[1]))}"/>')
    points = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(values))
    body.append(f'<polyline class="spark-line" points="{points}"/>')
    body.append(f'<circle class="spark-last" cx="{_f(x(n - 1))}" cy="{_f(y(values[-1]))}" r="2.5"/>')
    title = f"<title>{esc(label)}{': ' if label else ''}{' → '.join(_num(v) for v in values)}</title>"
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img">{title}{"".join(body)}</svg>')


CHART_W, CHART_H = 380, 180
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 14, 34


def _psi_chart(bins: Sequence[tuple[Any, ...]], label: str) -> str:
    """Bars of each bin's PSI contribution; darker where the current share grew."""
    plot_w, plot_h = CHART_W - LEFT - RIGHT, CHART_H - TOP - BOTTOM
    top = max((b[5] or 0.0) for b in bins) if bins else 0.0
    top = top if top > 0 else 1.0
    slot = plot_w / max(len(bins), 1)
    step = max(1, math.ceil(len(bins) / 12))  # at most a dozen tick labels
    body = [f'<text class="chart-title" x="{LEFT}" y="10">PSI contribution per bin</text>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{_num(top, 3)}</text>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for i, (bin_no, lower, upper, base_share, cur_share, contribution) in enumerate(bins):
        h = plot_h * max(contribution or 0.0, 0.0) / top
        grew = (cur_share or 0.0) > (base_share or 0.0)
        x0 = LEFT + i * slot + slot * 0.15
        low = _num(lower) if lower is not None else "−∞"
        bounds = f"({low}, {_num(upper) if upper is not None else '+∞'}]"
        body.append(
            f'<rect class="psi-bar {"grew" if grew else "shrank"}" x="{_f(x0)}" y="{_f(TOP + plot_h - h)}" '
            f'width="{_f(slot * 0.7)}" height="{_f(h)}"><title>bin {bin_no} {bounds}: baseline '
            f'{_num(base_share, 3)}, current {_num(cur_share, 3)}, contribution {_num(contribution)}'
            f'</title></rect>')
        if i % step == 0:
            body.append(f'<text class="tick" x="{_f(LEFT + (i + 0.5) * slot)}" y="{TOP + plot_h + 12}" '
                        f'text-anchor="middle">{bin_no}</text>')
    body.append(f'<text class="tick" x="{LEFT + plot_w / 2:.1f}" y="{CHART_H - 4}" text-anchor="middle">'
                'bin (baseline quantiles) · dark: current share grew</text>')
    return (f'<svg class="psi-chart" width="{CHART_W}" height="{CHART_H}" '
            f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{esc(label)}">{"".join(body)}</svg>')


def _category_chart(shares: Sequence[tuple[str, float, float]], label: str) -> str:
    """Each category's share, baseline and current bars side by side."""
    plot_w, plot_h = CHART_W - LEFT - RIGHT, CHART_H - TOP - BOTTOM
    top = max([max(b, c) for _, b, c in shares] or [1.0]) or 1.0
    slot = plot_w / max(len(shares), 1)
    body = [f'<text class="chart-title" x="{LEFT}" y="10">Share per category</text>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{_num(top, 3)}</text>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for i, (category, base_share, cur_share) in enumerate(shares):
        for j, (side, share) in enumerate((("shrank", base_share), ("grew", cur_share))):
            h = plot_h * share / top
            x0 = LEFT + i * slot + slot * (0.1 + 0.4 * j)
            body.append(
                f'<rect class="psi-bar {side}" x="{_f(x0)}" y="{_f(TOP + plot_h - h)}" width="{_f(slot * 0.4)}" '
                f'height="{_f(h)}"><title>{esc(category)}: {"current" if j else "baseline"} '
                f'{_num(share, 3)}</title></rect>')
        body.append(f'<text class="tick" x="{_f(LEFT + (i + 0.5) * slot)}" y="{TOP + plot_h + 12}" '
                    f'text-anchor="middle">{esc(category[:12])}</text>')
    body.append(f'<text class="tick" x="{LEFT + plot_w / 2:.1f}" y="{CHART_H - 4}" text-anchor="middle">'
                'light: baseline · dark: current</text>')
    return (f'<svg class="category-chart" width="{CHART_W}" height="{CHART_H}" '
            f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{esc(label)}">{"".join(body)}</svg>')


def _ecdf_chart(sides: dict[str, list], label: str) -> str:
    """The two empirical CDFs as step lines: current solid, baseline dashed."""
    plot_w, plot_h = CHART_W - LEFT - RIGHT, CHART_H - TOP - BOTTOM
    values = [v for points in sides.values() for v, _ in points]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5

    def x(v: float) -> float:
        return LEFT + plot_w * (v - lo) / (hi - lo)

    def y(p: float) -> float:
        return TOP + plot_h * (1 - p)

    body = [f'<text class="chart-title" x="{LEFT}" y="10">Empirical CDFs</text>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">1</text>',
            f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
            f'<text class="tick" x="{LEFT}" y="{TOP + plot_h + 12}" text-anchor="start">{_num(lo)}</text>',
            f'<text class="tick" x="{LEFT + plot_w}" y="{TOP + plot_h + 12}" '
            f'text-anchor="end">{_num(hi)}</text>']
    for side in ("baseline", "current"):
        points = sides.get(side) or []
        if not points:
            continue
        # one vertex per pixel column (the highest step in it) keeps big samples small
        steps: list[tuple[str, str]] = []
        for value, p in points:
            px, py = _f(x(value)), _f(y(p))
            if steps and steps[-1][0] == px:
                steps[-1] = (px, py)
            else:
                steps.append((px, py))
        d = [f"M{_f(LEFT)},{_f(y(0))}"] + [f"H{px}V{py}" for px, py in steps] + [f"H{_f(LEFT + plot_w)}"]
        body.append(f'<path class="ecdf-{side}" d="{"".join(d)}"/>')
    legend_y = CHART_H - 6
    body.append(f'<line class="ecdf-current" x1="{LEFT}" y1="{legend_y - 4}" x2="{LEFT + 18}" '
                f'y2="{legend_y - 4}"/>'
                f'<text class="tick" x="{LEFT + 22}" y="{legend_y}">current</text>'
                f'<line class="ecdf-baseline" x1="{LEFT + 80}" y1="{legend_y - 4}" x2="{LEFT + 98}" '
                f'y2="{legend_y - 4}"/><text class="tick" x="{LEFT + 102}" y="{legend_y}">baseline</text>')
    return (f'<svg class="ecdf-chart" width="{CHART_W}" height="{CHART_H}" '
            f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{esc(label)}">{"".join(body)}</svg>')


# --------------------------------------------------------------------------- page

CSS = """
:root{--ok:#1e8e3e;--warn:#e37400;--alert:#d93025;--none:#9aa0a6;--ink:#202124;--muted:#5f6368;
--line:#dadce0;--bg:#f8f9fa;--accent:#1a73e8}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff;max-width:1400px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;
border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 8px}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12.5px}
.name{overflow-wrap:break-word}
table{border-collapse:collapse;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12.5px;color:var(--muted)}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.tier{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;white-space:nowrap;line-height:18px}
.tier-OK{background:var(--ok)}.tier-WARN{background:var(--warn)}.tier-ALERT{background:var(--alert)}
.tier-none{background:var(--none)}
.light{display:inline-block;width:12px;height:12px;border-radius:50%;vertical-align:-1px;
margin-right:6px;box-shadow:inset 0 0 0 1px rgba(0,0,0,.15)}
.light.tier-OK{background:var(--ok)}.light.tier-WARN{background:var(--warn)}
.light.tier-ALERT{background:var(--alert)}.light.tier-none{background:var(--none)}
td.cnt-ALERT{color:var(--alert);font-weight:600}td.cnt-WARN{color:var(--warn);font-weight:600}
td.zero{color:var(--none)}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0 4px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:150px;background:var(--bg)}
.card .k{font-size:12px;color:var(--muted)}.card .v{font-size:18px;font-weight:600;overflow-wrap:anywhere}
details.node{margin:2px 0 2px 18px}details.node>summary{cursor:pointer;padding:2px 0}
details.node.lvl-stage{margin-left:0}
summary .lvl{color:var(--muted);font-size:12px;margin-right:4px}
summary .counts{color:var(--muted);font-size:12px;margin-left:8px}
.counts b.a{color:var(--alert)}.counts b.w{color:var(--warn)}
table.items{margin:4px 0 8px 36px;font-size:13px}table.items td.name{min-width:170px}
p.quiet{margin:2px 0 6px 36px;color:var(--muted);font-size:12.5px}
table.worst td{font-size:13px}
.badge{display:inline-block;padding:0 6px;border-radius:4px;background:#fce8e6;color:#a50e0e;
font-size:11.5px}
.also{color:var(--muted);font-size:12px}
figure.dist{border:1px solid var(--line);border-radius:8px;margin:10px 0;padding:10px 14px}
figure.dist figcaption{margin-bottom:6px}
.charts{display:flex;gap:16px;flex-wrap:wrap}
svg text{font:10.5px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--muted)}
svg text.chart-title{font-weight:600;fill:var(--ink)}
.axis{stroke:#bdc1c6;stroke-width:1}
.psi-bar.grew{fill:#1a73e8}.psi-bar.shrank{fill:#a8c7fa}
.ecdf-current{fill:none;stroke:#1a73e8;stroke-width:1.8}
.ecdf-baseline{fill:none;stroke:#5f6368;stroke-width:1.5;stroke-dasharray:4 3}
.spark-line{fill:none;stroke:#1a73e8;stroke-width:1.5}.spark-last{fill:#1a73e8}
.fit{stroke:#d93025;stroke-width:1;stroke-dasharray:3 2}
footer{margin-top:32px;color:var(--muted);font-size:12px}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _where(row: dict[str, Any]) -> str:
    parts = [row["stage"], row["view"], row["target"]]
    parts += [row["symbol"]] if row["symbol"] is not None else []
    return " / ".join(f'<span class="name">{esc(p)}</span>' for p in parts)


def _change(row: dict[str, Any]) -> str:
    """The row's main number(s) as text: the change of a metric, PSI and KS of a distribution."""
    if row["kind"] == "categorical":
        moved = [f"new: {esc(', '.join(row['categories_new']))}"] if row["categories_new"] else []
        moved += [f"gone: {esc(', '.join(row['categories_gone']))}"] if row["categories_gone"] else []
        return (f"largest share change {_num(row['linf'], 3)}, χ² p {_p(row['chi2_p'])}"
                + "".join(f" · {m}" for m in moved) + f" · n {_num(row['n'])}, m {_num(row['m'])}")
    if row["item_kind"] == "distribution":
        return (f"PSI {_num(row['psi'])} ({esc(row['psi_tier'])}) · KS D {_num(row['ks_d'])}, "
                f"p {_p(row['ks_p'])} ({esc(row['ks_tier'])}) · n {_num(row['n'])}, m {_num(row['m'])}")
    if row["current_text"] is not None or row["baseline_text"] is not None:
        current = row["current_text"] if row["current_text"] is not None else _num(row["current_value"])
        base = row["baseline_text"] if row["baseline_text"] is not None else _num(row["baseline_value"])
        return f"{esc(base)} → {esc(current)}"
    text = f"{_num(row['baseline_value'])} → {_num(row['current_value'])}"
    if row["rel_delta"] is not None:
        text += f" ({_pct(row['rel_delta'])})"
    elif row["delta"] is not None:
        text += f" (Δ {_num(row['delta'])})"
    if row["z"] is not None:
        text += f", z {_num(row['z'], 3)}"
    return text


def _baseline(row: dict[str, Any]) -> str:
    if row["baseline_kind"] == "rolling":
        return f"rolling ({_num(row['baseline_runs'])} runs)"
    return f"{esc(row['baseline_kind'])} <span class=\"mono\">{esc(row['baseline_run_id'])}</span>"


def _sanity_badge(row: dict[str, Any]) -> str:
    if row["sanity_status"] in (None, "OK"):
        return ""
    diff = f": {row['fingerprint_diff']}" if row["fingerprint_diff"] else ""
    return f' <span class="badge">{esc(row["sanity_status"])}{esc(diff)}</span>'


def _counts(counts: dict[str, int]) -> str:
    parts = []
    if counts["ALERT"]:
        parts.append(f'<b class="a">{counts["ALERT"]} ALERT</b>')
    if counts["WARN"]:
        parts.append(f'<b class="w">{counts["WARN"]} WARN</b>')
    parts.append(f"{counts['OK']} OK")
    if counts["none"]:
        parts.append(f"{counts['none']} no tier")
    return " · ".join(parts)


def _items_table(items: list[dict[str, Any]]) -> str:
    """The WARN/ALERT items of one cohort-run, one row per item, one column per baseline kind."""
    by_item: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in items:
        by_item.setdefault((row["item_kind"], row["item"]), {})[row["baseline_kind"]] = row
    head = "".join(f"<th>{esc(k)}</th>" for k in BASELINE_KINDS)
    out = [f'<table class="items"><tr><th>item</th><th>kind</th>{head}</tr>']
    for (item_kind, item), kinds in sorted(by_item.items(), key=lambda kv: (
            -max(r["tier_rank"] for r in kv[1].values()), kv[0])):
        cells = []
        for kind in BASELINE_KINDS:
            found = kinds.get(kind)
            cells.append(f"<td>{_pill(found['tier'])} {_change(found)}</td>" if found else '<td class="zero">–</td>')
        # a distribution says whether it holds numbers or categories
        label = item_kind if item_kind == "metric" else next(iter(kinds.values()))["kind"]
        out.append(f'<tr class="item-row"><td class="name">{esc(item)}</td><td>{esc(label)}</td>'
                   f'{"".join(cells)}</tr>')
    out.append("</table>")
    return "".join(out)


def _worst_first(nodes: Iterable[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: (-(n.worst_rank if n.worst_rank is not None else -1), n.name))


def _node_html(node: Node) -> str:
    worst = _tier(node.worst_rank)
    # open the stage and view levels, and everything on the way to an ALERT
    opened = node.level in ("stage", "view") or worst == "ALERT"
    parts = [f'<details class="node lvl-{node.level}" data-level="{node.level}" data-worst="{worst}"'
             f'{" open" if opened else ""}><summary><span class="light tier-{worst}" title="{worst}"></span>'
             f'<span class="lvl">{node.level}</span><span class="name">{esc(node.name)}</span>'
             f'<span class="counts">{_counts(node.counts)}</span></summary>']
    if node.items:
        parts.append(_items_table(node.items))
    elif not node.children:
        parts.append(f'<p class="quiet">no WARN or ALERT among its {node.rows} drift rows</p>')
    for child in _worst_first(node.children.values()):
        parts.append(_node_html(child))
    parts.append("</details>")
    return "".join(parts)


def _summary_html(run: tuple[Any, ...], tree: Node, counts: list[tuple[Any, ...]],
                  sanity: list[tuple[Any, ...]], trend_counts: list[tuple[Any, ...]],
                  bad_files: int, held: dict[str, int]) -> str:
    run_id, started, cohort_runs, stages, ordinal, total_runs = run
    worst = _tier(tree.worst_rank)
    mismatches = sum(c for status, _, _, c in sanity if status == "FINGERPRINT_MISMATCH")
    trends = ", ".join(f"{c} {esc(d)}" for d, c in trend_counts) or "none yet"
    cards = [("Run", f'<span class="mono">{esc(run_id)}</span>'), ("Started at", _when(started)),
             ("Run of tree", f"{ordinal} of {total_runs}"), ("Cohort-runs", str(cohort_runs)),
             ("Stages", str(stages)), ("Worst tier", _pill(worst)),
             ("Fingerprint mismatches", str(mismatches)), ("Trends", trends),
             ("Skipped files", str(bad_files)),
             ("Tier OK on purpose (items)", ", ".join(f"{held.get(s, 0)} {label}" for s, label in HELD_BACK))]
    out = ['<section id="summary"><h2>Run summary</h2><div class="cards">']
    out += [f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in cards]
    out.append('</div><h3>Drift rows per tier and baseline kind</h3><table class="tier-counts"><tr>'
               '<th>baseline kind</th><th>item kind</th><th class="n">ALERT</th><th class="n">WARN</th>'
               '<th class="n">OK</th><th class="n">no tier</th><th class="n">rows</th><th>worst</th></tr>')
    for kind, item_kind, ok, warn, alert, none, total, rank in counts:
        def cell(value: int, tier: str) -> str:
            return f'<td class="n {"cnt-" + tier if value else "zero"}">{value}</td>'
        out.append(f'<tr class="count-row" data-baseline-kind="{esc(kind)}" '
                   f'data-item-kind="{esc(item_kind)}">'
                   f"<td>{esc(kind)}</td><td>{esc(item_kind)}</td>{cell(alert, 'ALERT')}{cell(warn, 'WARN')}"
                   f"{cell(ok, 'OK')}{cell(none, 'none')}<td class=\"n\">{total}</td>"
                   f"<td>{_pill(_tier(rank))}</td></tr>")
    out.append("</table>")
    if sanity:
        out.append('<h3>Baselines that are not a clean comparison</h3><table class="sanity"><tr>'
                   '<th>sanity</th><th>baseline kind</th><th>fields that differ</th>'
                   '<th class="n">cohort-runs</th></tr>')
        out += [f'<tr><td>{esc(s)}</td><td>{esc(k)}</td><td>{esc(d)}</td><td class="n">{c}</td></tr>'
                for s, k, d, c in sanity]
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def _worst_html(worst: list[dict[str, Any]], also: dict[tuple, list[str]], series: dict[tuple, list],
                drifted_items: int, drifted_rows: int) -> str:
    out = ['<section id="worst"><h2>Worst drifts</h2>']
    if not worst:
        out.append('<p class="sub">No WARN or ALERT drift in this run.</p></section>')
        return "".join(out)
    out.append(f'<p class="sub">The {len(worst)} worst of the run\'s {drifted_items} drifted items '
               f'({drifted_rows} WARN/ALERT rows over every baseline kind), each against its worst '
               'baseline kind; ordered by tier, then PSI, largest share change or |relative change|.</p>'
               '<table class="worst"><tr><th>#</th><th>tier</th><th>where</th><th>item</th><th>baseline</th>'
               '<th>change</th><th>history</th><th>also</th></tr>')
    for place, row in enumerate(worst, 1):
        key = (row["baseline_key"], row["item_kind"], row["item"])
        history = series.get((row["baseline_key"], row["item"])) if row["item_kind"] == "metric" else None
        spark = _sparkline(history, label=row["item"]) if history else ""
        if row["item_kind"] == "distribution":
            spark = f'<a href="#dist-{place}">charts ↓</a>'
        out.append(
            f'<tr class="drift-row" data-tier="{esc(row["tier"])}"><td class="n">{place}</td>'
            f'<td>{_pill(row["tier"])}</td><td>{_where(row)}</td>'
            f'<td><span class="name item">{esc(row["item"])}</span> <span class="also">{esc(row["item_kind"])}'
            f' · {esc(row["status"])}</span></td><td>{_baseline(row)}{_sanity_badge(row)}</td>'
            f'<td>{_change(row)}</td><td>{spark}</td>'
            f'<td class="also">{"<br>".join(also.get(key, []))}</td></tr>')
    out.append("</table></section>")
    return "".join(out)


def _distributions_html(worst: list[dict[str, Any]], bins: dict[tuple, list],
                        ecdfs: dict[tuple, dict[str, list]], shares: dict[tuple, list]) -> str:
    dists = [(place, row) for place, row in enumerate(worst, 1) if row["item_kind"] == "distribution"]
    if not dists:
        return ""
    out = ['<section id="distributions"><h2>Distributions behind the worst drifts</h2>']
    for place, row in dists:
        pair = (row["baseline_key"], row["baseline_kind"], row["item"])
        label = f"{row['item']} at {row['baseline_key']} vs {row['baseline_kind']}"
        if row["kind"] == "categorical":
            charts = _category_chart(shares.get(pair, []), "Category shares of " + label)
        else:
            charts = (_psi_chart(bins.get(pair, []), "PSI bins of " + label)
                      + _ecdf_chart(ecdfs.get(pair, {}), "CDFs of " + label))
        out.append(
            f'<figure class="dist" id="dist-{place}" data-baseline-key="{esc(row["baseline_key"])}" '
            f'data-baseline-kind="{esc(row["baseline_kind"])}" data-distribution="{esc(row["item"])}" '
            f'data-kind="{esc(row["kind"])}">'
            f'<figcaption>{place}. {_pill(row["tier"])} <b class="name">{esc(row["item"])}</b> · {_where(row)} · '
            f'{_baseline(row)}<br><span class="also">{_change(row)}</span></figcaption><div class="charts">'
            f'{charts}</div></figure>')
    out.append("</section>")
    return "".join(out)


def _trends_html(trends: list[dict[str, Any]], series: dict[tuple, list]) -> str:
    out = ['<section id="trends"><h2>Trends</h2>']
    if not trends:
        out.append('<p class="sub">No metric trends up or down as of this run.</p></section>')
        return "".join(out)
    out.append('<p class="sub">Metrics whose trend over the last runs is not flat; the dashed line is '
               'the OLS fit.</p><table class="trends"><tr><th>direction</th><th>where</th><th>metric</th>'
               '<th>sparkline</th><th class="n">runs</th><th class="n">first</th><th class="n">last</th>'
               '<th class="n">slope / run</th><th class="n">r²</th></tr>')
    for row in trends:
        values = series.get((row["baseline_key"], row["metric"]), [])
        # the fit's x counts from the start of the same window the values come from
        fit = (row["intercept"], row["slope"]) if len(values) == row["n_runs"] else None
        out.append(
            f'<tr class="trend-row" data-direction="{esc(row["direction"])}"><td>{esc(row["direction"])}</td>'
            f'<td>{_where(row)}</td><td class="name">{esc(row["metric"])}</td>'
            f'<td>{_sparkline(values, fit, width=180, height=40, label=row["metric"])}</td>'
            f'<td class="n">{row["n_runs"]}</td><td class="n">{_num(row["first_value"])}</td>'
            f'<td class="n">{_num(row["last_value"])}</td><td class="n">{_num(row["slope"], 3)}</td>'
            f'<td class="n">{_num(row["r2"], 3)}</td></tr>')
    out.append("</table></section>")
    return "".join(out)


def render_report(store: Store, run: str = "latest", *, top: int = TOP_DEFAULT) -> str:
    """The HTML drift report of `run` ('latest' or a run id): summary, drill-down, the `top`
    worst drifted items (with PSI bins and CDFs of distributions) and the non-flat trends."""
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    info = resolve_run(store, run)
    run_id = info[0]
    drift = run_drift(store, run_id)
    tree = _tree(drift)
    drifted = _drifted(drift)
    for row in drifted:  # each cohort's WARN/ALERT items, shown at its leaf of the drill-down
        node = tree.children[row["stage"]].children[row["view"]].children[row["target"]]
        if row["symbol"] is not None:
            node = node.children[row["symbol"]]
        node.items.append(row)

    # worst items: the first (worst) row of each item; its other WARN/ALERT kinds listed beside
    worst: list[dict[str, Any]] = []
    also: dict[tuple, list[str]] = {}
    for row in drifted:
        key = (row["baseline_key"], row["item_kind"], row["item"])
        if key in also:
            also[key].append(f"{esc(row['tier'])} vs {esc(row['baseline_kind'])}")
        else:
            also[key] = []
            if len(worst) < top:
                worst.append(row)
    drifted_items = len(also)

    pairs = {(r["baseline_key"], r["baseline_kind"], r["item"])
             for r in worst if r["item_kind"] == "distribution" and r["kind"] != "categorical"}
    categorical = {(r["baseline_key"], r["baseline_kind"], r["item"]) for r in worst if r["kind"] == "categorical"}
    bins = _psi_bins(store, run_id, pairs)
    ecdfs = {pair: _ecdf(store, run_id, *pair) for pair in sorted(pairs)}
    shares = _category_shares(store, run_id, categorical)
    trends, trend_counts = _trends(store, run_id)
    metrics = {(r["baseline_key"], r["item"]) for r in worst if r["item_kind"] == "metric"}
    series = _series(store, run_id, metrics | {(t["baseline_key"], t["metric"]) for t in trends})

    body = [
        '<header><h1>Drift report</h1><p class="sub">metricsduck · run '
        f'<span class="mono">{esc(run_id)}</span> · started {_when(info[1])}</p></header>',
        _summary_html(info, tree, _tier_counts(drift), _sanity(store, run_id), trend_counts,
                      len(store.bad_files()), _held_back(drift)),
        '<section id="drilldown"><h2>Stage → view → target → symbol</h2><p class="sub">Worst tier of each '
        "node over every baseline kind; open a node for its WARN and ALERT items (– : OK or no tier).</p>",
        "".join(_node_html(child) for child in _worst_first(tree.children.values())),
        "</section>",
        _worst_html(worst, also, series, drifted_items, len(drifted)),
        _distributions_html(worst, bins, ecdfs, shares),
        _trends_html(trends, series),
        "<footer>Numbers from the metricsduck views drift, psi_bins, category_shares, distribution_values, facts "
        "and trends. "
        "Tiers: OK, WARN, ALERT; thresholds from the tree's config.</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Drift report · {esc(run_id)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


def write_report(store: Store, path: str | Path, run: str = "latest", *, top: int = TOP_DEFAULT) -> Path:
    """Render the report of `run` and write it atomically to `path` (unchanged bytes are
    not rewritten); return the path."""
    from .files import write_atomic

    path = Path(path)
    write_atomic(path, render_report(store, run, top=top).encode("utf-8"))
    return path
