"""What every reading command (report, compare, history, export) shares: `--where`, `--store`, loading.

The option texts are defined once here and used by each command, so the
grammar reads the same in every `--help` (DESIGN.md, principle 5).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import UserError
from ..outputs import check_output, write_text_atomic  # noqa: F401  (the commands check and write their outputs with them)

WHERE_HELP = (
    "Select records: KEY=VALUE, repeatable; keys: workload, size, backend, precision, device, hardware, "
    "scenario, batch, status, since, until, or any label (commit, branch...); VALUE may be a,b (either)."
)
STORE_HELP = "Store: a SQLite path or a SQLAlchemy URL [default: $AIGCBENCH_STORE or ./aigcbench.db]."


def load_records(where: Sequence[str], store: str | None, *, samples: bool = True) -> tuple[list[Any], str]:
    """The stored records a `--where` selection names, and the store's URL.

    Refuses (UserError, exit 2) a store that does not exist (reading never
    creates one), a malformed or unknown key, and a selection that matches
    nothing — saying what the store does hold.
    """
    from ...reports.select import parse_where
    from ..store import Store, resolve_store_url

    selection = parse_where(where)
    if not Store.exists(store):
        raise UserError(f"no store at {resolve_store_url(store)}: run a sweep first, or pass --store")
    with Store.open(store) as opened:
        selection.check_labels(opened.label_keys())
        records = opened.select(selection, samples=samples)
        if not records:
            raise UserError(nothing_matches(selection, opened.holdings()))
        return records, opened.url


def nothing_matches(selection: Any, held: dict[str, Any]) -> str:
    """One line: the selection matched nothing, and what there is to select from."""
    if not held.get("records"):
        return f"the store holds no records (selection: {selection.describe()})"
    shown = "; ".join(
        f"{key}: {', '.join(map(str, values)) or '—'}"
        for key, values in held.items() if key != "records"
    )
    return f"no record matches {selection.describe()}; the store holds {held['records']} records ({shown})"
