"""`check`: find everything wrong with a results tree, without changing a byte of it.

Each finding is a `Problem(path, kind, message)`; no problems means the tree is sound.
What is checked: the config; whether a persisted catalog (opened read-only) matches the
SQL of this metricsduck; every sidecar (readable and of schema v1, as the store's
snapshot reports in `bad_files`; one cohort-run per file; identity matching its folders);
duplicate cohort-runs; every JSON mirror against its Parquet; drift, trend and sample
files whose facts are gone; and temporary files left by interrupted writes.
Nothing is written: no catalog, no placeholder, no cache, no repair.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import CURRENT, bind_snapshot, catalog_path, catalog_states, discover, persisted_fingerprints
from .config import Config, load_config, resolve_config
from .errors import ConfigError, StorageError
from .layout import CACHE_DIR, CONFIG_FILE, baseline_key, sidecar_name
from .mirrors import drift_mirror, metrics_mirror, stage_rollup_mirror, trend_mirror, view_rollup_mirror
from .vocab import (
    DRIFT_SCHEMA_ID,
    FINGERPRINT_FIELDS,
    METRICS_SCHEMA_ID,
    ROLLUP_STAGE_SCHEMA_ID,
    ROLLUP_VIEW_SCHEMA_ID,
    SAMPLES_SCHEMA_ID,
    SCHEMA_METADATA_KEY,
    TREND_SCHEMA_ID,
)
from .writer import SCHEMA_VERSION, metrics_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from .store import Store

# write_atomic's `.<name>.<random>.tmp`, and init's catalog temp file with its WAL
TEMP_FILE = re.compile(r"\..+\.tmp(\.wal)?")
IDENTITY = ("stage", "view", "target", "symbol", "cohort_id", "baseline_key", "run_id")
REFRESH_FIX = "`metricsduck refresh ROOT --all` rewrites it"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: the file it concerns, a short kind, and what to do about it.

    Kinds: config, catalog, bad_sidecar, bad_mark, mixed_identity, identity_mismatch,
    duplicate, bad_output, schema_mismatch, missing_mirror, mirror_without_parquet,
    mirror_mismatch, orphan, temp_file.
    """

    path: str
    kind: str
    message: str

    def row(self) -> tuple[str, str, str]:
        return (self.path, self.kind, self.message)


def check(root: str | Path, config: Config | str | Path | None = None, *,
          sql_dir: Path | None = None) -> list[Problem]:
    """Every problem of the tree at `root`, sorted by path; [] when it is sound.

    `config` is a loaded Config, or the path of a YAML file, or None for the root's saved
    config (else the defaults); a config that does not load is a problem, and the other
    checks then run with the packaged defaults. Read-only.
    """
    from .store import tree_root

    root = tree_root(root)
    checker = _Checker(root)
    config = checker.config(config)
    checker.catalog(sql_dir)
    with _open_store(root, config, sql_dir) as store:
        checker.sidecars(store)
    checker.tree(config.prefix)
    return sorted(set(checker.problems))


def _open_store(root: Path, config: Config, sql_dir: Path | None) -> Store:
    """A store holding only the snapshot of the sidecars: facts_raw, samples_raw, bad_files.

    The same binding `connect` starts with (files that cannot be read, or are not sidecars,
    are left out and listed in `bad_files`), without the views, which `check` does not
    query. In memory: nothing is written.
    """
    from .engine import new_connection
    from .store import Store

    con = new_connection(config)
    try:
        snapshot = bind_snapshot(con, root, config, use_cache=False)
    except BaseException:
        con.close()
        raise
    return Store(root, config, con, discover(sql_dir), snapshot)


