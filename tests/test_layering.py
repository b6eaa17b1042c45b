"""The house's layers: no package imports one above it, no module imports a cycle,
nothing reaches into another package's private names (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import perfsdk

#: Bottom to top: a package may import only packages listed before it (and itself).
LAYERS = ["_version", "_runtime", "_native", "detect", "export", "adapt", "instrument",
          "testgen", "report", "demo", "checks", "cli", "perfgate", "__init__"]
ROOT = Path(perfsdk.__file__).parent


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def perfsdk_modules() -> dict[str, str]:
    """Module name -> source, for every .py file in the package."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] if len(parts) > 1 else parts
        modules[".".join(parts)] = path.read_text()
    return modules


def imports_of(module: str, source: str) -> list[tuple[str, list[str], bool]]:
    """(imported module, names taken from it, runs at import time) for each perfsdk import."""
    is_package = module == "perfsdk" or (ROOT.parent / module.replace(".", "/") / "__init__.py").exists()
    found = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit_one(sub, False)
                continue
            visit_one(child, runs)

    def visit_one(node: ast.AST, runs: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, [], runs) for a in node.names if a.name.startswith("perfsdk"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("perfsdk"):
                found.append((base, [a.name for a in node.names], runs))
        visit(node, runs)

    visit(ast.parse(source), True)
    return found


def layering_problems(modules: dict[str, str]) -> list[str]:
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in modules.items():
        mine = package_of(module)
        found = []
        for target, names, runs in imports_of(module, source):
            submodules = [n for n in names if f"{target}.{n}" in modules]  # `from perfsdk import detect`
            found += [(f"{target}.{n}", [], runs) for n in submodules]
            if len(submodules) < len(names) or not names:
                found.append((target, [n for n in names if n not in submodules], runs))
        for target, names, runs in found:
            theirs = package_of(target)
            if theirs not in LAYERS or mine not in LAYERS:
                problems.append(f"{module}: {target} is in no layer (add it to LAYERS and the docs)")
            elif LAYERS.index(theirs) > LAYERS.index(mine):
                problems.append(f"{module} imports {target}: an upward import ({mine} is below {theirs})")
            if theirs != mine and mine != "__init__":
                private = [p for p in target.split(".")[2:] if p.startswith("_")]
                private += [n for n in names if n.startswith("_") and n != "__version__"]
                if private:
                    problems.append(f"{module} imports private {', '.join(private)} of {target}")
            if runs:
                graph[module].update(t for t in [target] if t in modules)
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan would do; a DFS suffices)."""
    found, state, stack = [], {}, []

    def walk(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or package_of(nxt) == nxt:  # a package's own __init__ re-exports: not a cycle
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return found


def test_perfsdk_has_no_upward_import_no_cycle_and_no_private_reach():
    assert layering_problems(perfsdk_modules()) == []


def test_the_check_fails_when_a_defect_is_put_back():
    """The shortcuts this test was written against, put back, are each caught."""
    modules = perfsdk_modules()
    broken = {
        **modules,
        # the cache reading the instrumentation's hook registry (an upward import)
        "perfsdk.adapt.cache": modules["perfsdk.adapt.cache"] + "\nfrom perfsdk.instrument.decorator import monitor\n",
        # analyze reaching into the reader's private helper
        "perfsdk.export.analyze": modules["perfsdk.export.analyze"] + "\nfrom perfsdk.detect._base import check_slots\n",
    }
    problems = layering_problems(broken)
    assert any("perfsdk.adapt.cache imports perfsdk.instrument.decorator: an upward import" in p for p in problems)
    assert any("imports private _base" in p for p in problems)
    cyclic = {"perfsdk.detect.a": "from perfsdk.detect import b\n", "perfsdk.detect.b": "import perfsdk.detect.a\n"}
    assert any("import cycle" in p for p in layering_problems(cyclic))
