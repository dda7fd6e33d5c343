"""The SQL definitions: one view or macro per file, their dependencies, order and fingerprints.

`sql/views/<name>.sql` and `sql/macros/<name>.sql` each hold one `CREATE OR REPLACE` of the
name of the file; the `--` lines before it are its documentation. A definition's
dependencies are the known names its text mentions (a token match: it may over-approximate,
never miss one), and it is applied after them. Its fingerprint hashes its normalised text
(comments and layout dropped), its dependencies' fingerprints and the names of the settings
it reads, so a change to a definition changes the fingerprint of every definition built on
it, and of nothing else. `sql/ledger.json` records the fingerprints of each release.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import SqlFileError

KINDS = {"views": "VIEW", "macros": "MACRO"}  # folder -> the object each file creates
HISTORY = "history"  # superseded definitions kept as test oracles, never loaded
LEDGER_FILE = "ledger.json"
# The tables metricsduck binds before any definition is applied: the sidecar rows, the marks
# and the settings. Definitions read them; they are not definitions themselves.
INPUTS = ("facts_raw", "samples_raw", "marks_raw", "settings", "settings_metrics", "settings_wide")
# The per-metric rules of `settings_metrics` come from these config keys.
METRIC_SETTINGS = ("drift.critical_metrics", "drift.overrides", "drift.direction")

_TOKENS = re.compile(
    r"--[^\n]*|/\*.*?\*/"            # comments (dropped)
    r"|'(?:[^']|'')*'"               # string literals
    r'|"(?:[^"]|"")*"'               # quoted identifiers
    r"|[A-Za-z_][A-Za-z0-9_]*"       # identifiers and keywords
    r"|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"  # numbers
    r"|\S",                          # any other character
    re.S,
)
_HEAD = re.compile(r"CREATE\s+OR\s+REPLACE\s+(VIEW|MACRO)\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# A definition's documentation says how its rows may be computed in parts (docs/design.md
# §13): `Shard: baseline_key.` (its rows for one value of the columns come from that
# value's input rows alone) or `Shard: broadcast.` (small; computed once, the same in every part).
_SHARD = re.compile(r"\bShard: (broadcast|[a-z_]+(?:, [a-z_]+)*)\.")
BROADCAST = "broadcast"


def packaged_sql_dir() -> Path:
    return Path(str(resources.files("metricsduck").joinpath("sql")))


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKENS.findall(text) if not t.startswith(("--", "/*"))]


def _statement_count(text: str) -> int:
    """The statements of `text`: runs of tokens between semicolons (strings, quoted names and
    comments are tokens of their own, so a semicolon inside one does not count)."""
    count, pending = 0, False
    for token in _tokens(text):
        if token == ";":
            count, pending = count + pending, False
        else:
            pending = True
    return count + pending


def normalised(text: str) -> str:
    """`text` without comments, its tokens single-spaced, keywords and names in lower case
    (string literals as written): what a fingerprint hashes, so layout and documentation
    edits do not change it."""
    return " ".join(t if t.startswith("'") else t.lower() for t in _tokens(text))


def mentions(text: str) -> tuple[set[str], set[str]]:
    """`(relations, identifiers)` a definition's text mentions.

    `relations`: names that may be read as a relation or called as a macro: unqualified
    identifiers that are not an alias (`AS name`), and string literals holding one name
    (the relation a table macro is handed, as in `trends_of('cohort_runs')`).
    `identifiers`: every identifier, qualified ones (`cfg.psi_bins`) included.
    """
    relations, identifiers = set(), set()
    previous = ""
    for token in _tokens(text):
        if token.startswith("'"):
            inner = token[1:-1]
            if _NAME.fullmatch(inner):
                relations.add(inner)
        elif token[0].isalpha() or token[0] == "_":
            name = token.lower()
            identifiers.add(name)
            if previous not in (".", "as"):
                relations.add(name)
        previous = token.lower()
    return relations, identifiers


@dataclass(frozen=True)
class Definition:
    """One view or macro: its file, its statement, what it reads and its fingerprint."""

    name: str
    kind: str  # VIEW or MACRO
    path: Path
    text: str  # the whole file
    statement: str  # the CREATE OR REPLACE statement, without the documentation before it
    doc: str  # the leading comment, as one paragraph
    dependencies: tuple[str, ...]  # definitions it reads, sorted
    settings: tuple[str, ...]  # config keys it reads itself, sorted
    fingerprint: str

    @property
    def table_macro(self) -> bool:
        """A macro returning a table (`AS TABLE`), which DuckDB names `MACRO TABLE`."""
        return self.kind == "MACRO" and re.search(r"\)\s+AS\s+TABLE\b", self.statement[:400], re.I) is not None

    def statement_as(self, name: str) -> str:
        """The statement creating the definition as `name` (a qualified name)."""
        return _HEAD.sub(lambda m: f"{m[0][:m.start(2) - m.start()]}{name}", self.statement, count=1)

    @property
    def shard(self) -> tuple[str, ...] | None:
        """The columns its documentation shards it by (`_SHARD`); () for broadcast, None where
        it says nothing (a scalar macro)."""
        found = _SHARD.search(self.doc)
        if found is None:
            return None
        return () if found[1] == BROADCAST else tuple(found[1].split(", "))

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class Catalog:
    """Every definition of one SQL folder, in an order that applies each after its
    dependencies (ties by name, so the order is the same on every machine)."""

    folder: Path
    definitions: tuple[Definition, ...]

    def __getitem__(self, name: str) -> Definition:
        return self.by_name[name]

    def __iter__(self):
        return iter(self.definitions)

    def __len__(self) -> int:
        return len(self.definitions)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    @functools.cached_property
    def by_name(self) -> dict[str, Definition]:
        return {d.name: d for d in self.definitions}

    def closure(self, names: Iterable[str]) -> set[str]:
        """`names` (those that are definitions) and every definition they read, transitively."""
        by_name = self.by_name
        seen: set[str] = set()
        stack = [n for n in names if n in by_name]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(by_name[name].dependencies)
        return seen

    def reads(self, name: str) -> tuple[str, ...]:
        """The config keys that `name` and everything it is built on read, sorted."""
        by_name = self.by_name
        return tuple(sorted({key for dep in self.closure([name]) for key in by_name[dep].settings}))

    def fingerprints(self) -> dict[str, str]:
        return {d.name: d.fingerprint for d in self.definitions}


def _split(path: Path, text: str, kind: str) -> tuple[str, str, str]:
    """`(name, statement, doc)` of the one definition in a file, checked (its SQL is checked
    by DuckDB when it is applied, with the file and line of any error)."""
    statements = _statement_count(text)
    if statements != 1:
        raise SqlFileError(path, None, f"holds {statements} statements; each file holds exactly one "
                                       "CREATE OR REPLACE of the name of the file")
    head = _HEAD.search(text)
    if head is None or head.group(1).upper() != kind:
        raise SqlFileError(path, None, f"must hold CREATE OR REPLACE {kind} {path.stem} (files under "
                                       f"{path.parent.name}/ define {kind.lower()}s)")
    if head.group(2) != path.stem:
        line = text.count("\n", 0, head.start()) + 1
        raise SqlFileError(path, line, f"defines {head.group(2)!r}, not {path.stem!r}: name the file "
                                       "like what it defines")
    before = text[:head.start()]
    if _tokens(before):
        raise SqlFileError(path, None, "only comments may come before CREATE OR REPLACE")
    doc = " ".join(line.strip().lstrip("-").strip() for line in before.strip().splitlines())
    return head.group(2), text[head.start():].strip(), doc


def _ordered(found: dict[str, tuple[str, Path, str, str, str, set[str], set[str]]]) -> list[str]:
    """The names in dependency order (ties by name); a cycle is an error naming its files."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name):] + [name]
            files = " -> ".join(f"{found[n][1].parent.name}/{found[n][1].name}" for n in cycle)
            raise SqlFileError(found[name][1], None, f"dependency cycle: {files}; a definition cannot "
                                                     "read itself through others")
        state[name] = "visiting"
        for dep in sorted(found[name][5]):
            visit(dep, trail + [name])
        state[name] = "done"
        order.append(name)

    for name in sorted(found):
        visit(name, [])
    return order


