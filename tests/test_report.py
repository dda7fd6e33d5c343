"""The HTML drift report (`metricsduck report`, docs/design.md §10.2).

The page is parsed here with the standard library's HTMLParser and every number it shows
is checked against plain SQL over the views (`drift`, `rollup_stage`, `psi_bins`,
`trends`, `distribution_values`), never against the report's own queries. Then it is
rendered in headless Chromium, which must draw it without fetching anything.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import metricsduck
from metricsduck.cli import main
from metricsduck.errors import InputError
from metricsduck.report import render_report

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
RANK = {None: "none", 0: "OK", 1: "WARN", 2: "ALERT"}


class Page(HTMLParser):
    """What a reader sees: drill-down nodes by path, table rows by class, figures, tags."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str, str | None]] = []
        self.nodes: dict[tuple[str, ...], str] = {}  # path of names -> worst tier shown
        self.levels: dict[tuple[str, ...], str] = {}
        self.rows: dict[str, list[tuple[tuple[str, ...], list[str]]]] = {}  # class -> (path, cells)
        self.figures: list[dict] = []
        self.headings: list[str] = []
        self._details: list[list] = []  # [level, worst, name, path]
        self._name: list[str] | None = None
        self._row: tuple[str, list[str]] | None = None
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()

    def path(self) -> tuple[str, ...]:
        return tuple(d[2] for d in self._details)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags[tag] += 1
        self.attributes += [(tag, name, value) for name, value in attrs]
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "details" and "node" in classes:
            self._details.append([a["data-level"], a["data-worst"], None])
        elif tag == "span" and "name" in classes and self._details and self._details[-1][2] is None:
            self._name = []
        elif tag == "tr" and classes:
            self._row = (classes[0], [])
        elif tag == "td" and self._row is not None:
            self._row[1].append("")
        elif tag == "figure":
            self.figures.append({**a, "bars": 0, "paths": []})
        elif tag == "rect" and "psi-bar" in classes:
            self.figures[-1]["bars"] += 1
        elif tag == "path" and self.figures:
            self.figures[-1]["paths"].append((a.get("class"), a.get("d")))
        elif tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._name is not None:
            self._details[-1][2] = "".join(self._name)
            self._name = None
            path = self.path()
            self.nodes[path] = self._details[-1][1]
            self.levels[path] = self._details[-1][0]
        elif tag == "details" and self._details:
            self._details.pop()
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._row[0], []).append((self.path(), self._row[1]))
            self._row = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._name is not None:
            self._name.append(data)
        if self._row is not None and self._row[1]:
            self._row[1][-1] += data
        if self._heading is not None:
            self._heading.append(data)


def sql(store, query: str, params=None) -> list[tuple]:
    return store.sql(query, params).fetchall()


def latest(store) -> str:
    return sql(store, "SELECT run_id FROM runs ORDER BY ordinal DESC LIMIT 1")[0][0]


@pytest.fixture(scope="module")
def demo(demo_store):
    """The refreshed demo tree's store, its latest run id, the report and the parsed page."""
    store, _, _ = demo_store
    text = render_report(store)
    return store, latest(store), text, Page(text)


# --------------------------------------------------------------------------- content


