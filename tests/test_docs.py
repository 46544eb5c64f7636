"""The docs cannot drift: every relative link and anchor resolves, every command shown in a code block is run by a
test (or marked as one that cannot be), and every table copied from the code matches the code."""

import ast
import importlib.util
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import pytest

from yolo_leaky.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1)(?:[^\n]|\n(?!\s*\n)))+?\1")  # may wrap a line, not a paragraph
# a command in a code block: optional VAR=value prefixes, then one of these programs
COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:yolo-leaky|yolo|python|bash|pip|ruff)(?:\s|$)")
NOT_COMMANDS = {"python", "yaml", "json", "toml"}  # code blocks holding code or data, not shell lines
# a trailing comment that starts with one of these marks an example no test can run (and says why)
MARKERS = ("needs a network", "needs a GPU", "needs a Ray cluster", "needs your own files", "long run")

# (a) commands that a test runs (as shown, or made small where the test says so): command -> test
RUN_BY_TESTS = {
    "bash scripts/setup.sh && YOLO_OFFLINE=1 yolo-leaky compare": (
        "tests/test_recovery.py::test_default_command_takes_the_offline_path_and_says_why"
    ),
    "bash scripts/setup.sh && YOLO_OFFLINE=1 python -m pytest -q": (
        "tests/test_docs.py::test_ci_runs_the_front_pages_two_commands"
    ),
    "python -m pytest -q": "tests/test_docs.py::test_ci_runs_the_front_pages_two_commands",
    "ruff check . && ruff format --check .": "tests/test_structure.py::test_ruff_is_clean",
    "yolo-leaky compare executor=ray": "tests/test_ray.py::test_ray_grid_matches_the_local_grid_digit_for_digit",
    "yolo-leaky deploy model=<stand-in>/standin.pt target=ort-cpu data=<stand-in>/shapes/shapes.yaml n_calib=16 "
    "seconds=2": "tests/test_deploy.py::test_deploy_swaps_repairs_builds_scores_and_times",
    'yolo-leaky compare --quick weights=standin data=shapes "targets=[ort-cpu,tflite-int8,ethos-u,openvino-cpu]"': (
        "tests/test_deploy.py::test_compare_targets_end_to_end_lists_a_missing_toolchain"
    ),
    "YOLO_OFFLINE=1 yolo-leaky compare int8=true": (
        "tests/test_compare.py::test_recover_protocol_with_a_local_checkpoint_on_coco8"
    ),
    "yolo-leaky train model=runs/detect/train/weights/last.pt resume=True": (
        "tests/test_precedence.py::test_trainer_builds_the_activation_asked_for"
    ),
    # made small there (variants=[silu,relu], runtimes=[ort-cpu], 1 s of timing)
    **{
        f"yolo-leaky compare --quick model=yolo11n-{head}.yaml": (
            "tests/test_task_compare.py::test_compare_quick_measures_each_task_with_its_own_metrics"
        )
        for head in ("seg", "pose", "obb", "cls")
    },
}
# (c) commands cheap enough to run here, as shown; the output lines shown under them in the docs are checked too
RUN_HERE = {
    "yolo-leaky --help",
    "yolo-leaky inspect model=yolo11n.yaml act=leaky_relu:0.1 target=dpu",
    "yolo-leaky inspect model=yolo11n.yaml act=leaky_relu:dpu target=dpu",
    "yolo-leaky inspect model=cfg/yolo11n-prelu.yaml",
    "yolo-leaky inspect model=yolo11n.yaml act=relu sites=model.23.cv3",
}
# the CLI reference's train -> val -> predict -> export chain and cfg, run by one test made small (see there)
MADE_SMALL = {
    "yolo-leaky train model=yolo11n.yaml act=prelu data=coco8.yaml epochs=3 imgsz=320": [
        "epochs=1",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "plots=False",
        "amp=False",
        "project={cwd}/runs/detect",  # absolute: Ultralytics puts a relative project under its runs_dir
        "name=train",
        "exist_ok=True",
    ],
    "yolo-leaky val model=runs/detect/train/weights/best.pt data=coco8.yaml": [
        "imgsz=64",
        "batch=4",
        "plots=False",
        "project={cwd}/runs/detect",
    ],
    "yolo-leaky predict model=runs/detect/train/weights/best.pt source=image.jpg": [
        "imgsz=64",
        "project={cwd}/runs/detect",
    ],
    "yolo-leaky export model=runs/detect/train/weights/best.pt format=onnx": ["imgsz=64"],
    "yolo-leaky cfg model=yolo11n,yolov9t act=leaky_relu:0.1,prelu out=cfg": [],
    "yolo-leaky inspect model=cfg/yolo11n-prelu.yaml data=coco8.yaml --json": [],
}
for _cmd in MADE_SMALL:
    RUN_BY_TESTS[_cmd] = "tests/test_docs.py::test_cli_reference_commands_run_made_small"


