"""The package's shape: imports point one way (no circles), and ruff is clean at Ultralytics' line length."""

import ast
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "yolo_leaky"

# The layers, bottom up: a module may import its own layer or a lower one, never a higher one.
LAYERS = {"utils": 0, "version": 0, "core": 1, "data": 2, "measure": 3, "targets": 3, "harness": 4, "cli": 5}
SWAP_LIBRARY = {"core", "utils", "version"}  # all that ``core`` may import


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module (dotted, under yolo_leaky) -> the package modules it imports (at module level or inside functions)."""
    files = {module_name(f): f for f in PACKAGE.rglob("*.py") if module_name(f)}
    graph = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {target} if node.module else {".".join([*base, a.name]).strip(".") for a in node.names}
                deps |= {f"{target}.{a.name}".strip(".") for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yolo_leaky."):
                deps.add(node.module.removeprefix("yolo_leaky."))
        graph[name] = {d.strip(".") for d in deps if d.strip(".") in files} - {name}
    return graph


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep] if dep in path else [node, dep]
            if not state.get(dep):
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if not state.get(start):
            found = visit(start, [start])
            if found:
                return found
    return None


def test_imports_have_no_circles():
    graph = import_graph()
    assert {"harness.config", "harness.cells", "harness.compare", "cli", "core.swap", "core.train"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_tree_shows_the_layers():
    """Every module lives in a layer's folder (only the CLI, the version and the facade stay at the top)."""
    top = {f.stem for f in PACKAGE.glob("*.py")}
    assert top == {"__init__", "cli", "version"}, top
    folders = {d.name for d in PACKAGE.iterdir() if d.is_dir() and (d / "__init__.py").exists()}
    assert folders == set(LAYERS) - {"cli", "version"}, folders


def test_imports_point_down_the_layers():
    violations = [
        f"{module} (layer {layer(module)}) imports {dep} (layer {layer(dep)})"
        for module, deps in import_graph().items()
        if module
        for dep in deps
        if layer(dep) > layer(module)
    ]
    assert not violations, violations


def test_the_swap_library_imports_no_harness_data_or_back_end():
    leaks = [
        (module, dep)
        for module, deps in import_graph().items()
        if module.startswith("core")
        for dep in deps
        if dep.split(".")[0] not in SWAP_LIBRARY
    ]
    assert not leaks, leaks


def test_the_layer_checks_catch_an_upward_import(tmp_path, monkeypatch):
    """The graph sees a function-level relative import two levels up (the kind a quick fix adds)."""
    import shutil as sh

    fake = tmp_path / "yolo_leaky"
    sh.copytree(PACKAGE, fake, ignore=sh.ignore_patterns("__pycache__"))
    swap = fake / "core/swap.py"
    swap.write_text(swap.read_text() + "\n\ndef _late():\n    from ..harness.cells import cell_key\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = import_graph()
    assert "harness.cells" in graph["core.swap"]
    with __import__("pytest").raises(AssertionError):
        test_the_swap_library_imports_no_harness_data_or_back_end()
    with __import__("pytest").raises(AssertionError):
        test_imports_point_down_the_layers()


def test_old_module_paths_still_import():
    """0.2.0's flat module paths (``yolo_leaky.swap``, ``yolo_leaky.compare``) are the moved modules themselves."""
    import importlib

    import yolo_leaky

    for old, new in yolo_leaky.MOVED_MODULES.items():
        assert importlib.import_module(f"yolo_leaky.{old}") is importlib.import_module(f"yolo_leaky.{new}"), old
    from yolo_leaky.data import resolve_data  # noqa: F401  (data and targets are packages now; same names)
    from yolo_leaky.targets import TARGETS, check_target  # noqa: F401


def test_public_names_are_exported():
    import yolo_leaky

    for name in yolo_leaky.__all__:
        assert getattr(yolo_leaky, name) is not None, name
    assert {"check_target", "standin_checkpoint", "calibration_set", "measure_int8"} <= set(yolo_leaky.__all__)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is missing: pip install -e '.[dev]'"
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([ruff, *args], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_ci_installs_every_extra_the_tests_need():
    """CI installs ``.[dev]`` (scripts/setup.sh), and with ``CI`` set a test whose extra is missing fails instead of
    skipping (conftest.require): so ``dev`` must bring every optional extra, and .ci/run must set ``CI``."""
    import re

    text = (REPO / "pyproject.toml").read_text()
    block = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w[\w-]*)\s*=", block, flags=re.M)) - {"dev"}
    dev = re.search(r"^dev\s*=\s*\[(.*)\]", block, flags=re.M).group(1)
    brought = {e.strip() for m in re.findall(r"yolo-leaky\[([^\]]*)\]", dev) for e in m.split(",")}
    assert extras == {"ray", "openvino", "tflite", "ethos-u"} and brought == extras, (extras, dev)
    assert '-e ".[dev]"' in (REPO / "scripts/setup.sh").read_text()
    assert re.search(r"^export CI=", (REPO / ".ci/run").read_text(), flags=re.M)
    skip = "pytest." + "importorskip("  # spelled in two parts, so that this file does not match itself
    for path in (REPO / "tests").glob("test_*.py"):
        assert skip not in path.read_text(), f"{path.name}: use conftest.require (CI must not skip)"
