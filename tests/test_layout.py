"""The package's modules import each other in one direction: no cycles, even through imports
made inside functions."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "napari_unet"


def _module_name(path: Path, root: Path = ROOT) -> str:
    name = ".".join(("napari_unet",) + path.relative_to(root).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path, modules: set, root: Path = ROOT) -> set:
    """The package modules that ``path`` imports (``from .x import y`` counts ``.x.y`` if a module)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                target = next((c for c in (f"{base}.{alias.name}", base) if c in modules), None)
                if target and target != name:
                    found.add(target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
    return found | _packages_initialised(found, name, modules)


def _packages_initialised(targets: set, name: str, modules: set) -> set:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first: cycles can pass through
    them. A module's own packages are already initialised when it runs, so they do not count."""
    own = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
    parents = {t.rsplit(".", k)[0] for t in targets for k in range(1, t.count(".") + 1)}
    return {p for p in parents if p in modules and p not in own and p != name}


def _cycle(graph: dict) -> list | None:
    """One import cycle, as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    pkg = tmp_path / "napari_unet"
    (pkg / "core" / "train").mkdir(parents=True)
    (pkg / "core" / "train" / "__init__.py").write_text("from napari_unet.core.train.loop import train\n")
    (pkg / "core" / "train" / "loop.py").write_text("from napari_unet.core import data\n")
    (pkg / "core" / "data.py").write_text("from napari_unet.core.train.augment import Sampler\n")
    (pkg / "core" / "train" / "augment.py").write_text("")
    files = list(pkg.rglob("*.py"))
    modules = {_module_name(f, pkg) for f in files}
    graph = {_module_name(f, pkg): _imports(f, modules, pkg) for f in files}
    assert _cycle(graph) == ["napari_unet.core.data", "napari_unet.core.train", "napari_unet.core.train.loop",
                             "napari_unet.core.data"]


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_package():
    files = list(ROOT.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _imports(f, modules) for f in files}
    assert graph["napari_unet.cli.main"], "the scan found no imports at all"
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


# Which top-level parts of the package each part may import: the layers point one way.
ALLOWED = {
    "io": {"io"},
    "core": {"core", "io"},
    "runtime": {"runtime", "core", "io"},
    "samples": {"samples", "core", "io"},
    "cli": {"cli", "runtime", "samples", "core", "io"},
    "plugin": {"plugin", "runtime", "samples", "core", "io"},
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def _layer_breaks(graph: dict) -> list[str]:
    breaks = []
    for module, targets in graph.items():
        part = _part(module)
        for target in targets:
            if part in ALLOWED and _part(target) is not None and _part(target) not in ALLOWED[part]:
                breaks.append(f"{module} -> {target}")
    return sorted(breaks)


def test_the_layer_check_finds_a_planted_break():
    graph = {"napari_unet.core.train.loop": {"napari_unet.plugin.widgets.train_widget"},
             "napari_unet.cli.main": {"napari_unet.core.config"}}
    assert _layer_breaks(graph) == ["napari_unet.core.train.loop -> napari_unet.plugin.widgets.train_widget"]


def test_layers_point_one_way_and_only_the_plugin_imports_napari():
    files = list(ROOT.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _imports(f, modules) for f in files}
    assert {_part(m) for m in graph} >= set(ALLOWED), "the package layout changed: update ALLOWED"
    assert _layer_breaks(graph) == []
    # `napari-unet demo --view` opens its result in napari: the one use outside the plugin.
    outside_plugin = [f for f in files if _part(_module_name(f)) != "plugin" and f != ROOT / "cli" / "demo.py"]
    importing_napari = [str(f.relative_to(ROOT)) for f in outside_plugin if _imports_napari_or_qt(f)]
    assert importing_napari == []


def _imports_napari_or_qt(path: Path) -> bool:
    roots = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        if any(name.split(".")[0] in roots for name in names):
            return True
    return False


LONGEST_FUNCTION = 60  # lines, docstring included: past that a function wants splitting


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


# Only the network's sub-package and the worker's entry import a deep-learning framework: every
# other module (the napari process's above all) must load, and mostly run, without one.
FRAMEWORKS = ("keras", "tensorflow", "jax")
FRAMEWORK_HOMES = ("core/nn/", "runtime/worker.py")


def _imported_roots(source: str) -> set:
    """The top-level names of the absolute imports in ``source``, those inside functions too."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _framework_importers(sources: dict) -> list[str]:
    """The files (paths relative to the package) outside FRAMEWORK_HOMES that import a framework."""
    return sorted(path for path, source in sources.items()
                  if not path.startswith(FRAMEWORK_HOMES) and _imported_roots(source) & set(FRAMEWORKS))


def test_the_framework_check_finds_a_planted_import():
    sources = {"core/bundle.py": "def load(path):\n    if path:\n        import keras.saving\n",
               "core/data.py": "from jax import numpy as jnp\n",
               "core/train/loop.py": "from napari_unet.core.nn import fitting\nimport numpy\n",
               "core/nn/model.py": "import keras\n", "runtime/worker.py": "import tensorflow as tf\n"}
    assert _framework_importers(sources) == ["core/bundle.py", "core/data.py"]


def test_only_core_nn_and_the_worker_import_keras_tensorflow_or_jax():
    sources = {str(f.relative_to(ROOT).as_posix()): f.read_text() for f in ROOT.rglob("*.py")}
    assert "core/nn/model.py" in sources, "the package layout changed: update FRAMEWORK_HOMES"
    assert _framework_importers(sources) == []