# ---------------------------------------------------------------- reading Markdown


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def code_blocks(text: str):
    """(language, first line number, lines) of every fenced code block."""
    lang, start, lines = None, 0, None
    for n, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and lines is None:
            lang, start, lines = fence.group(2).lower(), n + 1, []
        elif fence:
            yield lang, start, lines
            lines = None
        elif lines is not None:
            lines.append(line)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped, spaces to hyphens.

    >>> github_anchor("Why not Ultralytics' `activation:` key?")
    'why-not-ultralytics-activation-key'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter = Counter()
    out = set()
    for _, line in prose_lines(path.read_text()):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = github_anchor(heading.group(1))
            out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return out


def prose_text(text: str) -> str:
    """``text`` with fenced code blocks and inline code blanked out, line numbers kept (a link may wrap lines)."""
    kept = dict(prose_lines(text))
    lines = [kept.get(n, "") for n in range(1, len(text.splitlines()) + 1)]
    return INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(lines))


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Every relative link or anchor in ``path`` that does not resolve, as 'file:line: target (why)'."""
    problems = []
    text = prose_text(path.read_text())
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{text.count(chr(10), 0, match.start()) + 1}: {target}"
        if root not in dest.parents and dest != root:
            problems.append(f"{where} (outside the repository)")
        elif not dest.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and dest.suffix != ".md":
            problems.append(f"{where} (an anchor into a file that is not Markdown)")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{where} (no heading with that anchor in {dest.name})")
    return problems


def shown_commands(path: Path):
    """(line number, command, trailing comment, output lines shown under it) for each command in a code block."""
    for lang, start, lines in code_blocks(path.read_text()):
        if lang in NOT_COMMANDS:
            continue
        joined, i = [], 0
        while i < len(lines):  # join backslash continuations, keep the first line's number
            n, line = start + i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            joined.append((n, line.strip()))
            i += 1
        for k, (n, line) in enumerate(joined):
            if not COMMAND.match(line):
                continue
            parts = re.split(r"\s+#\s+", line, maxsplit=1)
            command, comment = " ".join(parts[0].split()), (parts[1].strip() if len(parts) > 1 else "")
            output = []
            for _, nxt in joined[k + 1 :]:
                if not nxt.startswith("#"):
                    break
                output.append(nxt.lstrip("#").strip())
            yield n, command, comment, output


def all_commands():
    return [(doc, *found) for doc in DOCS for found in shown_commands(doc)]


def test_function_exists(nodeid: str) -> bool:
    file, _, name = nodeid.partition("::")
    path = REPO / file
    if not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name.split("[")[0] for n in tree.body)


test_function_exists.__test__ = False  # a helper, not a test


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    text = path.read_text()
    assert f"\n{heading}\n" in text, f"{path.name} has no heading {heading!r}"
    body = text.split(f"\n{heading}\n", 1)[1]
    stop = re.search(rf"^#{{1,{len(level)}}} ", body, flags=re.M)
    return body[: stop.start()] if stop else body


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, cells stripped."""
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(rows) > 2, text[:300]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[2:]]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# ---------------------------------------------------------------- links


def test_every_relative_link_and_anchor_resolves():
    problems = [p for doc in DOCS for p in broken_links(doc)]
    assert not problems, "broken links:\n" + "\n".join(problems)
    assert len(DOCS) >= 8 and sum(len(LINK.findall(d.read_text())) for d in DOCS) > 40  # the checker sees links


def test_the_link_checker_catches_a_broken_file_an_anchor_and_an_escape(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.md").write_text("# A page\n\n## Some `code` heading?\n\nText.\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "# Front\n\n[ok](docs/a.md) [ok](docs/a.md#some-code-heading) [ok](#front) [web](https://example.com/x)\n"
        "[gone](docs/b.md) [bad anchor](docs/a.md#no-such) [self](#nope) [out](../../etc/passwd) [a link that\n"
        "wraps](#wrapped)\n"
        "`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n"
    )
    problems = broken_links(doc, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/b.md (no such file)",
        "docs/a.md#no-such (no heading with that anchor in a.md)",
        "#nope (no heading with that anchor in README.md)",
        "../../etc/passwd (outside the repository)",
        "#wrapped (no heading with that anchor in README.md)",
    ]


