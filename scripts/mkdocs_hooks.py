"""MkDocs hooks for the documentation site (``hooks:`` in ``mkdocs.yml``).

The docstrings use Sphinx roles (``:class:`Hook```) and directives
(``.. warning::``); mkdocstrings renders both as text. This turns
``:class:<code>X</code>`` back into ``<code>X</code>``, and a paragraph that
opens with ``.. warning::`` (or note, tip, danger, ...) into the theme's
admonition box; the ``::`` that introduces a literal block becomes ``:``
(or goes, when it stands alone).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):\s*(?=<code)")
_DIRECTIVE = re.compile(
    r"<p>\.\. (?P<kind>warning|note|tip|important|caution|danger|attention|hint|seealso)::"
    r"\s*(?P<body>.*?)</p>",
    re.DOTALL,
)


_LITERAL_ALONE = re.compile(r'<p>::</p>\s*(?=<div class="highlight">)')
_LITERAL_END = re.compile(r'::</p>(?=\s*<div class="highlight">)')


def _admonition(match: re.Match[str]) -> str:
    kind = match["kind"]
    css = {"seealso": "info", "caution": "warning", "attention": "warning"}.get(kind, kind)
    title = "See also" if kind == "seealso" else kind.capitalize()
    return (
        f'<div class="admonition {css}"><p class="admonition-title">{title}</p>'
        f"<p>{match['body']}</p></div>"
    )


def on_page_content(html: str, **_: Any) -> str:
    """Drop Sphinx role prefixes and box Sphinx admonitions left in rendered docstrings."""
    html = _DIRECTIVE.sub(_admonition, _ROLE.sub("", html))
    return _LITERAL_END.sub(":</p>", _LITERAL_ALONE.sub("", html))
