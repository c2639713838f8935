"""The package's layers, read from its source with ``ast`` (nothing is imported).

* ``models/`` holds networks only: it imports torch, sibling model files and ``aigc_lib.config``;
* ``training/`` trains models; the recipes in ``zoo/`` use it, never the other way round;
* ``metrics/`` take what they measure with (a classifier, a model) as an argument: no recipe, no
  training loop, no cache;
* no import cycles among the package's modules, at import time or counting imports inside functions.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aigc_lib"
MODELS_RULE = "models/ imports only torch, sibling model files and aigc_lib.config"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return FILES[name].name == "__init__.py"


def parse(name: str) -> ast.Module:
    path = FILES[name]
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        pytest.fail(f"{path.relative_to(ROOT)} does not parse: {err}")


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST, module_level: bool):
    """Every Import / ImportFrom in ``tree``; with ``module_level``, only those run when the module is
    imported (not inside functions, nor under ``if TYPE_CHECKING:``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if module_level and isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, module_level: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` for each aigc_lib module that ``name`` imports.

    ``from aigc_lib.x import y`` is module ``aigc_lib.x.y`` when that is a module, else ``aigc_lib.x``;
    a package stands for its ``__init__``.
    """
    found = []
    for node in import_nodes(parse(name), module_level):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: from the module's own package, up level - 1 packages
                base = name.split(".") if is_package(name) else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in FILES else source for a in node.names]
        for target in targets:
            if target == "aigc_lib" or target.startswith("aigc_lib."):
                while target not in FILES and "." in target:  # `import aigc_lib.x.thing` of a non-module
                    target = target.rsplit(".", 1)[0]
                found.append((node.lineno, target))
    return sorted(set(found))


def test_the_walk_sees_the_whole_package():
    assert {"aigc_lib", "aigc_lib.config", "aigc_lib.models.gpt", "aigc_lib.zoo", "aigc_lib.zoo.recipe",
            "aigc_lib.training.loop"} <= set(FILES)
    assert ("aigc_lib.zoo.recipe" in {m for _, m in imported_modules("aigc_lib.zoo")})


def test_models_import_only_torch_sibling_models_and_config():
    bad = []
    for name in FILES:
        if name.startswith("aigc_lib.models."):
            for line, target in imported_modules(name):
                if not (target.startswith("aigc_lib.models.") or target in ("aigc_lib.models", "aigc_lib.config")):
                    bad.append(f"{FILES[name].relative_to(ROOT)}:{line} imports {target}")
    assert not bad, f"{MODELS_RULE}; but:\n" + "\n".join(bad)


def test_metrics_take_what_they_measure_with():
    bad = [f"{FILES[name].relative_to(ROOT)}:{line} imports {target}"
           for name in FILES if name.startswith("aigc_lib.metrics.")
           for line, target in imported_modules(name)
           if any(target == f"aigc_lib.{layer}" or target.startswith(f"aigc_lib.{layer}.")
                  for layer in ("zoo", "training", "cache"))]
    assert not bad, "metrics/ must be given the model it measures with, not load a recipe:\n" + "\n".join(bad)


def test_training_does_not_import_the_zoo():
    bad = [f"{FILES[name].relative_to(ROOT)}:{line} imports {target}"
           for name in FILES if name.startswith("aigc_lib.training.")
           for line, target in imported_modules(name)
           if target == "aigc_lib.zoo" or target.startswith("aigc_lib.zoo.")]
    assert not bad, "training/ must not import aigc_lib.zoo (the recipes use training, not the reverse):\n" + \
        "\n".join(bad)


def import_graph(module_level: bool = True) -> dict[str, set[str]]:
    return {name: {t for _, t in imported_modules(name, module_level)} - {name} for name in FILES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected component that has one (Tarjan)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w), component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for component in components:  # a shortest path back to the start, inside the component
        start = min(component)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(graph[path[-1]] & component)
            if start in nxt:
                cycles.append(path + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w), paths.append(path + [w])
    return cycles


def test_find_cycles_on_a_known_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module_level", [True, False], ids=["at import time", "counting imports in functions"])
def test_no_import_cycles(module_level):
    cycles = find_cycles(import_graph(module_level))
    assert not cycles, "import cycles among aigc_lib modules:\n" + "\n".join(" -> ".join(c) for c in cycles)