# ---------------------------------------------------------------- commands


def test_every_shown_command_is_run_by_a_test_or_marked():
    unaccounted, shown = [], set()
    for doc, n, command, comment, _ in all_commands():
        shown.add(command)
        if command in RUN_BY_TESTS or command in RUN_HERE or comment.startswith(MARKERS):
            continue
        unaccounted.append(f"{doc.relative_to(REPO)}:{n}: {command}")
    assert not unaccounted, (
        "commands that no test runs: add them to RUN_BY_TESTS or RUN_HERE in tests/test_docs.py, or mark them "
        f"with a trailing comment starting with one of {MARKERS}:\n" + "\n".join(unaccounted)
    )
    stale = sorted((set(RUN_BY_TESTS) | RUN_HERE) - shown)
    assert not stale, f"listed in tests/test_docs.py but shown nowhere in the docs: {stale}"
    assert len(shown) >= 15  # the scan sees the docs' commands


def test_the_tests_that_run_shown_commands_exist():
    missing = sorted({t for t in RUN_BY_TESTS.values() if not test_function_exists(t)})
    assert not missing, f"RUN_BY_TESTS names tests that do not exist: {missing}"


def test_the_command_scan_reads_markers_output_and_continuations(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\nYOLO_OFFLINE=1 yolo-leaky compare \\\n    epochs=3   # long run: 1 h\n"
        "yolo-leaky inspect model=m.yaml\n# line one\n#   line two\nls -l\n```\n"
        "```python\npython = 1\n```\n```yaml\npip: 2\n```\n"
    )
    assert list(shown_commands(doc)) == [
        (2, "YOLO_OFFLINE=1 yolo-leaky compare epochs=3", "long run: 1 h", []),
        (4, "yolo-leaky inspect model=m.yaml", "", ["line one", "line two"]),
    ]


def test_ci_runs_the_front_pages_two_commands():
    """The front page opens with the main job and the tests; CI (.ci/run) installs the same way and runs the same
    test command, so the command a user copies is the one CI runs."""
    first = next(code_blocks((REPO / "README.md").read_text()))
    commands = [re.split(r"\s+#\s+", line, maxsplit=1)[0].strip() for line in first[2][:2]]
    assert commands == [
        "bash scripts/setup.sh && YOLO_OFFLINE=1 yolo-leaky compare",
        "bash scripts/setup.sh && YOLO_OFFLINE=1 python -m pytest -q",
    ]
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert "bash scripts/setup.sh" in ci
    (pytest_line,) = [ln for ln in ci if "pytest" in ln]
    assert pytest_line.startswith("YOLO_OFFLINE=1 python -m pytest -q"), pytest_line
    assert "-m" not in pytest_line.split("pytest", 1)[1].split(), "CI must run every test, slow ones included"


