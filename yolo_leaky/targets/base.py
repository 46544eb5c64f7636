"""The deployment-target interface: one module per target in this folder, each with one ``Backend`` subclass.

A backend builds the artifact a user ships for its target with the vendor's own toolchain, scores that artifact
(on the host, or in the vendor's simulator), reads what the vendor's compiler reports (op placement, its estimate),
and, where the artifact runs on this machine, gives a runner for host latency. Adding a target is adding a file:
``backends()`` imports every module of this package and collects the subclasses.

Toolchains are optional extras: a backend module imports its toolchain inside its methods, never at module level,
so listing the backends never needs them, and ``missing()`` names the install step when one is absent.

Examples:
    >>> from yolo_leaky.targets.base import backends
    >>> "ort-cpu" in backends()
    True
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from ..utils.errors import UserError

NOT_BACKENDS = {"base", "table"}
T = TypeVar("T")


@dataclass
class Build:
    """What a backend built, and what its toolchain said about it.

    Attributes:
        target: The backend's name.
        artifact: The file a user ships.
        tools: Tool name -> version, for every tool that touched the artifact.
        commands: The calls that built it, in order, so a user can reproduce it.
        log: The toolchain's full log, when it writes one.
        placement: The vendor compiler's op placement, ``{"accelerator": {op: count}, "cpu": {op: count}}``, or
            None where the target has no compiler that places ops.
        estimate: The vendor's own performance estimate (e.g. cycles, ms at its default clock, SRAM, flash), each
            value as the tool reports it. It is an estimate by the vendor's tool, never a measurement on a device.
        files: Every other file the build wrote (reports, CSVs), for the run folder.
        reference: The float (FP32) model in the artifact's own format and runtime, where the backend makes one: the
            FP32 score beside the artifact's and the paired latency are taken against it (same runtime, same
            preprocessing), so the difference is the quantization alone.
        details: Anything else the backend reports (its quantizer's settings, the runtime's fused graph), JSON-ready.
        task: The checkpoint's Ultralytics task (``core.loading.model_task``): ``score`` validates the artifact with
            that task's validator and returns its record keys (``core.tasks.METRICS``).
    """

    target: str
    artifact: Path
    tools: dict[str, str]
    commands: list[str]
    log: Path | None = None
    placement: dict | None = None
    estimate: dict | None = None
    files: list[Path] = field(default_factory=list)
    reference: Path | None = None
    details: dict = field(default_factory=dict)
    task: str = "detect"

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("artifact", "log", "reference"):
            d[key] = None if d[key] is None else str(d[key])
        d["files"] = [str(f) for f in self.files]
        return d


class Backend(ABC):
    """One deployment target.

    Attributes:
        name: The target's name (``target=`` on the CLI; a key of ``targets.table.TARGETS`` where the table has it).
        install: The one step that brings the toolchain (an extra or a script), shown when it is missing.
        runs_on_host: True when the artifact can be timed on this machine (``runner``).
        bench_runtime: The ``measure.bench`` runtime that times the artifact and ``Build.reference`` in one
            interleaved benchmark (fresh process per block, block CIs), or None where bench has no such runtime.
        table_key: The target's key in ``targets.table.TARGETS`` (whose cells warn about an activation the target
            cannot run), where it differs from ``name``; None: ``name`` itself, where the table has it.
        stage_options: Constructor arguments for ``compare targets=``, which scores only the artifact (e.g. no FP32
            reference build).
        tasks: The Ultralytics tasks whose models this backend builds and scores with the task's own validator
            (``core.tasks.TASKS``); ``compare`` refuses the target for a model of any other task.
    """

    name: ClassVar[str]
    install: ClassVar[str]
    runs_on_host: ClassVar[bool] = False
    bench_runtime: ClassVar[str | None] = None
    table_key: ClassVar[str | None] = None
    stage_options: ClassVar[dict] = {}
    tasks: ClassVar[tuple[str, ...]] = ("detect",)

    @classmethod
    def table_entry(cls) -> str | None:
        """The key of ``targets.table.TARGETS`` that describes this target, or None where the table has none.

        Examples:
            >>> from yolo_leaky.targets.base import backends
            >>> backends()["tflite-int8"].table_entry(), backends()["openvino-cpu"].table_entry()
            ('tflite-xnnpack', None)
        """
        from .table import TARGETS

        key = cls.table_key or cls.name
        return key if key in TARGETS else None

    @abstractmethod
    def missing(self) -> str | None:
        """None when the toolchain is importable here; else one line naming what is missing and ``install``."""

    @abstractmethod
    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int) -> Build:
        """Build the artifact from a checkpoint, quantized on ``calibration`` (a ``measure.quant.Calibration``) where
        the target quantizes. Raises ``UserError`` (the toolchain's message, one line, and the log's path) when the
        vendor's compiler rejects the model."""

    @abstractmethod
    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """Accuracy of the artifact itself, under the record keys of ``build.task`` (``core.tasks.METRICS``: detection's
        ``{"map50": ..., "map50_95": ...}``, segmentation's mask mAPs beside them, ...), on the host or in the vendor's
        simulator, never of the float model it came from."""

    def runner(self, build: Build, imgsz: int, threads: int, seed: int) -> Callable[[], object] | None:
        """A no-argument call that runs one inference of the artifact on the host, for timing; None when the
        artifact does not run here."""
        return None


