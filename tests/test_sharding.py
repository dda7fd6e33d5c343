"""Cutting a tree into parts (docs/design.md §13): every view and table macro declares its
shard, no sharded definition mixes rows of different shard values (a sqlglot walk of its
SQL), and the views sharded by baseline_key give, part by part, the rows they give over the
whole tree — byte for byte, whichever keys share a part.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

import metricsduck
from metricsduck.catalog import discover
from metricsduck.catalog.definitions import Definition
from metricsduck.engine import arrow_table
from metricsduck.files import parquet_bytes
from metricsduck.marks import write_mark
from metricsduck.store import connect_part

CATALOG = discover()
# Small inputs every part holds whole: the settings and the marks (and what the catalog
# computes from them alone, `Shard: broadcast.`).
BROADCAST = {"settings", "settings_wide", "settings_metrics", "marks_raw"} | {
    d.name for d in CATALOG if d.shard == ()}
KEY_ID = "pair_id"  # an id derived from the key columns of its relation (`checked_id`)


def _names(node: exp.Expression | None) -> set[str]:
    return set() if node is None else {c.name.lower() for c in node.find_all(exp.Column)}


def _local(columns: set[str], shard: tuple[str, ...]) -> bool:
    return KEY_ID in columns or set(shard) <= columns


class Walk:
    """The shard violations of one definition's statement."""

    def __init__(self, definition: Definition) -> None:
        self.shard = definition.shard or ()
        self.tree = sqlglot.parse_one(definition.statement, read="duckdb")
        self.ctes = {cte.alias.lower(): cte.this for cte in self.tree.find_all(exp.CTE)}
        # the shards of the table macros it calls: a macro sharded by value columns (n, m, k)
        # is a function of them, so its distinct arguments and a join back on them mix nothing
        self.called = [CATALOG[f.name.lower()].shard or () for f in self.tree.find_all(exp.Func)
                       if f.name.lower() in CATALOG and CATALOG[f.name.lower()].table_macro]
        self.found: list[str] = []

    def local(self, columns: set[str]) -> bool:
        """Whether rows keyed by `columns` keep to one shard (or are the arguments of a macro
        sharded by those values)."""
        return _local(columns, self.shard) or any(shard and set(shard) <= columns for shard in self.called)

    def broadcast(self, node: exp.Expression, seen: frozenset[str] = frozenset()) -> bool:
        """Whether `node` reads only broadcast relations (or none: VALUES, range, unnest)."""
        for table in node.find_all(exp.Table):
            name = table.name.lower()
            if not name:  # a table function: a table macro of the catalog, query_table(x), range …
                called = table.this.name.lower() if isinstance(table.this, exp.Func) else ""
                if called == "query_table" or (called in CATALOG and called not in BROADCAST):
                    return False
                continue
            if name in self.ctes and name not in seen:
                if not self.broadcast(self.ctes[name], seen | {name}):
                    return False
            elif name not in BROADCAST and name not in self.ctes:
                return False
        return True

    def violations(self) -> list[str]:
        named = {w.this.name.lower(): _names(exp.Tuple(expressions=w.args.get("partition_by") or []))
                 for select in self.tree.find_all(exp.Select) for w in select.args.get("windows") or []}
        for window in self.tree.find_all(exp.Window):
            if isinstance(window.this, exp.Identifier) and window.parent and \
                    window in (window.parent.args.get("windows") or []):
                continue  # a WINDOW clause entry, checked where it is used
            columns = _names(exp.Tuple(expressions=window.args.get("partition_by") or []))
            if window.alias:
                columns |= named.get(window.alias.lower(), set())
            if not _local(columns, self.shard) and not self._in_broadcast(window):
                self.found.append(f"window without {self.shard} in its PARTITION BY: {window.sql()[:80]}")
        for select in self.tree.find_all(exp.Select):
            self._select(select)
        for where in self.tree.find_all(exp.In):
            query = where.args.get("query")
            if query is not None and not _local(_names(where.this), self.shard) and not self.broadcast(query):
                self.found.append(f"IN over other shards: {where.sql()[:80]}")
        return self.found

    def _in_broadcast(self, node: exp.Expression) -> bool:
        select = node.find_ancestor(exp.Select)
        return select is not None and self._sources_broadcast(select)

    def _sources_broadcast(self, select: exp.Select) -> bool:
        sources = [select.args.get("from_") or select.args.get("from")] + list(select.args.get("joins") or [])
        return all(self.broadcast(s) for s in sources if s is not None)

    def _select(self, select: exp.Select) -> None:
        if self._sources_broadcast(select):
            return
        group = select.args.get("group")
        if group is not None:
            sets = group.args.get("grouping_sets") or []
            for part in ([e for s in sets for e in s.expressions] if sets else [group]):
                if not _local(_names(part), self.shard):
                    self.found.append(f"GROUP BY without {self.shard}: {part.sql()[:80]}")
        elif any(agg.find_ancestor(exp.Window) is None for e in select.expressions
                 for agg in e.find_all(exp.AggFunc)):
            self.found.append(f"aggregate over the whole relation: {select.sql()[:80]}")
        if select.args.get("distinct") and not self.local({e.alias_or_name.lower() for e in select.expressions}):
            self.found.append(f"DISTINCT without {self.shard}: {select.sql()[:80]}")
        for join in select.args.get("joins") or []:
            if self.broadcast(join.this):
                continue
            on = join.args.get("on") or exp.true()
            pairs = [(e.this, e.expression) for e in on.find_all(exp.EQ, exp.NullSafeEQ)
                     if isinstance(e.this, exp.Column) and isinstance(e.expression, exp.Column)]
            using = {u.name.lower() for u in join.args.get("using") or []}
            same = using | {a.name.lower() for a, b in pairs if a.name.lower() == b.name.lower()}
            # the joined relation's side of each equality (a call of a macro sharded by values)
            joined = using | {c.name.lower() for pair in pairs for c in pair
                              if c.table and c.table.lower() == join.this.alias_or_name.lower()}
            if not (_local(same, self.shard) or any(s and set(s) <= joined for s in self.called)):
                self.found.append(f"join without {self.shard} on both sides: {join.sql()[:80]}")