def _run_cli(command: str, cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    args = shlex.split(command)
    assert args[0] == "yolo-leaky", command
    code = cli_main(args[1:])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def cfg_copy(tmp_path):
    (tmp_path / "cfg").mkdir()
    shutil.copy(REPO / "cfg/yolo11n-prelu.yaml", tmp_path / "cfg")
    return tmp_path


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_cheap_commands_run_as_shown(command, cfg_copy, monkeypatch, capsys):
    """Each command test_docs runs itself exits 0, and prints every output line the docs show under it."""
    shown = [(doc, out) for doc, _, cmd, _, out in all_commands() if cmd == command]
    assert shown, f"{command} is not shown in the docs"
    code, out = _run_cli(command, cfg_copy, monkeypatch, capsys)
    assert code == 0, out[-2000:]
    printed = [line.strip() for line in out.splitlines()]
    for doc, expected in shown:
        missing = [line for line in expected if line not in printed]
        assert not missing, f"{doc.name} shows output that {command!r} does not print: {missing}\n{out[-2000:]}"


@pytest.mark.slow  # trains one epoch and runs the CLI's modes in this process
def test_cli_reference_commands_run_made_small(tmp_path, coco8, monkeypatch, capsys):
    """The CLI reference's train -> val -> predict -> export chain and its cfg and inspect lines, in the order a user
    runs them, each as shown plus only the arguments in MADE_SMALL (Ultralytics takes the last value of a key),
    which shrink the work (one epoch at 64 px) and pin the run folder the later commands read."""
    monkeypatch.setenv("YOLO_LEAKY_COCO8", str(coco8))
    shutil.copy(next((coco8 / "images/val").iterdir()), tmp_path / "image.jpg")
    for command, extra in MADE_SMALL.items():
        shown = [cmd for _, _, cmd, _, _ in all_commands() if cmd == command]
        assert shown, f"{command} is not shown in the docs"
        extra = [arg.format(cwd=tmp_path) for arg in extra]
        code, out = _run_cli(" ".join([command, *extra]), tmp_path, monkeypatch, capsys)
        assert code == 0, (command, out[-3000:])
    assert (tmp_path / "runs/detect/train/weights/best.onnx").is_file()
    assert sorted(p.name for p in (tmp_path / "cfg").iterdir()) == [
        "yolo11n-leaky_relu0.1.yaml",
        "yolo11n-prelu.yaml",
        "yolov9t-leaky_relu0.1.yaml",
        "yolov9t-prelu.yaml",
    ]


# ---------------------------------------------------------------- tables copied from the code


def test_targets_page_has_the_rendered_table():
    from yolo_leaky.targets.table import render_markdown

    assert render_markdown() in section(REPO / "docs/targets.md", "## The targets table")


def test_targets_page_names_the_activations_that_run_on_every_target():
    """The advice on which activations are fused or native everywhere is what TARGETS says."""
    from yolo_leaky.targets.table import TARGETS, fused_or_native_everywhere

    page = (REPO / "docs/targets.md").read_text()
    (line,) = [ln for ln in page.splitlines() if "on every target in the table" in ln]
    named = re.findall(r"`(\w+)`", line.split("fused or run", 1)[0])
    everywhere = fused_or_native_everywhere()
    assert named == everywhere, (line, everywhere)
    assert "relu" in everywhere and all(
        t.cells[a].status in ("fused", "native") for t in TARGETS.values() for a in everywhere
    )


def _module_text(spec: str) -> str:
    """How the activation-specs table writes the module a spec builds at a site where in-place is safe."""
    from yolo_leaky.core.spec import format_number, parse_act

    act = parse_act(spec)
    module = act.build(channels=16, inplace=True)
    name, args = type(module).__name__, []
    if act.name == "leaky_relu":
        args.append(format_number(module.negative_slope))
    if act.name == "prelu":
        args += ["C" if act.prelu_mode == "channel" else "1", f"init={format_number(act.init)}"]
    if getattr(module, "inplace", False):
        args.append("inplace=True")
    return f"nn.{name}({', '.join(args)})"


def test_activation_specs_table_is_what_the_specs_build():
    from yolo_leaky.core.spec import LEAKY_PRESETS, NAMES

    rows = table_rows(section(REPO / "docs/reference.md", "## Activation specs"))
    specs = []
    for spec_cell, module_cell, _ in rows:
        assert len(ticked(module_cell)) == 1, module_cell
        for spec in ticked(spec_cell):
            specs.append(spec)
            assert _module_text(spec) == ticked(module_cell)[0], (spec, module_cell)
    assert {s.split(":")[0] for s in specs} == set(NAMES), "the table must show every activation"
    assert {f"leaky_relu:{p}" for p in LEAKY_PRESETS} <= set(specs), "the table must show every slope preset"


def test_public_names_table_is_yolo_leaky_all():
    import yolo_leaky

    rows = table_rows(section(REPO / "docs/reference.md", "### Public names"))
    named = {re.match(r"\w+", t).group(0) for row in rows for t in ticked(row[0])}
    assert named == set(yolo_leaky.__all__) - {"__version__"}


def test_cli_modes_table_is_the_clis():
    from yolo_leaky import cli

    rows = table_rows(section(REPO / "docs/reference.md", "## CLI"))
    modes = {m: row for row in rows for m in ticked(row[0])}
    assert set(modes) == set(cli.MODES)
    keys = {m: {k.rstrip("=") for k in ticked(row[1]) if k.endswith("=")} for m, row in modes.items()}
    assert keys["cfg"] == cli.CFG_KEYS and keys["inspect"] == cli.INSPECT_KEYS
    flags = {f for row in rows for f in ticked(row[2])}
    assert flags == set(cli.FLAGS) - {"--help", "-h"}


def test_front_page_names_every_activation():
    """The front page's one-paragraph list of ``act=`` values names every activation the code knows."""
    from yolo_leaky.core.spec import NAMES

    text = (REPO / "README.md").read_text()
    start = text.index("`act=` takes")
    paragraph = text[start : text.index("\n\n", start)]
    named = {t.split(":")[0] for t in ticked(paragraph)}
    assert named & set(NAMES) == set(NAMES), (paragraph, NAMES)


def _test_errors_cases() -> list:
    spec = importlib.util.spec_from_file_location("_test_errors_for_docs", REPO / "tests/test_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def test_bad_input_table_is_test_errors_cases():
    """Each row of docs/bad-input.md is a case of tests/test_errors.py with the same command, and every case has
    its row (the message column is regenerated by running them: YOLO_LEAKY_BAD_INPUT_TABLE)."""
    rows = table_rows(section(REPO / "docs/bad-input.md", "## What the user sees"))
    documented = {row[0]: ticked(row[1])[0] for row in rows}
    expected = {}
    for case, args, _, env in _test_errors_cases():
        prefix = "".join(f"{k}={v} " for k, v in (env or {}).items())
        expected[case] = f"{prefix}yolo-leaky {' '.join(args)}"
    assert documented == expected


def _tree_paths(tree: str) -> set[str]:
    """The module paths a box-drawing tree names (four characters per level, ``yolo_leaky/`` at the root)."""
    paths, stack = set(), []
    for line in tree.splitlines():
        found = re.search(r"[\w<>]+(?:\.py|/)", line)
        if not found:
            continue
        stack = stack[: found.start() // 4] + [found.group(0).rstrip("/")]
        if found.group(0).endswith(".py"):
            paths.add("/".join(stack))
    return paths


def test_layout_tree_is_the_package():
    """Every module the tree in docs/development.md names exists, and every module is in it (a target back end is
    covered by the tree's ``<target>.py`` line)."""
    blocks = [lines for lang, _, lines in code_blocks((REPO / "docs/development.md").read_text()) if lang == "text"]
    named = _tree_paths("\n".join(blocks[0]))
    pattern = "yolo_leaky/targets/<target>.py"
    actual = {str(p.relative_to(REPO)) for p in (REPO / "yolo_leaky").rglob("*.py") if p.name != "__init__.py"}
    backends = {p for p in actual if p.startswith("yolo_leaky/targets/") and p not in named}
    assert pattern in named and len(named) > 30
    stale = sorted(named - actual - {pattern})
    unlisted = sorted(actual - backends - named)
    assert not stale, f"docs/development.md's tree names modules that do not exist: {stale}"
    assert not unlisted, f"modules missing from docs/development.md's tree: {unlisted}"


def test_every_test_the_docs_cite_exists():
    defined = {
        n.name
        for f in (REPO / "tests").glob("test_*.py")
        for n in ast.parse(f.read_text()).body
        if isinstance(n, ast.FunctionDef)
    }
    cited = {name for doc in DOCS for name in re.findall(r"`(test_\w+)`", doc.read_text())}
    assert cited, "the docs cite tests by name"
    assert not cited - defined, f"the docs cite tests that do not exist: {sorted(cited - defined)}"


def _ticked_in_prose(pattern: str) -> set[str]:
    return {t for doc in DOCS for t in re.findall(r"`([^`\n]+)`", doc.read_text()) if re.match(pattern, t)}


def test_every_file_the_docs_name_exists():
    """A path the docs name in code style (`cfg/compare.yaml`, `yolo_leaky/core/repair.py`) is in the repository."""
    named = _ticked_in_prose(r"^(?:yolo_leaky|tests|benchmarks|scripts|cfg|docs|\.ci)/[\w./-]*$")
    assert len(named) > 15
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"the docs name files that do not exist: {missing}"


def test_every_python_name_the_docs_cite_imports():
    """A dotted name the docs cite (`yolo_leaky.core.swap.GatedFFN`) imports, and each Python example parses and its
    imports resolve (the examples train for epochs, so they are not run here; tests/test_precedence.py runs the
    front page's load-then-train route)."""
    import importlib

    cited = {re.split(r"[(\s]", t)[0] for t in _ticked_in_prose(r"^yolo_leaky\.\w")}
    for doc in DOCS:
        for lang, _, lines in code_blocks(doc.read_text()):
            if lang == "python":
                tree = ast.parse("\n".join(lines))  # every Python example is valid Python
                cited |= {
                    f"{n.module}.{a.name}"
                    for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module.startswith("yolo_leaky")
                    for a in n.names
                }
    assert len(cited) > 5
    unresolved = []
    for name in sorted(cited):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                unresolved.append(name)
            break
        else:
            unresolved.append(name)
    assert not unresolved, f"the docs cite Python names that do not import: {unresolved}"