class ToolchainRejected(UserError):
    """The vendor's toolchain refused the model: one line with its message and where its full log is.

    Attributes:
        log: The full log (``deploy`` moves it out of the discarded build folder and names the new place).

    Examples:
        >>> from pathlib import Path
        >>> str(ToolchainRejected("ort-cpu", "quantize_static", "Unsupported op\\nmore", Path("q.log")))
        'ort-cpu: quantize_static rejected the model: Unsupported op; full log: q.log'
    """

    def __init__(self, target: str, tool: str, message: str, log: Path) -> None:
        first = next((line.strip() for line in str(message).splitlines() if line.strip()), "no message")
        self.target, self.tool, self.first_line, self.log = target, tool, first, Path(log)
        super().__init__(f"{target}: {tool} rejected the model: {first}; full log: {log}")

    def moved(self, log: Path) -> ToolchainRejected:
        """The same rejection, its log now at ``log``."""
        return ToolchainRejected(self.target, self.tool, self.first_line, log)


def run_tool(target: str, tool: str, log: Path, call: Callable[[], T]) -> T:
    """``call()`` (one call into a vendor's toolchain); when it raises, its traceback goes to ``log`` and a
    ``ToolchainRejected`` (one line, the log's path) replaces it. A ``UserError`` passes through unchanged.

    Examples:
        >>> run_tool("ort-cpu", "sum", Path("unused.log"), lambda: sum([1, 2]))
        3
    """
    try:
        return call()
    except UserError:
        raise
    except Exception as e:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(f"{tool} raised, called by the {target} backend:\n{traceback.format_exc()}")
        raise ToolchainRejected(target, tool, f"{type(e).__name__}: {e}", log) from None


def backends() -> dict[str, type[Backend]]:
    """Every backend in this package, by name (importing a module does not import its toolchain)."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name not in NOT_BACKENDS:
            importlib.import_module(f"{__package__}.{module.name}")
    found = {}
    for cls in _subclasses(Backend):
        if getattr(cls, "name", None) and not getattr(cls, "__abstractmethods__", None):
            found[cls.name] = cls
    return dict(sorted(found.items()))


def get_backend(name: str) -> Backend:
    """The backend called ``name``, ready to use; a ``UserError`` with the closest names for a typo, or with the
    install step when its toolchain is missing."""
    known = backends()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"unknown target {name!r}; {hint}known targets: {', '.join(known)}")
    backend = known[name]()
    problem = backend.missing()
    if problem:
        raise UserError(problem)
    return backend


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
