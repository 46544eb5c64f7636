"""The compare experiment's configuration, and the eval-free ``key=value`` parser that the CLI shares.

``parse_kv`` is our own rather than Ultralytics' ``cfg`` parser because values must never be evaluated: they are
read as YAML scalars with ``safe_load``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml as pyyaml

from ..core.partial import Selection
from ..core.repair import REPAIRS
from ..core.spec import ActSpec, parse_act
from ..core.tasks import NO_DISTILL, TASKS
from ..utils.errors import UserError

RUNTIMES = ("torch-cpu", "ort-cpu", "torch-cuda-fp16")
# what the CLI's Ultralytics modes accept beyond Ultralytics' own arguments: act=, a partial swap's selection,
# and the repair of a swap before training
OUR_KEYS = {"act", "layers", "keep_silu", "sites", "repair", "calib_images"}
TRAIN_ONLY_KEYS = ("repair", "calib_images")  # of OUR_KEYS, what only train takes


def parse_kv(tokens: list[str], valid: set[str]) -> dict:
    """Parse ``key=value`` tokens; values are YAML scalars (``safe_load``), never evaluated."""
    out = {}
    for tok in tokens:
        if "=" not in tok:
            raise UserError(f"argument {tok!r} is not key=value; write e.g. epochs=3")
        key, value = tok.split("=", 1)
        key = key.strip()
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}'?" if near else "; see `yolo-leaky --help`"
            raise UserError(f"unknown argument '{key}'{hint}")
        out[key] = _scalar(value)
    return out


def _scalar(value: str):
    if value == "":
        return None
    try:
        parsed = pyyaml.safe_load(value)
    except pyyaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (int, float, bool, list, type(None))) else value


def ultralytics_keys() -> set[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT) | OUR_KEYS


def check_ultralytics_args(args: dict) -> None:
    """Let Ultralytics type-check the arguments up front, so a bad value fails before any work."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    cfg = {**DEFAULT_CFG_DICT, **{k: v for k, v in args.items() if k not in OUR_KEYS}}
    try:
        check_cfg(cfg)
    except (TypeError, ValueError) as e:
        raise UserError(str(e).splitlines()[0]) from None


_KEEP = re.compile(r"^(?P<act>[^@]+)@keep(?P<k>.*)$")


@dataclass(frozen=True)
class MixedSpec(ActSpec):
    """A mixed variant of ``compare``: ``act`` everywhere except the ``keep`` layers that the sensitivity ranking
    (computed on the training side, ``harness.mixed``) names as most costly, which keep SiLU.

    Attributes:
        keep: How many layers keep SiLU (at least 1).
    """

    keep: int = 1

    def __str__(self) -> str:
        return f"{self.base}@keep{self.keep}"

    @property
    def label(self) -> str:
        return f"{self.base.label}@keep{self.keep}"

    @property
    def base(self) -> ActSpec:
        """The activation put everywhere else (a plain ``ActSpec``: what the model YAML records)."""
        return ActSpec(self.name, self.slope, self.prelu_mode, self.init)


def parse_variant(text: str | ActSpec) -> ActSpec:
    """Parse one ``variants`` entry: an activation spec, or a mixed variant ``<act>@keep<k>`` (never evaluated).

    Raises:
        UserError: For a spec that does not parse, ``k`` that is not a whole number >= 1, or ``silu@keep<k>``.

    Examples:
        >>> str(parse_variant("relu@keep3"))
        'relu@keep3'
        >>> parse_variant("leaky_relu:0.1@keep1").label
        'leaky_relu0.1@keep1'
    """
    if isinstance(text, ActSpec):
        return text
    found = _KEEP.match(text.strip()) if isinstance(text, str) else None
    if found is None:
        if isinstance(text, str) and "@" in text:
            raise UserError(f"variant {text!r} is not <act>@keep<k>; write e.g. relu@keep1 (SiLU kept in 1 layer)")
        return parse_act(text)
    base, k = parse_act(found["act"]), found["k"].strip()
    if not k.isdigit() or int(k) < 1:
        raise UserError(
            f"variant {text!r}: keep{k} must be a whole number of layers >= 1 that keep SiLU; write e.g. "
            f"{found['act'].strip()}@keep1"
        )
    if base.name == "silu":
        raise UserError(f"variant {text!r} keeps SiLU inside SiLU: nothing to mix; write e.g. relu@keep{int(k)}")
    return MixedSpec(base.name, base.slope, base.prelu_mode, base.init, keep=int(k))