def relation_definitions() -> list[Definition]:
    return [d for d in CATALOG if d.kind == "VIEW" or d.table_macro]


def test_every_view_and_table_macro_declares_its_shard() -> None:
    undeclared = [d.label for d in relation_definitions() if d.shard is None]
    assert not undeclared, f"add a `-- Shard: <columns>.` (or `broadcast`) line to: {undeclared}"
    scalar = [d.label for d in CATALOG if d.kind == "MACRO" and not d.table_macro and d.shard is not None]
    assert not scalar, f"scalar macros read no rows and declare no shard: {scalar}"


@pytest.mark.parametrize("definition", [d for d in relation_definitions() if d.shard],
                         ids=lambda d: d.name)
def test_sharded_definitions_never_mix_rows_of_different_shards(definition: Definition) -> None:
    assert Walk(definition).violations() == []


def test_the_walk_finds_what_crosses_shards() -> None:
    """The walk itself: each construct that mixes keys is reported (so a pass means something)."""
    def walked(body: str) -> list[str]:
        text = f"-- Shard: baseline_key.\nCREATE OR REPLACE VIEW probe AS {body};"
        return Walk(Definition("probe", "VIEW", Path("probe.sql"), text, text[text.index("CREATE"):],
                               "Shard: baseline_key.", (), (), "")).violations()

    assert walked("SELECT row_number() OVER (ORDER BY run_id) FROM facts")
    assert walked("SELECT run_id, count(*) FROM facts GROUP BY run_id")
    assert walked("SELECT count(*) FROM facts")
    assert walked("SELECT DISTINCT run_id FROM facts")
    assert walked("SELECT * FROM facts AS a JOIN facts AS b ON a.run_id = b.run_id")
    assert walked("SELECT * FROM facts WHERE run_id IN (SELECT run_id FROM samples)")
    assert walked("SELECT count(*) OVER family FROM facts WINDOW family AS (PARTITION BY run_id)")
    assert not walked("SELECT baseline_key, count(*) FROM facts GROUP BY baseline_key")
    assert not walked("SELECT * FROM facts AS a JOIN facts AS b USING (baseline_key, run_id)")
    assert not walked("SELECT * FROM facts AS f, settings_wide AS cfg LEFT JOIN marks AS m USING (run_id)")
    assert not walked("SELECT count(*) OVER family FROM facts WINDOW family AS (PARTITION BY baseline_key)")


def test_key_ids_hash_the_shard_columns() -> None:
    """A `pair_id` is built from columns that include its definition's shard."""
    for definition in relation_definitions():
        for alias in sqlglot.parse_one(definition.statement, read="duckdb").find_all(exp.Alias):
            if alias.alias.lower() == KEY_ID and alias.this.find(exp.Column) is not None:
                hashed = alias.this.find(exp.Anonymous, exp.Func)
                assert hashed is not None and "checked_id" in alias.this.sql().lower(), definition.label
                assert set(definition.shard or ()) <= _names(alias.this), definition.label


# --- the parts give the rows of the whole ---------------------------------------------------------

# the views sharded by baseline_key that no other such view reads (what the others feed),
# less drift_scalar and drift_distribution (drift_tested holds their rows, from the same
# macros) and distribution_values (every sample value again: psi_bins is built on it), with
# baseline_summary, whose pair_id the parts must give as the whole does
_PER_KEY = [d.name for d in relation_definitions() if d.kind == "VIEW" and d.shard == ("baseline_key",)]
LEAVES = sorted({v for v in _PER_KEY if not any(v in CATALOG[other].dependencies for other in _PER_KEY)}
                - {"drift_scalar", "drift_distribution", "distribution_values"} | {"baseline_summary"})


def _sorted(con, relation: str) -> pa.Table:
    return arrow_table(con.sql(f"SELECT * FROM {relation} ORDER BY ALL"))


