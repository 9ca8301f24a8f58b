"""The package's structure, checked: no import cycles, the runtime's layers import only downwards,
and what a task means is said in one place (the registry), never by comparing task names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import flare
import flare.benchmarks
import flare.export
import flare.runtime
import flare.training

#: Every folder of the installed package, by the dotted name it installs as.
PACKAGES = {p: Path(m.__file__).parent for p, m in (
    ("flare", flare), ("flare.runtime", flare.runtime), ("flare.export", flare.export),
    ("flare.training", flare.training), ("flare.benchmarks", flare.benchmarks))}

#: The runtime's layers, lowest first: a module may import its own layer and those before it.
LAYERS = ["foundation", "core", "io", "tasks", "apps"]


def modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if prefix == "flare" and parts and parts[0] in ("runtime", "export", "training", "benchmarks"):
                continue  # mapped folders, found under their own prefix (a checkout keeps them at the root)
            name = ".".join((prefix, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str], top_level_only: bool) -> set[str]:
    """The flare modules ``path`` imports (``from a import b`` counts as ``a.b`` when that is a module);
    imports under ``if TYPE_CHECKING:`` never run and are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("flare"):
                for alias in child.names:
                    name = f"{child.module}.{alias.name}"
                    found.add(name if name in known else child.module)
            visit(child)

    visit(tree)
    return found & known


def graph(top_level_only: bool) -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known), top_level_only) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_import_graph_has_no_cycle() -> None:
    edges = graph(top_level_only=True)
    assert "flare.runtime.core.backends.open" in edges and edges["flare.runtime.core.backends.open"]
    assert cycles(edges) == []


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[2]) if len(parts) > 2 and parts[1] == "runtime" and parts[2] in LAYERS else None


def test_runtime_layers_import_only_downwards() -> None:
    """Lazy imports inside functions count too: a layer that reaches up at run time still depends on it."""
    wrong = []
    for module, targets in graph(top_level_only=False).items():
        own = layer_of(module)
        if module.startswith("flare.runtime.") and own is None and module != "flare.runtime":
            wrong.append(f"{module} is in no layer")
        for target in targets:
            if own is not None and target.startswith("flare.") and not target.startswith("flare.runtime"):
                wrong.append(f"{module} imports {target}, outside the runtime")
            there = layer_of(target)
            if own is not None and there is not None and there > own:
                wrong.append(f"{module} ({LAYERS[own]}) imports {target} ({LAYERS[there]})")
    assert wrong == []


#: A task named in a comparison: ``task == "enhance"``, ``manifest.task != ...``, ``"generate" ==``,
#: ``task in ("classify", ...)``, ``r.get("task") == ...``.
TASK_COMPARISON = re.compile(
    r"""task["')\]]*\s*(==|!=|(not\s+)?in\s*[(\[{]\s*["'])"""
    r"""|["'](classify|enhance|generate)["']\s*(==|!=)"""
    r"""|(==|!=)\s*["'](classify|enhance|generate)["']"""
    r"""|getattr\([^)]*\btask\b""")


def test_the_comparison_pattern_catches_what_it_should() -> None:
    for line in ('if manifest.task == "generate":', 'if task != "classify"', 'task in ("classify", "enhance")',
                 'r.get("task") == "enhance"', 'getattr(writer, manifest.task)(name)', '"enhance" == kind'):
        assert TASK_COMPARISON.search(line), line
    for line in ('task = task_named(manifest.task)', 'TASKS[manifest.task].bench_function()', 'f"task {task}"'):
        assert not TASK_COMPARISON.search(line), line


def test_no_code_outside_the_registry_compares_task_names() -> None:
    registry = Path(flare.runtime.__file__).parent / "core" / "tasks.py"
    found = [f"{path}:{i}: {line.strip()}" for path in modules().values() if path != registry
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if TASK_COMPARISON.search(line.split("#")[0])]
    assert found == []


def test_every_registry_reference_resolves() -> None:
    """The registry names its upper-layer parts by string: each must be importable and of the right kind."""
    from flare.runtime.core.tasks import TASKS
    from flare.runtime.tasks.model import BundleModel

    for name, task in TASKS.items():
        assert task.name == name
        model = task.model_class()
        assert issubclass(model, BundleModel) and model.TASK == name
        assert callable(task.triton_writer()) and callable(task.bench_function())
        assert task.parts and callable(task.check) and callable(task.check_io)