def discover(sql_dir: Path | None = None, settings: Mapping[str, str] | None = None) -> Catalog:
    """The definitions of `sql_dir` (the packaged SQL by default), checked and ordered.

    `settings` maps each column of `settings_wide` to its config key (by default the
    packaged config's); a definition reads the keys of the columns it mentions, and
    `METRIC_SETTINGS` where it mentions `settings_metrics`.
    """
    from .settings import settings_columns

    folder = Path(sql_dir) if sql_dir is not None else packaged_sql_dir()
    columns = dict(settings) if settings is not None else {c.column: c.key for c in settings_columns()}
    files = sorted(folder.rglob("*.sql"))
    # parsing the files is most of the cost; a folder whose files are unchanged gives the
    # same catalog (every store and CLI command discovers it)
    key = (str(folder.resolve()), tuple(sorted(columns.items())),
           tuple((str(f), st.st_mtime_ns, st.st_size) for f in files for st in (f.stat(),)))
    if key not in _DISCOVERED:
        if len(_DISCOVERED) >= 8:
            _DISCOVERED.pop(next(iter(_DISCOVERED)))
        _DISCOVERED[key] = _discover(folder, columns, files)
    return _DISCOVERED[key]


_DISCOVERED: dict[tuple, Catalog] = {}


def _discover(folder: Path, columns: dict[str, str], found_files: list[Path]) -> Catalog:
    """`discover` of the `.sql` files found under `folder`, read and checked."""
    for stray in found_files:
        place = stray.relative_to(folder).parts
        if place[0] not in (*KINDS, HISTORY) or len(place) != 2:
            raise SqlFileError(stray, None, "is not in views/ or macros/, so it would never be loaded; move it "
                                            "there (one definition per file) or remove it")
    files: dict[str, Path] = {}
    raw: dict[str, tuple[str, Path, str, str, str, set[str], set[str]]] = {}
    for sub, kind in KINDS.items():
        for path in sorted((folder / sub).glob("*.sql")):
            if not _NAME.fullmatch(path.stem):
                raise SqlFileError(path, None, "SQL files are named <lower_snake_name>.sql after what they define")
            if path.stem in files or path.stem in INPUTS:
                other = files.get(path.stem)
                where = f"{other.parent.name}/{other.name}" if other else "a table metricsduck binds"
                raise SqlFileError(path, None, f"a second definition of {path.stem!r} (also {where}); "
                                               "keep one definition per name")
            files[path.stem] = path
            text = path.read_text("utf-8")
            name, statement, doc = _split(path, text, kind)
            relations, identifiers = mentions(statement)
            raw[name] = (kind, path, text, statement, doc, relations, identifiers)
    if not raw:
        raise SqlFileError(folder, None, "holds no views/*.sql or macros/*.sql")
    for name, found in raw.items():  # only definitions are dependencies, never itself
        found[5].intersection_update(set(raw) - {name})
    order = _ordered(raw)
    definitions: dict[str, Definition] = {}
    for name in order:
        kind, path, text, statement, doc, relations, identifiers = raw[name]
        keys = {columns[i] for i in identifiers if i in columns}
        if "settings_metrics" in identifiers:
            keys.update(METRIC_SETTINGS)
        deps = tuple(sorted(relations))
        body = "\n".join([
            f"{kind} {name}",
            normalised(statement),
            "dependencies " + " ".join(f"{d}={definitions[d].fingerprint}" for d in deps),
            "settings " + " ".join(sorted(keys)),
        ])
        fingerprint = hashlib.sha256(body.encode()).hexdigest()
        definitions[name] = Definition(name, kind, path, text, statement, doc, deps, tuple(sorted(keys)),
                                       fingerprint)
    return Catalog(folder, tuple(definitions[name] for name in order))


