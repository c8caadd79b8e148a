"""What one Lambda asset holds: its `lambdas/<name>/` folder and the `sav_router` modules it imports.

The modules are found from the handler's imports, transitively, by parsing each file with `ast`
(imports inside functions and under `if TYPE_CHECKING` counted, so a lazy import is never missing
from a bundle). A module's package `__init__.py` files come with it: Python runs them on import.
Only `.py` files ship: no module a handler imports reads a data file of the package (the console's
templates and the samples are read by the console and the quickstart only).

The same listing is what the bundle copies and what the asset hash covers, so a function's hash
changes only when its own code does: a console template or an unrelated module changes nothing.
Pure Python (no CDK import): the tests call it directly.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sav_router"


def _imported_names(path: Path, module: str, is_package: bool) -> set[str]:
    """Dotted names an importing file may load: `import a.b` -> a.b; `from a import b` -> a and a.b (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _module_files(name: str, root: Path) -> list[tuple[str, Path]]:
    """(module name, file) of `name` and of each package above it, inside `root`; [] outside the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return []
    found = []
    for depth in range(1, len(parts) + 1):
        stem = root.joinpath(*parts[:depth])
        if (stem / "__init__.py").is_file():
            found.append((".".join(parts[:depth]), stem / "__init__.py"))
        elif stem.with_suffix(".py").is_file():
            found.append((".".join(parts[:depth]), stem.with_suffix(".py")))
            break  # a module: what follows is an attribute of it
        else:
            break  # an attribute (a function, a class) of the package above
    return found


def package_closure(entries: list[Path], root: Path = REPO) -> list[Path]:
    """The `sav_router` files that the Python files `entries` import, transitively, sorted."""
    seen: dict[Path, None] = {}
    pending: list[tuple[Path, str, bool]] = [(path, "", False) for path in entries]
    while pending:
        path, module, is_package = pending.pop()
        for name in _imported_names(path, module, is_package):
            for found_module, file in _module_files(name, root):
                if file not in seen:
                    seen[file] = None
                    pending.append((file, found_module, file.name == "__init__.py"))
    return sorted(seen)


def handler_files(folder: Path) -> list[Path]:
    """The function's own folder: handler, requirements.txt and anything beside them (no byte code)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def asset_sources(folder: Path, root: Path = REPO) -> dict[str, Path]:
    """Path inside the asset -> source file: the handler folder at the top, the imported modules under sav_router/."""
    own = handler_files(folder)
    sources = {path.relative_to(folder).as_posix(): path for path in own}
    for path in package_closure([p for p in own if p.suffix == ".py"], root):
        sources[path.relative_to(root).as_posix()] = path
    return sources


def source_digest(folder: Path, root: Path = REPO) -> str:
    """The asset hash: each shipped file's path in the asset and its bytes (requirements.txt included)."""
    digest = hashlib.sha256()
    for name, path in sorted(asset_sources(folder, root).items()):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