def variant_sites(c: CompareConfig, spec: ActSpec) -> Selection | None:
    """The partial swap of a variant: ``keep_silu=<ranked layers>`` for a mixed one (``c.mixes``, set by the
    ranking stage), None (every site) otherwise."""
    if not isinstance(spec, MixedSpec):
        return None
    if spec.label not in c.mixes:
        raise RuntimeError(f"{spec.label}: its layers were not ranked before use: a bug")
    return Selection("keep_silu", tuple(sorted(c.mixes[spec.label])))


def variant_act(spec: ActSpec) -> ActSpec:
    """What a variant swaps in: the base activation of a mixed variant, the spec itself otherwise."""
    return spec.base if isinstance(spec, MixedSpec) else spec


DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "cfg/compare.yaml"
PROTOCOLS = ("recover", "scratch")
RECOVERIES = ("finetune", "distill")
AUTO = "auto"  # weights=auto: yolo11n.pt on COCO8 where it can be had, else the offline stand-in
# recovery=auto (the default): the methods a task's default run trains, finetune and distill wherever Ultralytics 8.4
# can distill the task's head (every task but those in core.tasks.NO_DISTILL). recovery=[finetune] halves the cells.
AUTO_RECOVERY: dict[str, tuple[str, ...]] = {
    task: ("finetune",) if task in NO_DISTILL else RECOVERIES for task in TASKS
}


def recovery_methods(c: CompareConfig) -> list[str]:
    """The recovery methods of a run whose task is known (``recovery=auto`` resolved by ``compare.with_task``).

    Raises:
        RuntimeError: ``recovery`` is still ``auto``: a bug in the caller, which skipped ``with_task``.
    """
    if c.recovery == AUTO:
        raise RuntimeError("bug: recovery=auto was not resolved to the task's methods (harness.compare.with_task)")
    return list(c.recovery)