# --- the ledger ------------------------------------------------------------------------------

def ledger_path(sql_dir: Path | None = None) -> Path:
    return (Path(sql_dir) if sql_dir is not None else packaged_sql_dir()) / LEDGER_FILE


def read_ledger(sql_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """`{release: {name: fingerprint}}` of the ledger file, {} if there is none."""
    path = ledger_path(sql_dir)
    try:
        return json.loads(path.read_text("utf-8"))["releases"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        raise SqlFileError(path, None, f"not a ledger ({exc}); restore it from git") from None


def ledger_changes(catalog: Catalog, release: str) -> list[tuple[str, str | None, str | None]]:
    """`(name, recorded, now)` of every definition whose fingerprint differs from the one the
    ledger records for `release` (None: not recorded, or no longer defined)."""
    recorded = read_ledger(catalog.folder).get(release, {})
    now = catalog.fingerprints()
    return [(name, recorded.get(name), now.get(name)) for name in sorted(set(recorded) | set(now))
            if recorded.get(name) != now.get(name)]


def update_ledger(catalog: Catalog, release: str) -> Path:
    """Record the catalog's fingerprints as those of `release` in the ledger file."""
    from ..files import write_atomic

    releases = read_ledger(catalog.folder)
    releases[release] = dict(sorted(catalog.fingerprints().items()))
    path = ledger_path(catalog.folder)
    text = json.dumps({"releases": dict(sorted(releases.items()))}, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode())
    return path