class _Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.resolved = root.resolve()
        self.problems: list[Problem] = []
        self.bad: set[Path] = set()  # sidecars the store left out, already reported

    def add(self, path: Path | str, kind: str, message: str) -> None:
        self.problems.append(Problem(str(path), kind, message))

    def shown(self, path: str) -> Path:
        """A store path (absolute, resolved) as it sits under the root the user gave."""
        try:
            return self.root / Path(path).relative_to(self.resolved)
        except ValueError:
            return Path(path)

    # --- config and catalog -------------------------------------------------------------

    def config(self, config: Config | str | Path | None) -> Config:
        if isinstance(config, Config):
            return config
        try:
            return resolve_config(self.root, config)
        except ConfigError as exc:
            path = Path(config) if config is not None else self.root / CACHE_DIR / CONFIG_FILE
            message = str(exc).removeprefix(f"{path}: ")
            self.add(path, "config", f"{message}; the other checks used the packaged defaults")
            return load_config()

    def catalog(self, sql_dir: Path | None) -> None:
        """The persisted catalog, if any: readable, and built from the SQL of this metricsduck."""
        path = catalog_path(self.root)
        try:
            persisted = persisted_fingerprints(self.root)  # opens the catalog read-only
        except StorageError as exc:
            self.add(path, "catalog", str(exc).removeprefix(f"{path}: "))
            return
        if persisted is None:
            return
        stale = [d.name for d, state in catalog_states(discover(sql_dir), persisted) if state != CURRENT]
        gone = sorted(set(persisted) - {d.name for d in discover(sql_dir)})
        if stale or gone:
            names = ", ".join(stale + gone)
            self.add(path, "catalog", f"out of date for {len(stale) + len(gone)} definition(s) ({names}): "
                                      "run `metricsduck init` to rebuild it")

    # --- sidecars, through the store's snapshot ------------------------------------------

    def sidecars(self, store: Store) -> None:
        for path, source, reason in store.bad_files():
            shown = self.shown(path)
            self.bad.add(shown)
            self.add(shown, "bad_mark" if source == "marks_raw" else "bad_sidecar", reason)
        for table in ("facts_raw", "samples_raw"):
            self._identities(store, table)
            self._duplicates(store, table)

    def _identities(self, store: Store, table: str) -> None:
        # newer versions are in bad_files already; the views read version 1 rows only
        for source_file, version in store.con.sql(
                f"SELECT source_file, min(schema_version) FROM {table} GROUP BY ALL "
                f"HAVING bool_or(schema_version <> {SCHEMA_VERSION}) ORDER BY ALL").fetchall():
            self.bad.add(self.shown(source_file))
            self.add(self.shown(source_file), "bad_sidecar",
                     f"schema_version {version} is not {SCHEMA_VERSION}: the views leave its rows "
                     "out; rewrite it")
        rows = store.con.sql(f"SELECT DISTINCT source_file, {', '.join(IDENTITY)} FROM {table} "
                         "ORDER BY ALL").fetchall()
        by_file: dict[str, list[tuple]] = {}
        for source_file, *identity in rows:
            by_file.setdefault(source_file, []).append(tuple(identity))
        for source_file, identities in by_file.items():
            path = self.shown(source_file)
            if len(identities) > 1:
                columns = zip(IDENTITY, zip(*identities, strict=True), strict=True)
                differ = [name for name, values in columns if len(set(values)) > 1]
                self.add(path, "mixed_identity",
                         f"its rows disagree on {', '.join(differ)}: a sidecar holds exactly one "
                         "cohort-run; rewrite it")
                continue
            found = _folder_mismatches(path, dict(zip(IDENTITY, identities[0], strict=True)))
            if found:
                self.add(path, "identity_mismatch",
                         "; ".join(found) + ". Identity comes from the columns; move the folder or "
                         "rewrite the sidecar")

    def _duplicates(self, store: Store, table: str) -> None:
        # the same order as the facts/samples views: newest written_at, then the later path, wins
        rows = store.con.sql(
            "WITH files AS (SELECT baseline_key, run_id, source_file, max(written_at) AS written_at "
            f"FROM {table} GROUP BY ALL) "
            "SELECT baseline_key, run_id, source_file FROM files "
            "QUALIFY count(*) OVER (PARTITION BY baseline_key, run_id) > 1 "
            "ORDER BY baseline_key, run_id, written_at DESC, source_file DESC"
        ).fetchall()
        groups: dict[tuple[str, str], list[str]] = {}
        for key, run_id, source_file in rows:
            groups.setdefault((key, run_id), []).append(source_file)
        for (key, run_id), files in groups.items():
            winner = self.shown(files[0])
            for source_file in files:
                path = self.shown(source_file)
                others = ", ".join(str(self.shown(f)) for f in files if f != source_file)
                verdict = "this one is read" if path == winner else f"{winner} is read"
                self.add(path, "duplicate",
                         f"cohort-run {key} / {run_id} is also in {others}; {verdict} (newest "
                         "written_at, then the later path); remove the stale copy")

    # --- the files in the tree -----------------------------------------------------------

    def tree(self, prefix: str) -> None:
        cache = self.root / CACHE_DIR
        for dirpath, dirnames, filenames in os.walk(self.root):
            folder = Path(dirpath)
            dirnames.sort()
            names = set(filenames)
            for name in sorted(names):
                if TEMP_FILE.fullmatch(name):
                    self.add(folder / name, "temp_file",
                             "left by an interrupted write (or one still running); delete it once "
                             "no writer or refresh is running")
            if folder == cache or cache in folder.parents:
                continue  # metricsduck's own files: catalog, config, marks, lock
            self._folder(folder, names, prefix)

    def _folder(self, folder: Path, names: set[str], prefix: str) -> None:
        def name(artifact: str, ext: str) -> str:
            return sidecar_name(prefix, artifact, ext)

        metrics = folder / name("metrics", "parquet")
        if metrics.name not in names:
            for artifact, ext in (("drift", "parquet"), ("drift", "json"), ("trend", "parquet"),
                                  ("trend", "json"), ("samples", "parquet")):
                if name(artifact, ext) in names:
                    self.add(folder / name(artifact, ext), "orphan",
                             f"no {metrics.name} in this folder: the cohort-run it belongs to is "
                             "gone; delete it or restore the facts")
            if name("metrics", "json") in names:
                self.add(folder / name("metrics", "json"), "mirror_without_parquet",
                         f"{metrics.name} is missing; restore it or delete the mirror")
        else:
            facts = None
            if metrics not in self.bad:
                facts = self._pair(folder, names, prefix, "metrics", (METRICS_SCHEMA_ID,),
                                   lambda table, _: metrics_mirror(_padded(table)),
                                   fix="rewrite the cohort's sidecars")
            fingerprints = None
            if facts is not None and facts.num_rows:
                first = _padded(facts).slice(0, 1).to_pylist()[0]
                fingerprints = {key: first[key] for key in FINGERPRINT_FIELDS}
            self._pair(folder, names, prefix, "drift", (DRIFT_SCHEMA_ID,),
                       None if fingerprints is None
                       else lambda table, _: drift_mirror(table.to_pylist(), fingerprints))
            self._pair(folder, names, prefix, "trend", (TREND_SCHEMA_ID,),
                       lambda table, _: trend_mirror(table.to_pylist()))
        samples = folder / name("samples", "parquet")
        if samples.name in names and metrics.name in names and samples not in self.bad:
            self._read_parquet(samples, (SAMPLES_SCHEMA_ID,), "bad_sidecar", schema_only=True)
        self._pair(folder, names, prefix, "rollup", (ROLLUP_VIEW_SCHEMA_ID, ROLLUP_STAGE_SCHEMA_ID),
                   lambda table, schema_id: (
                       view_rollup_mirror(table.to_pylist()) if schema_id == ROLLUP_VIEW_SCHEMA_ID
                       else stage_rollup_mirror(table.to_pylist(), prefix)))

    def _pair(self, folder: Path, names: set[str], prefix: str, artifact: str,
              schema_ids: tuple[str, ...], render: Callable[[pa.Table, str], Any] | None,
              fix: str = REFRESH_FIX) -> pa.Table | None:
        """Check one Parquet and its JSON mirror; return the Parquet's table if readable.

        `render(table, schema_id)` gives the document the mirror must equal; None skips
        that comparison (its inputs are already reported as broken).
        """
        parquet = folder / sidecar_name(prefix, artifact, "parquet")
        mirror = folder / sidecar_name(prefix, artifact, "json")
        if parquet.name not in names:
            if mirror.name in names:
                self.add(mirror, "mirror_without_parquet",
                         f"{parquet.name} is missing; {fix}, or delete the mirror")
            return None
        kind = "bad_sidecar" if artifact == "metrics" else "bad_output"
        read = self._read_parquet(parquet, schema_ids, kind)
        if mirror.name not in names:
            self.add(mirror, "missing_mirror", f"the JSON mirror of {parquet.name} is missing; {fix}")
            return None if read is None else read[0]
        if read is None:
            return None
        table, schema_id = read
        try:
            document = json.loads(mirror.read_bytes())
        except (OSError, ValueError) as exc:
            self.add(mirror, "mirror_mismatch", f"not readable JSON ({exc}); {fix}")
            return table
        found_id = document.get("schema") if isinstance(document, dict) else None
        if found_id != schema_id:
            self.add(mirror, "schema_mismatch",
                     f"its schema is {found_id!r} but {parquet.name} is {schema_id!r}; {fix}")
            return table
        if render is None:
            return table
        try:
            # a JSON round trip makes the document what a parser reads back (tuples → lists)
            expected = json.loads(json.dumps(render(table, schema_id), allow_nan=False))
        except Exception as exc:  # noqa: BLE001 - any failure means the Parquet cannot be mirrored
            self.add(parquet, kind,
                     f"cannot be rendered as its mirror ({type(exc).__name__}: {exc}); {fix}")
            return table
        difference = None if document == expected else _difference(document, expected)
        if difference:
            self.add(mirror, "mirror_mismatch", f"differs from {parquet.name}: {difference}; {fix}")
        return table

    def _read_parquet(self, path: Path, schema_ids: tuple[str, ...], kind: str, *,
                      schema_only: bool = False) -> tuple[pa.Table | None, str] | None:
        """`(table, schema id)` of a Parquet carrying one of `schema_ids`, else report it
        (the table is None with `schema_only`)."""
        import pyarrow.parquet as pq

        try:
            # ParquetFile, not read_table: a single file, no hive discovery from `cohort=` folders
            handle = pq.ParquetFile(path)
            metadata = handle.schema_arrow.metadata or {}
            table = None if schema_only else handle.read()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            self.add(path, kind, f"unreadable ({type(exc).__name__}: {exc}); rewrite or remove it")
            return None
        schema_id = metadata.get(SCHEMA_METADATA_KEY, b"").decode("utf-8", "replace")
        if schema_id not in schema_ids:
            self.add(path, "schema_mismatch",
                     f"its {SCHEMA_METADATA_KEY.decode()} metadata is {schema_id or 'missing'!r}, expected "
                     f"{' or '.join(schema_ids)}; rewrite or remove it")
            return None
        return table, schema_id