@dataclass
class CompareConfig:
    """Everything that defines an experiment. All fields can be set in a YAML (``cfg=``) or as ``key=value``."""

    model: str = "yolo11n.yaml"
    data: str = "coco8.yaml"
    protocol: str = "recover"  # recover: pretrained SiLU -> swap -> repair -> recover | scratch: train from the YAML
    weights: str | None = None  # recover: the SiLU checkpoint (a .pt, "standin", or "auto")
    recovery: list | str = AUTO  # recovery methods; "auto": the task's (AUTO_RECOVERY), chosen once the task is known
    repair: str = "fit+bn"  # the training-free repair recovery starts from (repair.REPAIRS)
    calib_images: int = 64  # training images that calibrate the repairs
    variants: list = field(default_factory=lambda: ["silu", "relu", "leaky_relu:0.1", "prelu"])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10
    imgsz: int = 320
    batch: int = 4
    device: str | None = None
    bench_imgsz: int = 320
    bench_seconds: float = 60.0
    bench_threads: int = 1
    bench_blocks: int = 8  # timing blocks, each in a fresh process; the speed CI is taken over them (bench.py)
    speed_band: float = 0.02  # practical-equivalence band: a ratio within 1 ± band is "no practical difference"
    runtimes: list = field(default_factory=lambda: ["torch-cpu", "ort-cpu"])
    diagnostics: bool = True
    int8: bool = False  # INT8 post-training quantization per variant and seed (quant.py); a stage of its own
    targets: list = field(default_factory=list)  # deployment targets (targets/ backends): artifact per variant x seed
    name: str = "coco8"
    project: str = "runs/compare"
    verbose: bool = False  # show Ultralytics' own output on the terminal instead of the run folder's log files
    executor: str = "local"  # local: cells run on this machine, cell_workers at once | ray: each cell is a Ray task
    cell_workers: int = 0  # executor=local: cells at once (0: as many as the cores hold, executor.default_workers)
    ray_address: str | None = None  # executor=ray: a running cluster ("auto", "ray://head:10001"); None starts one
    cell_cpus: int = 1  # executor=ray: CPUs each cell (and the timing task) reserves
    cell_gpus: float = 0  # executor=ray: GPUs each cell (and the timing task) reserves; 0.5 packs two per GPU
    train_args: dict = field(default_factory=dict)  # any other Ultralytics train argument, applied to every cell
    path_note: str | None = None  # what weights=auto chose, and why (set by load_config)
    mixes: dict = field(default_factory=dict)  # mixed variant label -> layers kept SiLU (set by mixed.rank_stage)
    task: str = "detect"  # the model's task (core.tasks), read from model/weights by run_compare; not a key

    # fields that do not change results: a rerun with other values may reuse completed cells
    NON_RESULT_FIELDS = (
        "name",
        "project",
        "verbose",
        "path_note",
        "executor",
        "cell_workers",
        "ray_address",
        "cell_cpus",
        "cell_gpus",
        "int8",  # adds the INT8 stage (int8.json); the cells it reads are the same
        "targets",  # adds the targets stage (targets.json); the cells it reads are the same
        "mixes",  # derived from the fingerprinted weights, data, variants and repair (mixed.rank_stage)
        "task",  # derived from the fingerprinted model and weights
    )

    @property
    def run_dir(self) -> Path:
        return Path(self.project) / self.name

    @property
    def specs(self) -> list[ActSpec]:
        return [parse_variant(v) for v in self.variants]

    @property
    def baseline(self) -> str:
        labels = [s.label for s in self.specs]
        return "silu" if "silu" in labels else labels[0]

    def fingerprint(self, contents: dict | None = None) -> dict:
        """Everything that decides the results: settings, plus ``contents`` (file digests and versions) if given."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NON_RESULT_FIELDS}
        data["variants"] = [str(s) for s in self.specs]
        return {**data, **(contents or {})}


QUICK = dict(epochs=1, imgsz=64, seeds=[0], bench_imgsz=64, bench_seconds=3.0, bench_blocks=4, name="quick")


# Ultralytics train arguments that compare sets itself for every cell (or that would break the protocol).
MANAGED_TRAIN_ARGS = {
    "model",
    "data",
    "epochs",
    "imgsz",
    "batch",
    "device",
    "seed",
    "project",
    "name",
    "exist_ok",
    "resume",
    "mode",
    "task",
    "save_dir",
    "pretrained",
    "cfg",
    "verbose",
}


def train_arg_keys() -> set[str]:
    """Ultralytics train arguments that ``compare`` passes through to every cell (``lr0=``, ``optimizer=`` ...)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT) - MANAGED_TRAIN_ARGS