def test_summary_counts_equal_the_drift_view(demo) -> None:
    store, run_id, _, page = demo
    expected = {
        (kind, item_kind): [str(alert), str(warn), str(ok), str(none), str(total)]
        for kind, item_kind, alert, warn, ok, none, total in sql(store, """
            SELECT baseline_kind, item_kind, count(*) FILTER (WHERE tier = 'ALERT'),
                   count(*) FILTER (WHERE tier = 'WARN'), count(*) FILTER (WHERE tier = 'OK'),
                   count(*) FILTER (WHERE tier IS NULL), count(*)
            FROM drift WHERE run_id = $run GROUP BY ALL""", {"run": run_id})
    }
    shown = {(cells[0], cells[1]): cells[2:7] for _, cells in page.rows["count-row"]}
    assert shown == expected
    assert sum(int(c[0]) for c in shown.values()) > 0  # the demo's injections are ALERT
    (cohort_runs,) = sql(store, "SELECT cohort_runs FROM runs WHERE run_id = $run", {"run": run_id})[0]
    mismatches = sql(store, "SELECT count(*) FROM baseline_summary WHERE run_id = $run "
                            "AND sanity_status = 'FINGERPRINT_MISMATCH'", {"run": run_id})[0][0]
    assert mismatches > 0  # the demo changes git_commit part-way
    text = demo[2]
    assert f'<div class="k">Cohort-runs</div><div class="v">{cohort_runs}</div>' in text
    assert f'<div class="k">Fingerprint mismatches</div><div class="v">{mismatches}</div>' in text
    # the items whose tier is OK on purpose: the demo's improvement (two metrics) and the
    # distributions with fewer than min_samples values
    held = dict(sql(store, "SELECT status, count(DISTINCT (baseline_key, item_kind, item)) FROM drift "
                           "WHERE run_id = $run GROUP BY status", {"run": run_id}))
    assert held["IMPROVED"] == 2 and held["LOW_N"] > 0
    assert (f'<div class="k">Tier OK on purpose (items)</div><div class="v">{held["IMPROVED"]} improved, '
            f'{held.get("INCONCLUSIVE", 0)} inconclusive, {held["LOW_N"]} too few values</div>') in text
    assert f"<title>Drift report · {run_id}</title>" in text


def test_worst_tier_of_every_node_equals_sql(demo) -> None:
    store, run_id, _, page = demo
    expected = {}
    for columns in ("stage", "stage, view", "stage, view, target", "stage, view, target, symbol"):
        for *names, rank in sql(store, f"SELECT {columns}, max(tier_rank) FROM drift WHERE run_id = $run "
                                       f"GROUP BY {columns}", {"run": run_id}):
            if names[-1] is not None:  # cross-sectional cohorts end at the target
                expected[tuple(names)] = RANK[rank]
    assert page.nodes == expected
    assert {page.levels[p] for p in page.nodes} == {"stage", "view", "target", "symbol"}
    # and the view level agrees with the stage rollup, another view over the same rows
    for stage, view, worst in sql(store, "SELECT stage, view, worst_tier FROM rollup_stage "
                                         "WHERE run_id = $run", {"run": run_id}):
        assert page.nodes[(stage, view)] == (worst or "none")


def test_every_alert_row_of_the_run_appears_at_its_node(demo) -> None:
    store, run_id, text, page = demo
    alerts = sql(store, "SELECT stage, view, target, symbol, item, baseline_kind FROM drift "
                        "WHERE run_id = $run AND tier = 'ALERT'", {"run": run_id})
    assert len(alerts) >= 4
    kinds = ("previous_run", "rolling", "last_good_run")  # the columns of an item table
    items = {(path, cells[0]): cells for path, cells in page.rows["item-row"]}
    for stage, view, target, symbol, item, kind in alerts:
        path = (stage, view, target) + ((symbol,) if symbol is not None else ())
        cells = items[(path, item)]
        assert cells[2 + kinds.index(kind)].startswith("ALERT"), (path, item, kind)
        assert html.escape(item) in text and html.escape(target) in text
    warn_or_worse = sql(store, "SELECT count(DISTINCT (baseline_key, item_kind, item)) FROM drift "
                               "WHERE run_id = $run AND tier_rank >= 1", {"run": run_id})[0][0]
    worst = page.rows["drift-row"]
    assert len(worst) == min(20, warn_or_worse)
    tiers = [cells[1] for _, cells in worst]
    assert tiers == sorted(tiers, key=["ALERT", "WARN"].index)  # ALERT first


