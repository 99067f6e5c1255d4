"""What every HTML/Markdown reader shares: the template environment, inline SVG charts, Markdown escaping.

A report is one self-contained file: no fonts, scripts or styles from
elsewhere, and no `http://` or `https://` string anywhere, so it opens the
same offline, in a CI artifact viewer or attached to an e-mail. Three rules
make that hold:

* templates live in this package (`reports/templates/`, shipped as package
  data) and render through `environment()`, whose autoescape turns every user
  string (labels, reasons, hardware names) into text, never markup;
* charts are matplotlib figures turned into inline `<svg>` by `svg(fig)`, which
  drops the XML prolog, the DOCTYPE, the RDF metadata and the namespace
  declarations (HTML5 parses inline SVG without them) and gives each chart's
  ids a prefix of their own, so two charts on one page never share a clip path;
* `md(text)` escapes a user string for a cell of a GitHub-flavoured Markdown
  table, where `|` would split the cell and `<...>` would be taken as HTML.

Build figures with `matplotlib.figure.Figure` directly (never pyplot: its
global state leaks figures between reports and picks a GUI backend).
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import jinja2
from markupsafe import Markup

# Text stays text (selectable, small) and names only generic families, so no font is fetched or embedded.
SVG_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "aigcbench",  # deterministic ids: the same report renders to the same bytes
    "font.family": "sans-serif",
    "font.size": 9.0,
}

_PROLOG = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')


def environment() -> jinja2.Environment:
    """A jinja2 environment over `reports/templates/`, autoescaping everything, failing on undefined names.

    `StrictUndefined` turns a template's typo into an error at render time
    instead of a silently empty cell; autoescape is on for every template
    (`.html.j2` names would escape their way out of `select_autoescape`'s defaults).
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aigcbench.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = md
    return env


def svg(fig: Any) -> Markup:
    """A matplotlib `Figure` as an inline `<svg>` element (safe markup), with no URL in it; frees the figure."""
    import matplotlib

    buffer = io.StringIO()
    try:
        with matplotlib.rc_context(SVG_RC):
            fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    finally:
        fig.clear()
    text = buffer.getvalue()
    # A prefix from the content: distinct charts get distinct ids, and the same report the same bytes.
    prefix = "c" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    return Markup(inline_svg(text, prefix=prefix))


def inline_svg(text: str, prefix: str) -> str:
    """SVG document text made fit to sit inside HTML: no prolog, metadata or xmlns; ids prefixed."""
    text = _METADATA.sub("", _PROLOG.sub("", text))
    text = _XMLNS.sub("", text)
    ids = set(_ID.findall(text))
    if ids:
        # Rewrite the definitions and every reference to them (url(#id), href="#id") in one pass.
        pattern = re.compile(r'(\bid="|url\(#|href="#)(' + "|".join(map(re.escape, sorted(ids, key=len, reverse=True)))
                             + r')(?=["\)])')
        text = pattern.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)
    return text.strip()


# Inline markup only: a table cell is parsed as inline text, so block markers (#, -, 1.) are harmless there.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """A value as literal text in a GitHub Markdown table cell: markup characters escaped, HTML neutralised.

    `|` would end the cell, `<b>` would render as HTML (and `<script>` be
    stripped from sight), a newline would end the row.
    """
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.splitlines())