def load_config(tokens: list[str], quick: bool = False) -> CompareConfig:
    """Build the config: defaults < cfg/compare.yaml (or ``cfg=FILE``) < the ``auto:`` path chosen for
    ``weights=auto`` < ``--quick`` < ``key=value`` tokens.

    Keys that are not compare's own but are Ultralytics train arguments (``lr0``, ``optimizer``, ``mosaic`` ...)
    are validated the way Ultralytics validates them and go into ``train_args``, applied identically to every cell.
    """
    fields = {f.name for f in dataclasses.fields(CompareConfig)} - {"train_args", "path_note", "mixes", "task"}
    passthrough = train_arg_keys() - fields
    overrides = parse_kv(tokens, fields | passthrough | {"cfg"})
    cfg_file = Path(overrides.pop("cfg", None) or DEFAULT_CONFIG)
    values = _read_config_file(cfg_file)
    paths = values.pop(AUTO, None) or _read_config_file(DEFAULT_CONFIG).get(AUTO, {})
    note = auto_weights = None
    merged = {**values, **overrides}
    if merged.get("protocol", "recover") == "recover" and merged.get("weights") in (AUTO, None):
        from ..core.loading import model_task

        task = model_task(merged.get("model") or CompareConfig.model)
        choice, note, found = choose_auto_path(task)
        if not isinstance(paths, dict) or not isinstance(paths.get(choice), dict):
            raise UserError(
                f"weights=auto needs an '{AUTO}: {{{choice}: ...}}' block in {cfg_file}; see {DEFAULT_CONFIG}"
            )
        values.update(auto_block(paths, choice, task))
        # the file found or downloaded, by its full path: the bare name is not found offline from another folder,
        # and only a real path is digested into the run's fingerprint
        named = (TASK_WEIGHTS.get(task), None)
        auto_weights = found if found and values.get("weights") in named else values.get("weights")
    if quick:
        # a path trained at a smaller size than --quick's keeps it (the classifier's stand-in: 32 px crops)
        values.update(QUICK, imgsz=min(QUICK["imgsz"], values.get("imgsz") or QUICK["imgsz"]))
    values.update(overrides)
    if auto_weights is not None:
        values["weights"] = auto_weights  # also for an explicit weights=auto
    unknown = set(values) - fields - passthrough - {"cfg"}
    if unknown:
        raise UserError(
            f"unknown key '{sorted(unknown)[0]}' in {cfg_file}; valid keys: {', '.join(sorted(fields))} "
            "or any Ultralytics train argument"
        )
    train_args = {k: values.pop(k) for k in sorted(set(values) & passthrough)}
    check_ultralytics_args(train_args)
    config = CompareConfig(**{k: v for k, v in values.items() if k != "cfg"}, train_args=train_args, path_note=note)
    return _validated(config)


def default_path_of(c: CompareConfig) -> str | None:
    """Which ``auto:`` path of ``cfg/compare.yaml`` (``coco``, ``standin``) this run's data and learning rate are
    the defaults of; None when the run set its own, and for a task other than detection, whose paths' learning rate
    is detection's (not tuned for that task)."""
    paths = _read_config_file(DEFAULT_CONFIG).get(AUTO, {})
    if c.task != "detect":
        return None
    for name, block in paths.items() if isinstance(paths, dict) else ():
        if isinstance(block, dict) and block.get("data") == c.data and block.get("lr0") == c.train_args.get("lr0"):
            return name
    return None


COCO_WEIGHTS = "yolo11n.pt"
# each task's pretrained checkpoint for ``weights=auto`` (COCO; ImageNet for the classifier, DOTA for OBB)
TASK_WEIGHTS = {
    "detect": COCO_WEIGHTS,
    "segment": "yolo11n-seg.pt",
    "pose": "yolo11n-pose.pt",
    "obb": "yolo11n-obb.pt",
    "classify": "yolo11n-cls.pt",
}
TASK_PATHS = "tasks"  # the sub-block of ``auto:`` that says what differs per task from the two paths


def auto_block(paths: dict, choice: str, task: str = "detect") -> dict:
    """The settings of ``weights=auto``'s path ``choice`` for ``task``: the ``auto:`` block's path, updated by its
    ``tasks: {task: {choice: ...}}`` entry (detection has none).

    Examples:
        >>> auto_block({"coco": {"data": "coco8.yaml", "lr0": 0.1}, "tasks": {"pose": {"coco": {"data": "p.yaml"}}}},
        ...            "coco", "pose")
        {'data': 'p.yaml', 'lr0': 0.1}
    """
    per_task = ((paths.get(TASK_PATHS) or {}).get(task) or {}).get(choice) or {}
    return {**paths[choice], **per_task}