def _folder_mismatches(path: Path, identity: dict[str, Any]) -> list[str]:
    """How the folders above a sidecar disagree with its identity columns (docs/design.md §2)."""
    expected = [("cohort", f"cohort={identity['cohort_id']}")]
    if identity["symbol"] is not None:
        expected.append(("symbol", f"symbol={identity['symbol']}"))
    expected += [("target", identity["target"]), ("view", identity["view"]), ("stage", identity["stage"])]
    found = []
    folder = path.parent
    for level, name in expected:
        if folder.name != name:
            found.append(f"the {level} folder is {folder.name!r} but the file says {name!r}")
        folder = folder.parent
    key = baseline_key(identity["stage"], identity["view"], identity["target"], identity["symbol"])
    if identity["baseline_key"] != key:
        found.append(f"baseline_key is {identity['baseline_key']!r} but its columns make {key!r}")
    return found


def _padded(table: pa.Table) -> pa.Table:
    """A metrics sidecar with every version-1 column (older writers may lack optional ones)."""
    import pyarrow as pa

    for field in metrics_schema():
        if field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    return table


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _difference(found: Any, expected: Any, where: str = "") -> str | None:
    """The first place where the mirror `found` differs from the `expected` document."""
    here = where or "the document"
    if isinstance(found, dict) and isinstance(expected, dict):
        for key in sorted(set(found) | set(expected), key=str):
            at = f"{where}.{key}" if where else str(key)
            if key not in expected:
                return f"{at} is not in the Parquet"
            if key not in found:
                return f"{at} is missing from the mirror"
            difference = _difference(found[key], expected[key], at)
            if difference:
                return difference
        return None
    if isinstance(found, list) and isinstance(expected, list):
        if len(found) != len(expected):
            return f"{here} has {len(found)} entries in the mirror, {len(expected)} in the Parquet"
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            difference = _difference(a, b, f"{where}[{index}]")
            if difference:
                return difference
        return None
    if found == expected and isinstance(found, bool) == isinstance(expected, bool):
        return None
    return f"{here} is {_short(found)} in the mirror, {_short(expected)} in the Parquet"
