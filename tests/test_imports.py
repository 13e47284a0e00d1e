"""The package's imports form layers without cycles.

Every import statement of every module is read with `ast` — at module level and
inside functions alike, since a function-level import is still a dependency —
and resolved to the patterndsl module it names. The test fails on a cycle, and
on an import that goes down the layers of docs/architecture.md

    ir → structure → primitives → reference → {analysis, layout} → codegen → targets, kernels → api, cli

the wrong way. The only imports allowed to break either rule are listed in
LAZY_LOADS below, each with the reason.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "patterndsl"

# (importer, imported): a function-level import that exists only to load something
# on demand — never to get around a cycle.
LAZY_LOADS = {
    # The target registry loads its targets on first lookup; each target module
    # registers itself there (`from . import register`), and the flex and triton
    # targets pull in torch / the kernel generator only when used.
    ("patterndsl.targets", "patterndsl.targets.flex"): "targets register themselves when first looked up",
    ("patterndsl.targets", "patterndsl.targets.torch"): "targets register themselves when first looked up",
    ("patterndsl.targets", "patterndsl.targets.triton"): "targets register themselves when first looked up",
}

# Lowest first. A module may import modules of its own layer or of lower layers only.
LAYERS = [
    ["patterndsl.ir"],
    ["patterndsl.structure"],
    ["patterndsl.primitives"],
    ["patterndsl.reference"],
    ["patterndsl.analysis.counts", "patterndsl.layout"],
    ["patterndsl.codegen"],
    ["patterndsl.targets.flex", "patterndsl.targets.torch", "patterndsl.targets.triton",
     "patterndsl.kernels", "patterndsl.kernels.generate"],
    ["patterndsl.attention", "patterndsl.nn", "patterndsl.compiled", "patterndsl.cli", "patterndsl.cross",
     "patterndsl.cross_check"],
    ["patterndsl.integrations", "patterndsl.integrations.transformers"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules in ``known`` that module ``name`` (whose text is ``source``) imports
    anywhere in its body."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # `from . import x` names a submodule, or a name in the package
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {target for target in found if target in known and target != name}


def module_imports(name: str, path: Path, known: set[str]) -> set[str]:
    return imports(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", known)


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: module_imports(name, path, known) - {b for a, b in LAZY_LOADS if a == name}
            for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_import_reader_sees_every_kind_of_import():
    known = {"patterndsl.ir", "patterndsl.analysis", "patterndsl.analysis.counts", "patterndsl.layout",
             "patterndsl.reference", "patterndsl.targets", "patterndsl.structure"}
    source = ("from ..ir import Pattern\nfrom . import counts\nimport patterndsl.layout\nimport numpy\n"
              "def f():\n    from ..reference import evaluate\n    from ..targets import get_target\n"
              "class C:\n    def g(self):\n        from .. import structure as S\n")
    assert imports("patterndsl.analysis.example", source, False, known) == {
        "patterndsl.ir", "patterndsl.analysis.counts", "patterndsl.layout", "patterndsl.reference",
        "patterndsl.targets", "patterndsl.structure"}


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_imports_follow_the_layers():
    rank = {name: level for level, names in enumerate(LAYERS) for name in names}
    found = modules()
    assert set(rank) <= set(found), "a module named in LAYERS does not exist"
    edges = graph()
    wrong = [f"{a} (layer {rank[a]}) imports {b} (layer {rank[b]})"
             for a in sorted(rank) for b in sorted(edges[a]) if b in rank and rank[b] > rank[a]]
    assert wrong == []


def test_lazy_loads_are_still_there():
    """Each allowed lazy import exists (so the list does not outlive its reason)."""
    found = modules()
    known = set(found)
    for importer, imported in LAZY_LOADS:
        assert imported in module_imports(importer, found[importer], known), (importer, imported)


def test_no_private_names_are_imported_across_modules():
    """`from .x import _name` reaches into another module's insides: make the name public
    or move the code to where it is used."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("patterndsl")):
                found += [f"{name}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                          for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert found == []
