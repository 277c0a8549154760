"""The package's imports flow one way: from the CLI down to the kernels (docs/internals.md).

Every ``import`` and ``from ... import`` of a saffu module, at the top or inside a function, is
an edge (type-only imports under ``if TYPE_CHECKING:`` are not); an edge to a module of a
higher layer than its own, or a cycle, fails. ``LAYERS`` is the architecture, lowest first; a
module not listed fails too, so a new module gets a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "saffu"

LAYERS = (
    ("saffu.errors", "saffu._version", "saffu._kernel_spec"),
    ("saffu.validation", "saffu.kinds", "saffu._io", "saffu._backend", "saffu._processes",
     "saffu._progress"),
    ("saffu._core", "saffu._numba", "saffu._reference"),
    ("saffu.kernels",),
    ("saffu.explicit", "saffu.cipher", "saffu.tokenize"),
    ("saffu.corpus",),
    ("saffu.layers", "saffu.classify", "saffu.datasets"),
    ("saffu.temperature",),
    ("saffu.config", "saffu.train_config"),
    ("saffu.fit",),
    ("saffu.generation",),
    ("saffu.model",),
    ("saffu.ngram",),
    ("saffu.torch", "saffu.distributed", "saffu.export"),
    ("saffu.trainer", "saffu.torch_init"),  # the former locations of saffu.torch's modules
    ("saffu.sweep",),
    ("saffu.cli",),
)
TOP = "saffu"  # the package's __init__ may re-export from any layer (lazily)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_of(module: str) -> tuple[int, str]:
    """(layer index, the LAYERS entry the module belongs to) by the longest matching prefix."""
    best = None
    for index, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and \
                    (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/test_layering.py LAYERS")
    return best


def _imports(path: Path, module: str) -> set[str]:
    """The saffu modules ``path`` imports (``from saffu import x`` counts as saffu.x if x is one)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return {name for name in found if name == TOP or name.startswith(TOP + ".")}


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (type-only imports never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _is_module(name: str) -> bool:
    relative = PACKAGE / Path(*name.split(".")[1:])
    return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file() \
        or name == "saffu._core"


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path, _module_name(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


GRAPH = _graph()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_flow_down_the_layers(module):
    if module == TOP:
        return
    layer, group = _layer_of(module)
    for target in sorted(GRAPH[module]):
        if target == TOP:
            raise AssertionError(f"{module} imports the package root 'saffu'; import the module "
                                 "that defines the name instead")
        target_layer, target_group = _layer_of(target)
        if target_group == group:
            continue  # inside one package or module group (checked for cycles below)
        assert target_layer < layer, (f"{module} (layer {layer}, {group}) imports {target} "
                                      f"(layer {target_layer}, {target_group}): imports must flow down")


def test_nothing_imports_the_cli():
    offenders = [m for m, targets in GRAPH.items() if not m.startswith("saffu.cli")
                 and any(t == "saffu.cli" or t.startswith("saffu.cli.") for t in targets)]
    assert offenders == []


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target] if target in path else [module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None and target in GRAPH:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module != TOP and state.get(module) is None:
            visit(module, [module])


def test_every_module_has_a_layer():
    for module in GRAPH:
        if module != TOP:
            _layer_of(module)
