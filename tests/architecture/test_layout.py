"""The package's architecture, checked: imports flow one way, light code stays light.

GIVEN the source of every module of `sav_router` (parsed, not imported)
WHEN its imports are drawn as a graph (module level and inside functions)
THEN the graph has no cycle, `core/` depends on nothing but itself, and the
command-line parser and the routing Lambda's modules load no numeric library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "sav_router"
HEAVY = ("numpy", "scipy", "torch", "transformers", "sklearn", "onnxruntime", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The project module an import refers to (a `from pkg import mod` names a module too)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                if not target.startswith("sav_router"):
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != name and not name.startswith(resolved + ".") and resolved != "sav_router":
                    graph[name].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_core_depends_on_nothing_above_it():
    graph = import_graph()
    for module in (m for m in graph if m.startswith("sav_router.core")):
        outside = {d for d in graph[module] if not d.startswith("sav_router.core") and d != "sav_router.env"}
        assert not outside, f"{module} imports {sorted(outside)}"


def _loaded_heavy(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_building_the_cli_parser_loads_no_numeric_library():
    assert _loaded_heavy("import sav_router.cli as c; c.build_parser()") == []


def test_review_help_loads_no_numeric_library():
    code = ("import contextlib, io, sav_router.cli as c\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    c.main(['review', '--help'])")
    assert _loaded_heavy(code) == []


def test_every_ood_method_of_the_config_has_a_detector():
    from sav_router.model.ood import DETECTORS
    from sav_router.training.config import OOD_METHODS

    assert set(DETECTORS) == set(OOD_METHODS)


def test_estimator_defaults_are_train_config_defaults():
    import inspect

    from sav_router.training.config import TrainConfig
    from sav_router.training.estimator import RouterClassifier

    config = TrainConfig()
    parameters = inspect.signature(RouterClassifier).parameters
    shared = [name for name in parameters if name not in ("log",)]
    assert set(shared) <= set(vars(config)), set(shared) - set(vars(config))
    for name in shared:
        assert parameters[name].default == getattr(config, name), name
