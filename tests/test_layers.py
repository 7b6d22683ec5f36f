"""Which packages may import which: the store and the contracts stand below service and workers.

Read from the source with `ast`, so imports inside functions count as well as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "slimformer"
FORBIDDEN = {
    "store": ("slimformer.service", "slimformer.workers", "slimformer.cli", "slimformer.client"),
    "contracts": ("slimformer.service", "slimformer.workers", "slimformer.store", "slimformer.cli"),
    "workers": ("slimformer.service", "slimformer.cli", "slimformer.client"),
    # The HTTP client library stands alone: no server side, no training stack, no commands.
    # ("slimformer.cli." with its dot: names are matched as prefixes, and slimformer.client is its own.)
    "client": ("slimformer.service", "slimformer.store", "slimformer.workers", "slimformer.cli.",
               "slimformer.supernet", "slimformer.search"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    offences = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in sorted(_imports(path))
        if name.startswith(FORBIDDEN[package])
    ]
    assert not offences, "\n".join(offences)