def _parts(store, count: int) -> list[dict[str, pa.Table]]:
    """The tree's source rows cut into `count` parts by a hash of baseline_key (marks whole)."""
    con = store.con
    marks = arrow_table(con.sql("SELECT * FROM marks_raw"))
    return [{source: arrow_table(con.sql(f"SELECT * FROM {source} WHERE hash(baseline_key) % ? = ?",
                                         params=[count, part]))
             for source in ("facts_raw", "samples_raw")} | {"marks_raw": marks}
            for part in range(count)]


def _union(con, tables: list[pa.Table]) -> pa.Table:
    con.register("parts", pa.concat_tables(tables))
    try:
        return _sorted(con, "parts")
    finally:
        con.unregister("parts")


def _by_family(con, tested: pa.Table) -> pa.Table:
    """drift_fdr_of over each run x stage of `tested` apart, as an engine would run it."""
    con.register("tested", tested)
    families = []
    for run_id, stage in con.sql("SELECT DISTINCT run_id, stage FROM tested").fetchall():
        con.execute("CREATE OR REPLACE TEMP TABLE family AS SELECT * FROM tested WHERE run_id = ? AND stage = ?",
                    [run_id, stage])
        families.append(arrow_table(con.sql("SELECT * FROM drift_fdr_of('family')")))
    con.unregister("tested")
    return _union(con, families)


def assert_parts_give_the_whole(root: Path, counts: tuple[int, ...]) -> pa.Table:
    """Each leaf view, and drift after its second step per run x stage, byte for byte;
    returns the whole tree's drift."""
    with metricsduck.connect(root, use_cache=False) as whole:
        expected = {name: parquet_bytes(_sorted(whole.con, name)) for name in LEAVES}
        rows = _sorted(whole.con, "drift_computed")
        drift = parquet_bytes(rows)
        for count in counts:
            parts = [connect_part(root, rows, whole.config) for rows in _parts(whole, count)]
            try:
                for name in LEAVES:
                    got = parquet_bytes(_union(whole.con, [_sorted(p.con, name) for p in parts]))
                    assert got == expected[name], f"{name} differs cut into {count} parts"
                tested = pa.concat_tables([_sorted(p.con, "drift_tested") for p in parts])
                assert parquet_bytes(_by_family(parts[0].con, tested)) == drift, \
                    f"drift differs cut into {count} parts"
            finally:
                for part in parts:
                    part.close()
    return rows


START = datetime(2026, 4, 6, tzinfo=timezone.utc)


def edge_tree(root: Path, seed: int) -> Path:
    """A small random tree of two stages that hits the edges: runs a fraction of a second
    apart (three within the first second), keys that start late or skip runs (missing
    baselines), NaN and ±inf values, ties, empty and one-value distributions, text
    distributions, fingerprints that change, a run marked bad."""
    rng = np.random.default_rng(seed)
    for index in range(6):
        started = START + timedelta(milliseconds=int(rng.integers(1, 900)) + 1000 * index * (index % 2))
        tracker = metricsduck.ReproducibilityTracker(root / f"run_{index}", run_id=f"run_{index}",
                                                     run_started_at=started, root=root)
        for stage, targets in (("TARGET_RANKING", "abcd"), ("FEATURE_SELECTION", "ab")):
            for target, symbol in itertools.product(targets, (None, "X", "Y")):
                if rng.random() < 0.25:  # this cohort skips the run
                    continue
                value = rng.choice([0.5, 0.5, float("nan"), float("inf"), -float("inf"), rng.normal()])
                samples = {"score": [[], [1.0], [2.0] * 5, list(rng.normal(index % 3, 1, 40))][rng.integers(4)],
                           "regime": list(rng.choice(["calm", "busy", "halted"][: 2 + index % 2], 30))}
                tracker.save_cohort(stage, "SYMBOL_SPECIFIC" if symbol else "CROSS_SECTIONAL",
                                    target, {"score": float(value), "hits": int(rng.integers(3)),
                                             "ok": bool(rng.random() < 0.8)},
                                    symbol=symbol, samples=samples,
                                    cohort_metadata={"cohort_id": f"c_{target}", "seed": index % 2})
    write_mark(root, "run_2", good=False, reason="bad data", marked_at=START)
    return root


def test_a_random_edge_tree_cut_by_baseline_key_gives_the_same_rows(tmp_path: Path) -> None:
    # 2 and 7 parts here (leaf views); test_spark.py refreshes this tree in 1, 2, 3 and 7
    drift = assert_parts_give_the_whole(edge_tree(tmp_path / "tree", seed=0), counts=(2, 7))
    # the tree hits what it is built to hit
    assert {"COMPARED", "NO_BASELINE", "NON_FINITE", "NO_DATA", "LOW_N", "INCONCLUSIVE"} <= set(
        drift["status"].to_pylist())
    assert {"categorical", "distribution"} <= set(drift["kind"].to_pylist())
    assert "FINGERPRINT_MISMATCH" in drift["sanity_status"].to_pylist()
    assert len(set(drift["stage"].to_pylist())) == 2 and drift["q_value"].null_count < drift.num_rows
