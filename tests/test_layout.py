"""The house rules of ``engine/`` (issue #26): packages by concern, each importing only what its
docstring's "May import:" line names, no cycles, nothing of the UI; and the tabs' shape."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"
BASICS = {"engine.errors", "engine.limits"}  # the only modules outside a package
UI = ("gradio", "ui", "tabs", "app")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ENGINE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (a lazy import is still a
    dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def package(module: str) -> str:
    """``engine.models.llm`` → ``engine.models``; a basic module is its own package."""
    return module if module in BASICS or module == "engine" else ".".join(module.split(".")[:2])


def allowed(pkg: str) -> set[str] | None:
    """The packages ``pkg``'s docstring lets it import (None: any, for the top)."""
    doc = ast.get_docstring(ast.parse((ENGINE / pkg.split(".")[1] / "__init__.py").read_text())) or ""
    line = re.search(r"May import:(.*?)(?:\n\n|$)", doc, re.S)
    assert line, f"{pkg}/__init__.py does not say what it may import"
    if "every other package" in line.group(1):
        return None
    return set(re.findall(r"``(engine\.\w+)``", line.group(1)))


def test_engine_is_packages_and_a_few_basics():
    loose = {m for m, p in MODULES.items() if p.parent == ENGINE and m != "engine"}
    assert loose == BASICS
    for init in ENGINE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.parent.name} says nothing of what it owns"


def test_each_package_imports_only_what_it_declares():
    wrong = []
    for module, path in MODULES.items():
        pkg = package(module)
        if pkg in BASICS or pkg == "engine":
            rules = BASICS - {pkg}
        else:
            rules = allowed(pkg)
        for target in imports(path):
            if target.split(".")[0] in UI:
                wrong.append(f"{module} imports the UI ({target})")
            if not target.startswith("engine.") or package(target) == pkg or rules is None:
                continue
            if package(target) not in rules:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_cycles_between_modules():
    graph = {m: {t for t in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exports its modules: an edge into a package's own __init__ from inside it is not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and t == package(m))}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_rules_catch_an_upward_import(tmp_path):
    """The check itself can fail: models may not import serving."""
    rules = allowed("engine.models")
    assert "engine.serving" not in rules and "engine.runtime" in rules
    assert allowed("engine.gpu_tasks") is None



# ------------------------------------------------------------------------------------------ tabs
TABS = ROOT / "tabs"
LONGEST_TAB_FUNCTION = 80  # lines: a tab is a layout, named handlers and their wiring (tabs/__init__.py)


def long_functions(source: str, limit: int = LONGEST_TAB_FUNCTION) -> list[tuple[str, int, int]]:
    """(name, line, length) of every function in ``source`` (nested ones included) longer than
    ``limit`` lines, its decorators counted."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - start + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return found


def test_no_function_in_tabs_is_over_80_lines():
    too_long = [f"tabs/{path.name}:{line} {name} ({length} lines)" for path in sorted(TABS.glob("*.py"))
                for name, line, length in long_functions(path.read_text())]
    assert too_long == []


def test_the_length_check_sees_nested_functions():
    body = "\n".join(f"        x{i} = {i}" for i in range(LONGEST_TAB_FUNCTION))
    source = f"def build():\n    def handler():\n{body}\n    return handler\n"
    assert [(name, length) for name, _, length in long_functions(source)] == [("build", 83), ("handler", 81)]
    assert long_functions(source, 83) == []


def test_every_tab_module_has_the_same_parts():
    """tabs/__init__.py, "How a tab is written": a View, its layout, the wiring and build, in that order."""
    wrong = []
    for path in sorted(TABS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        order = [node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))
                 and node.name in ("View", "layout", "wire", "build")]
        if order != ["View", "layout", "wire", "build"]:
            wrong.append(f"tabs/{path.name}: {order}")
    assert wrong == []
