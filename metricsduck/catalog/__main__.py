"""`python -m metricsduck.catalog`: the definitions' fingerprints against the ledger.

With `--update-ledger`, record the current fingerprints as this release's in
`metricsduck/sql/ledger.json` (do it in the commit that changes a definition, so the
change is visible in review). Exits 1 when the ledger does not match.
"""

from __future__ import annotations

import sys

from .. import __version__
from .definitions import discover, ledger_changes, update_ledger


def main(argv: list[str]) -> int:
    catalog = discover()
    if "--update-ledger" in argv:
        print(f"wrote {update_ledger(catalog, __version__)}")
        return 0
    changes = ledger_changes(catalog, __version__)
    for name, recorded, now in changes:
        print(f"{name}: ledger {recorded and recorded[:12]}, now {now and now[:12]}")
    if changes:
        print(f"{len(changes)} definition(s) differ from the ledger of {__version__}; review the change, then run "
              "`python -m metricsduck.catalog --update-ledger`", file=sys.stderr)
        return 1
    print(f"{len(catalog)} definitions match the ledger of {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