def test_psi_bars_match_psi_bins_and_cdfs_reach_one(demo) -> None:
    store, run_id, _, page = demo
    figures = [f for f in page.figures if "dist" in f.get("class", "")]
    expected = sql(store, "SELECT count(*) FROM drift WHERE run_id = $run AND tier_rank >= 1 "
                          "AND item_kind = 'distribution'", {"run": run_id})[0][0]
    assert 1 <= len(figures) <= expected
    bins = {tuple(row[:3]): row[3] for row in sql(
        store, "SELECT baseline_key, baseline_kind, distribution, count(*) FROM psi_bins "
               "WHERE run_id = $run GROUP BY ALL", {"run": run_id})}
    categories = {tuple(row[:3]): row[3] for row in sql(
        store, "SELECT baseline_key, baseline_kind, distribution, count(*) FROM category_shares "
               "WHERE run_id = $run GROUP BY ALL", {"run": run_id})}
    assert {f["data-kind"] for f in figures} == {"distribution", "categorical"}
    for figure in figures:
        key = {"key": figure["data-baseline-key"], "kind": figure["data-baseline-kind"],
               "dist": figure["data-distribution"], "run": run_id}
        if figure["data-kind"] == "categorical":  # a baseline and a current bar per category
            assert figure["bars"] == 2 * categories[(key["key"], key["kind"], key["dist"])] > 2
            assert figure["paths"] == []
            continue
        expected_bars = bins[(key["key"], key["kind"], key["dist"])]
        assert expected_bars > 1 and figure["bars"] == expected_bars
        sides = dict(figure["paths"])
        assert set(sides) == {"ecdf-baseline", "ecdf-current"}
        for d in sides.values():  # a step line from F = 0 (bottom) that climbs to F = 1 (top)
            heights = [float(v) for v in re.findall(r"V([\d.]+)", d)]
            assert heights == sorted(heights, reverse=True) and heights[-1] == 14.0
            distinct = sql(store, "SELECT count(DISTINCT value) FROM distribution_values WHERE "
                                  "baseline_key = $key AND run_id = $run AND baseline_kind = $kind "
                                  "AND distribution = $dist", key)[0][0]
            assert 1 <= len(heights) <= distinct


def test_every_trend_that_is_not_flat_has_a_sparkline(demo) -> None:
    store, run_id, text, page = demo
    trends = sql(store, "SELECT target, metric, n_runs, direction FROM trends "
                        "WHERE run_id = $run AND direction <> 'flat'", {"run": run_id})
    assert trends  # the demo's slow decline
    rows = page.rows["trend-row"]
    assert sorted((c[0], c[2]) for _, c in rows) == sorted((d, m) for _, m, _, d in trends)
    lines = re.findall(r'<tr class="trend-row".*?<polyline class="spark-line" points="([^"]*)"', text)
    assert sorted(len(p.split()) for p in lines) == sorted(n for _, _, n, _ in trends)


def test_page_is_self_contained(demo) -> None:
    _, _, text, page = demo
    assert "script" not in page.tags and not re.search(r"<script", text, re.I)
    for tag in ("link", "img", "iframe", "object", "embed", "image", "use", "base", "meta-refresh"):
        assert tag not in page.tags, tag
    for tag, name, value in page.attributes:
        assert not name.startswith("on"), (tag, name)
        if name in ("src", "href", "xlink:href", "action", "srcset"):
            assert (value or "").startswith("#"), (tag, name, value)
    assert not re.search(r"https?:|@import|url\(|@font-face", text, re.I)
    assert "default-src 'none'" in text  # and the browser is told to fetch nothing
    assert "Run summary" in page.headings


def test_unknown_run_and_empty_tree_are_input_errors(demo, tmp_path: Path) -> None:
    store = demo[0]
    with pytest.raises(InputError, match="'no_such_run' is not in"):
        render_report(store, "no_such_run")
    (tmp_path / "empty").mkdir()
    with metricsduck.connect(tmp_path / "empty") as empty, pytest.raises(InputError, match="no runs in"):
        render_report(empty)
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 4
    assert result.output.startswith("metricsduck: error: no runs in") and result.output.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- hostile names

