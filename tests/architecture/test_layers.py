"""Packages import one way: the layers drawn in docs/architecture.md, enforced.

GIVEN the layer list in docs/architecture.md (a fenced `layers` block, top first)
WHEN every import of every module of `sav_router` is drawn as an edge between packages
    (module level, inside functions, relative imports resolved)
THEN no package imports one on its own line or above it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "sav_router"
DOC = REPO / "docs" / "architecture.md"


def declared_layers(text: str) -> list[set[str]]:
    """Layers, bottom first, from the doc's ```layers block: first words of each line (one line = one layer)."""
    match = re.search(r"```layers\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md has no ```layers block"
    # each line: package names separated by one space, then two or more spaces and what the layer is
    layers = [set(re.split(r"\s{2,}", line.strip())[0].split()) for line in match.group(1).splitlines() if line.strip()]
    return layers[::-1]


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sav_router" else None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_edges(root: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> examples 'module -> imported name'."""
    edges: dict[tuple[str, str], list[str]] = {}
    top = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()} | {p.stem for p in root.glob("*.py")}
    for path in root.rglob("*.py"):
        module = _module_name(path, root)
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                source, imported = package_of(module), package_of(target)
                if source and imported in top and source != imported:  # `from sav_router import __version__` is the root
                    edges.setdefault((source, imported), []).append(f"{module} -> {target}")
    return edges


def violations(edges: dict[tuple[str, str], list[str]], layers: list[set[str]]) -> list[str]:
    rank = {name: level for level, names in enumerate(layers) for name in names}
    found = []
    for (source, imported), examples in sorted(edges.items()):
        if source not in rank or imported not in rank:
            found.append(f"{source} -> {imported}: package not in the layers of docs/architecture.md ({examples[0]})")
        elif rank[imported] >= rank[source] and not (source == "core" and imported == "env"):
            found.append(f"{source} -> {imported} goes up or sideways ({len(examples)} imports, e.g. {examples[0]})")
    return found


def test_the_doc_declares_every_package():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    packages |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    declared = set().union(*declared_layers(DOC.read_text(encoding="utf-8")))
    assert packages == declared, f"undeclared: {sorted(packages - declared)}, stale: {sorted(declared - packages)}"


def test_packages_import_downwards_only():
    assert violations(package_edges(), declared_layers(DOC.read_text(encoding="utf-8"))) == []


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    # GIVEN a tiny package whose low layer imports a higher one inside a function (relative import)
    root = tmp_path / "sav_router"
    for name in ("low", "high"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
    (root / "low" / "mod.py").write_text("def f():\n    from ..high import thing\n")
    (root / "high" / "mod.py").write_text("from sav_router.low import mod\n")
    edges = package_edges(root)
    # THEN the check names the upward edge and only that one
    found = violations(edges, [{"low"}, {"high"}])
    assert len(found) == 1 and found[0].startswith("low -> high")
