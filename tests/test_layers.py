"""No module imports from a layer above its own, lazily (inside a function) or not.

The layers, lowest first, written once: a package may import from its own package and from
the layers below. docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import clickstream

LAYERS: list[set[str]] = [
    {"errors", "__version__"},
    {"children"},
    {"settings", "lock", "maven", "watchdog", "signals"},
    {"events", "kafka"},
    {"spark"},
    {"broker", "sinks"},
    {"streaming"},
    {"jobs", "collector", "dashboard", "bookstore", "supervisor"},
    {"simulators", "status", "parts", "tail", "dead_letters"},
    {"stack"},
    {"cli"},
    {"__main__"},
]
"""``bookstore`` (the app) sits below ``simulators``, whose bookstore visitors use its pages;
``children`` below ``maven`` and ``watchdog``, whose children die with them through it."""

PACKAGE = Path(clickstream.__file__).parent


def layer_of(unit: str) -> int:
    found = [i for i, names in enumerate(LAYERS) if unit in names]
    assert found, f"clickstream.{unit} is in no layer: add it to LAYERS in {__file__}"
    return found[0]


def unit_of(module: str) -> str:
    """``clickstream.sinks.base`` -> ``sinks``; ``clickstream`` (the root) -> ``__version__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__version__"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, clickstream unit) of every import of ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "clickstream":
                found += [(node.lineno, alias.name) for alias in node.names]
            elif node.module.startswith("clickstream."):
                found.append((node.lineno, unit_of(node.module)))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, unit_of(a.name))
                for a in node.names
                if a.name.startswith("clickstream.")
            ]
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        own = "__version__" if own == "__init__" else own
        level = layer_of(own)
        for line, unit in imports(path):
            if unit != own and layer_of(unit) >= level:
                wrong.append(f"{rel}:{line} imports clickstream.{unit} (layer {layer_of(unit)})")
    return wrong


def test_no_module_imports_from_its_own_layer_or_above() -> None:
    assert upward_imports() == []


def test_every_package_has_a_layer() -> None:
    units = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/*.py")}
    for unit in sorted("__version__" if u == "__init__" else u for u in units):
        layer_of(unit)


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from clickstream.stack import Stack\n")
    assert imports(module) == [(2, "stack")]
    assert layer_of("stack") > layer_of("streaming")