def choose_auto_path(task: str = "detect") -> tuple[str, str, str | None]:
    """Which path ``weights=auto`` takes for a model of ``task``, why, and the weights file: ``coco`` (the pretrained
    checkpoint of ``TASK_WEIGHTS``, yolo11n.pt for detection, with the absolute path of the file found or
    downloaded) when the weights are here (the working folder, or Ultralytics' ``weights_dir``) or can be
    downloaded, else ``standin`` (the task's offline stand-in of ``standin.py``; no file yet).

    Examples:
        >>> choose_auto_path("pose")[0]  # doctest: +SKIP
        'standin'
    """
    from ultralytics.utils import SETTINGS

    from ..core.offline import is_offline

    name = TASK_WEIGHTS.get(task)
    if name is None:
        return "standin", f"no pretrained checkpoint is known for {task} models; the offline stand-in is used", None
    on = {"classify": "ImageNet", "obb": "DOTA"}.get(task, "COCO")
    local = [p for p in (Path(name), Path(SETTINGS["weights_dir"]) / name) if p.is_file()]
    if local:
        found = local[0].absolute()  # not resolve(): a symlink to a blob would lose the .pt name
        return "coco", f"{name} ({on}-pretrained) found at {found}", str(found)
    if is_offline():
        why = "YOLO_OFFLINE is set" if os.environ.get("YOLO_OFFLINE") else "no network"
        return "standin", f"{why} and {name} is not here, so the offline stand-in is used (not {on})", None
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        path = Path(attempt_download_asset(name))
    except Exception as e:  # any failure to download: fall back, and say why
        why = f"{name} could not be downloaded ({type(e).__name__}); the offline stand-in is used"
        return "standin", why, None
    if not path.is_file():
        return "standin", f"{name} could not be downloaded; the offline stand-in is used (not {on})", None
    path = path.absolute()
    return "coco", f"{name} ({on}-pretrained) downloaded to {path}", str(path)


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"experiment config {path} does not exist; pass cfg=cfg/compare.yaml or omit cfg=")
    try:
        values = pyyaml.safe_load(path.read_text()) or {}
    except pyyaml.YAMLError:
        raise UserError(f"experiment config {path} has a YAML syntax error; fix it") from None
    if not isinstance(values, dict):
        raise UserError(f"experiment config {path} must be a mapping of key: value")
    return values


