"""The package's shape: imports point one way (no circles), and ruff is clean at Ultralytics' line length."""

import ast
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "yolo_leaky"


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level or inside functions alike)."""
    modules = {f.stem for f in PACKAGE.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        deps = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yolo_leaky."):
                deps.add(node.module.split(".")[1])
        graph[name] = (deps & modules) - {name}
    return graph


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
    assert {"config", "cells", "summary", "report", "plots", "compare", "cli", "swap", "train"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


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
    assert extras == {"ray", "openvino"} and brought == extras, (extras, dev)
    assert '-e ".[dev]"' in (REPO / "scripts/setup.sh").read_text()
    assert re.search(r"^export CI=", (REPO / ".ci/run").read_text(), flags=re.M)
    skip = "pytest." + "importorskip("  # spelled in two parts, so that this file does not match itself
    for path in (REPO / "tests").glob("test_*.py"):
        assert skip not in path.read_text(), f"{path.name}: use conftest.require (CI must not skip)"
