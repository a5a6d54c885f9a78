"""MkDocs hooks for the documentation site (``hooks:`` in ``mkdocs.yml``).

The docstrings use Sphinx roles (``:class:`Hook```); mkdocstrings renders
them as text. This turns ``:class:<code>X</code>`` back into ``<code>X</code>``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):\s*(?=<code)")


def on_page_content(html: str, **_: Any) -> str:
    """Drop Sphinx role prefixes left in rendered docstrings."""
    return _ROLE.sub("", html)