TARGET = "<img src=x onerror=alert(1)>"
SYMBOL = '"><svg onload=alert(2)>'
METRIC = "score' & \"<marquee>bold"
DIST = "<i>dist"


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Path:
    """Six runs of one symbol-specific cohort with markup in every name: the metric falls
    steadily, then its sample distribution shifts in the last run."""
    root = tmp_path / "hostile"
    for run in range(6):
        metricsduck.write_cohort_metrics(
            root / f"run{run}" / "REPRODUCIBILITY" / "TARGET_RANKING" / "SYMBOL_SPECIFIC" / TARGET
            / f"symbol={SYMBOL}" / "cohort=c1",
            run_id=f"r<{run}>", run_started_at=START + timedelta(days=run),
            written_at=START + timedelta(days=run, hours=1), stage="TARGET_RANKING",
            view="SYMBOL_SPECIFIC", target=TARGET, symbol=SYMBOL, cohort_id="c1",
            metrics={METRIC: 1.0 - 0.1 * run},
            samples={DIST: [i / 100 + (0.5 if run == 5 else 0.0) for i in range(100)]})
    return root


def test_hostile_names_are_escaped_everywhere(hostile_tree: Path, tmp_path: Path) -> None:
    with metricsduck.connect(hostile_tree) as store:
        text = render_report(store)
    page = Page(text)
    for name in (TARGET, SYMBOL, METRIC, DIST, "r<5>"):
        assert html.escape(name) in text, name
    for raw in (TARGET, SYMBOL, "<marquee>", "<i>", "r<5>"):
        assert raw not in text, raw
    # the browser's view: no element or handler came from a name, and every name reads back
    assert not {"img", "marquee", "i", "script"} & set(page.tags)
    assert not [a for a in page.attributes if a[1].startswith("on")]
    assert (("TARGET_RANKING", "SYMBOL_SPECIFIC", TARGET, SYMBOL)) in page.nodes
    assert [cells[0] for _, cells in page.rows["item-row"]].count(METRIC) == 1
    assert [f["data-distribution"] for f in page.figures] == [DIST]
    assert [cells[2] for _, cells in page.rows["trend-row"]] == [METRIC]


def test_cli_writes_the_same_bytes_as_the_library(hostile_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(hostile_tree), "--run", "r<4>", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with metricsduck.connect(hostile_tree) as store:
        assert out.read_bytes() == render_report(store, "r<4>").encode("utf-8")
    assert "started 2026-03-06T09:00:00Z" in out.read_text("utf-8")


# --------------------------------------------------------------------------- Chromium


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("METRICSDUCK_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is not on PATH but METRICSDUCK_REQUIRE_CHROMIUM=1 (apt-get install chromium)")
    pytest.skip("chromium is not on PATH (set METRICSDUCK_REQUIRE_CHROMIUM=1 to make this a failure)")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)


def png_summary(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed pixel rows) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_report_renders_in_headless_chromium(demo, tmp_path: Path) -> None:
    binary = chromium()
    page = tmp_path / "drift_report.html"
    page.write_text(demo[2], "utf-8")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", "utf-8")
    shots = {}
    for name, source in (("report", page), ("blank", blank)):
        shots[name] = tmp_path / f"{name}.png"
        result = run_chromium(binary, tmp_path / f"profile-{name}", f"--screenshot={shots[name]}",
                              "--window-size=1280,2000", source.as_uri())
        assert result.returncode == 0 and shots[name].exists(), result.stderr[-2000:]
    width, height, distinct = png_summary(shots["report"])
    assert (width, height) == (1280, 2000)
    _, _, blank_distinct = png_summary(shots["blank"])
    # the blank page decompresses to a handful of byte values; text, lights and charts to many
    assert distinct > 100 and blank_distinct < 20, (distinct, blank_distinct)
    assert shots["report"].stat().st_size > 10 * shots["blank"].stat().st_size
    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h2>Run summary</h2>" in dom.stdout and 'class="psi-chart"' in dom.stdout
    assert dom.stdout.count('class="node lvl-') == demo[2].count('class="node lvl-')