def _validated(c: CompareConfig) -> CompareConfig:
    c.variants = [str(v) for v in (c.variants if isinstance(c.variants, list) else str(c.variants).split(","))]
    c.seeds = [int(s) for s in (c.seeds if isinstance(c.seeds, list) else str(c.seeds).split(","))]
    c.runtimes = [str(r) for r in (c.runtimes if isinstance(c.runtimes, list) else str(c.runtimes).split(","))]
    labels = [s.label for s in c.specs]  # parses every variant: a bad one fails before any work
    if len(set(labels)) != len(labels):
        raise UserError(f"variants repeat an activation: {c.variants}; list each once")
    if c.protocol == "finetune":
        raise UserError("protocol=finetune is now protocol=recover recovery=[finetune] weights=<SiLU .pt>")
    if c.protocol not in PROTOCOLS:
        raise UserError(f"protocol={c.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    c.recovery = [str(r) for r in (c.recovery if isinstance(c.recovery, list) else str(c.recovery).split(","))]
    if c.recovery == [AUTO]:
        c.recovery = AUTO  # the task's methods: harness.compare.with_task picks them once the task is known
    if c.protocol == "recover":
        if not c.weights or c.weights == AUTO:
            raise UserError("protocol=recover needs weights=<SiLU .pt>, weights=standin or weights=auto")
        listed = [] if c.recovery == AUTO else c.recovery
        bad = [r for r in listed if r not in RECOVERIES] or ([] if c.recovery else ["(none)"])
        if bad or len(set(listed)) != len(listed):
            raise UserError(
                f"recovery={c.recovery} must be auto or list each of {', '.join(RECOVERIES)} at most once, "
                "e.g. [finetune]"
            )
        if c.repair not in REPAIRS:
            raise UserError(f"repair={c.repair!r} is not one of {', '.join(REPAIRS)}")
        if "silu" not in [s.name for s in c.specs]:
            raise UserError("protocol=recover compares against SiLU: add silu to variants (it is the control)")
    mixed = [str(s) for s in c.specs if isinstance(s, MixedSpec)]
    if mixed and c.protocol != "recover":
        raise UserError(
            f"variant {mixed[0]} needs protocol=recover: its layers are ranked on a pretrained SiLU checkpoint"
        )
    if not isinstance(c.speed_band, (int, float)) or not 0 <= c.speed_band < 0.5:
        raise UserError(f"speed_band={c.speed_band!r} must be a number in [0, 0.5), e.g. speed_band=0.02 (±2%)")
    for key in ("epochs", "imgsz", "batch", "bench_imgsz", "bench_threads", "bench_blocks", "calib_images"):
        if not isinstance(getattr(c, key), int) or getattr(c, key) < 1:
            raise UserError(f"{key}={getattr(c, key)!r} must be a positive integer")
    if not c.seeds:
        raise UserError("seeds must list at least one seed, e.g. seeds=[0,1,2]")
    repeated = sorted({s for s in c.seeds if c.seeds.count(s) > 1})
    if repeated:  # a repeated seed would be one cell twice, and count as two samples in every CI
        unique = list(dict.fromkeys(c.seeds))
        raise UserError(
            f"seeds={c.seeds} repeats seed{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))}; "
            f"list each seed once, e.g. seeds=[{','.join(map(str, unique))}]"
        )
    bad = [r for r in c.runtimes if r not in RUNTIMES]
    if bad:
        raise UserError(f"unknown runtime {bad[0]!r}; runtimes are {', '.join(RUNTIMES)}")
    _check_targets(c)
    _check_executor(c)
    return c


EXECUTORS = ("local", "ray")


def _check_targets(c: CompareConfig) -> None:
    """Each ``targets`` entry names a backend (a typo gets a suggestion); a missing toolchain is not an error here:
    the report lists that target with its install step."""
    from ..targets.base import backends

    raw = c.targets if isinstance(c.targets, list) else str(c.targets or "").split(",")
    c.targets = [str(t).strip() for t in raw if str(t).strip()]
    known = backends()
    for name in c.targets:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=2)
            hint = f"did you mean {' or '.join(near)}? " if near else ""
            raise UserError(f"unknown target {name!r} in targets=; {hint}known targets: {', '.join(known)}")
    if len(set(c.targets)) != len(c.targets):
        raise UserError(f"targets={c.targets} repeats a target; list each once")


def _check_executor(c: CompareConfig) -> None:
    if c.executor not in EXECUTORS:
        raise UserError(f"executor={c.executor!r} is not one of {', '.join(EXECUTORS)}")
    if c.ray_address is not None and (c.executor != "ray" or not isinstance(c.ray_address, str)):
        raise UserError(f"ray_address={c.ray_address!r} needs executor=ray and an address such as ray://head:10001")
    if isinstance(c.cell_workers, bool) or not isinstance(c.cell_workers, int) or c.cell_workers < 0:
        raise UserError(
            f"cell_workers={c.cell_workers!r} must be an integer >= 0 (cells trained at once; 0 fits the cores)"
        )
    if c.executor == "ray" and c.cell_workers:
        raise UserError(
            f"cell_workers={c.cell_workers} is for executor=local; on Ray, cell_cpus and cell_gpus decide how many "
            "cells run at once"
        )
    if isinstance(c.cell_cpus, bool) or not isinstance(c.cell_cpus, int) or c.cell_cpus < 1:
        raise UserError(f"cell_cpus={c.cell_cpus!r} must be a positive integer (CPUs each cell reserves on Ray)")
    if isinstance(c.cell_gpus, bool) or not isinstance(c.cell_gpus, (int, float)) or not 0 <= c.cell_gpus:
        raise UserError(f"cell_gpus={c.cell_gpus!r} must be a number >= 0 (GPUs each cell reserves on Ray), e.g. 1")
    if c.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("executor=ray needs Ray: pip install 'yolo-leaky[ray]'")
