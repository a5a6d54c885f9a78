"""The architecture holds: no import circles inside spotgrace, and the layer contracts are kept.

The contracts themselves live in ``pyproject.toml`` (``[tool.importlinter]``)
and are checked by ``lint-imports`` in the test command; this file checks what
import-linter does not: that no two spotgrace modules import each other,
directly or through others (``TYPE_CHECKING`` imports included).
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if graph.chain_exists(importer=imported, imported=importer):
                found.append((importer, imported))
    return found


def test_no_import_circles() -> None:
    graph = grimp.build_graph("spotgrace")
    assert len(graph.modules) > 40  # the whole package was read
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert ("pkg.a", "pkg.b") in _cycles(graph)
