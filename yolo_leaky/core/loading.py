"""Load a model (YAML or checkpoint) with clear errors, validated activation keys and a swap-aware trainer."""

from __future__ import annotations

import pickle
import traceback
import zipfile
from pathlib import Path

import torch
import yaml as pyyaml

from ..utils.errors import UserError
from .offline import is_offline
from .partial import Selection
from .spec import ActSpec
from .swap import selection_from_yaml, spec_from_yaml, swap_activations
from .train import SWAP_SOURCE, attach_trainer

HUB_HINT = "download it on a connected machine (e.g. `yolo predict model={name}`) and pass its local path"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # yolo_leaky/, with its subpackages


def load(model: str | Path, act: str | ActSpec | None = None, verbose: bool = False, sites: Selection | None = None):
    """Load an Ultralytics model and, if ``act`` is given, swap its activations.

    Args:
        model: A model YAML (``yolo11n.yaml``, ``cfg/yolo11n-prelu.yaml``) or a checkpoint (``yolo11n.pt``,
            ``last.pt``).
        act: Activation spec to install at every site; None keeps what the model has (and what its YAML asks for).
        verbose: Print Ultralytics' model summary.
        sites: With ``act``: a partial swap (``partial.parse_selection``), the other sites SiLU.

    Returns:
        An ``ultralytics.YOLO`` (or ``RTDETR``) whose ``train()`` keeps the activation.
    """
    path = check_model_source(model)
    yolo = _construct(path, verbose)
    embedded = spec_from_yaml(getattr(yolo.model, "yaml", None))  # a checkpoint's YAML is validated like a file's
    if sites is not None and act is None:
        raise UserError(f"{sites} needs the activation to put there; add act=, e.g. act=relu {sites}")
    spec = embedded if act is None else act
    if act is None and spec is not None:
        sites = selection_from_yaml(yolo.model.yaml)
    if spec is not None and (act is not None or path.suffix in (".yaml", ".yml")):
        swap_activations(yolo, spec, sites=sites, name=path.name)
    if act is not None and path.suffix == ".pt":  # what train(repair=...) repairs, and the SiLU network it fits to
        setattr(yolo, SWAP_SOURCE, {"weights": str(path), "act": str(embedded or "silu"), "network": yolo.model})
    attach_trainer(yolo)
    return yolo


def save_checkpoint(yolo, path: str | Path) -> str:
    """Save the network exactly as held in memory (float32, its activations as swapped) in a checkpoint that
    ``load`` and Ultralytics' trainer read back; Ultralytics' ``Model.save`` would store it in half precision, so a
    network scored before saving would not be the one saved.

    Args:
        yolo: An ``ultralytics.YOLO`` (its ``ckpt`` metadata, such as ``train_args``, is kept).
        path: Where to write the ``.pt``.

    Returns:
        The path, as a string.
    """
    ckpt = getattr(yolo, "ckpt", None) or {}
    torch.save({**ckpt, "ema": None, "model": yolo.model, "train_args": ckpt.get("train_args", {})}, path)
    return str(path)


def check_model_source(model: str | Path) -> Path:
    """Check a model argument without building anything: the path, and a model YAML's keys (no code in it).

    Every entry point calls this (through ``load``, or directly before it writes anything), so a YAML whose
    ``activation:`` carries code is refused before any Ultralytics code reads the file.

    Raises:
        UserError: For a missing, empty or mis-suffixed file, a broken YAML, or an ``activation:`` that is not a
            whitelisted spec.
    """
    path = _check_model_path(str(model))
    if path.suffix in (".yaml", ".yml"):
        _validate_model_yaml(path)
    return path


def _construct(path: Path, verbose: bool):
    from ultralytics import RTDETR, YOLO

    cls = RTDETR if "rtdetr" in path.stem.lower() else YOLO
    try:
        return cls(str(path), verbose=verbose) if cls is YOLO else cls(str(path))
    except UserError:
        raise
    except Exception as e:  # Ultralytics raises many types for a bad file; the user needs one line, not a traceback
        if raised_in_package(e):
            raise  # our own bug, not the user's file: the CLI reports it as a bug
        raise UserError(_load_error(path, e)) from None


def raised_in_package(e: BaseException) -> bool:
    """True if ``e`` passed through yolo-leaky's own code below the frame that caught it (that frame is skipped)."""
    frames = traceback.extract_tb(e.__traceback__)[1:]
    return any(PACKAGE_DIR in Path(f.filename).resolve().parents for f in frames)


def _load_error(path: Path, e: Exception) -> str:
    text = str(e).replace("ERROR ❌️", "").strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if path.suffix == ".pt":
        if "truncated or corrupted" in text or isinstance(e, (zipfile.BadZipFile, EOFError, pickle.UnpicklingError)):
            return f"model {path} is truncated or corrupt; re-download it or train it again"
        return (
            f"{path} is not an Ultralytics checkpoint ({type(e).__name__}); "
            "pass a YOLO .pt from training or a model YAML"
        )
    if isinstance(e, KeyError):
        return f"model YAML {path} names an unknown module or key {e}; fix the YAML or start from a stock one"
    if isinstance(e, FileNotFoundError):
        return f"model {path} does not exist; check the path or use a stock name such as yolo11n.yaml"
    return f"model YAML {path} could not be built ({type(e).__name__}: {text[:160]}); fix the YAML"


def _check_model_path(model: str) -> Path:
    path = Path(model)
    if path.suffix not in (".pt", ".yaml", ".yml"):
        raise UserError(f"model {model!r} must be a .pt checkpoint or a .yaml model file, e.g. model=yolo11n.yaml")
    if path.is_dir():
        raise UserError(f"model {model!r} is a directory; pass a .pt or .yaml file inside it")
    if path.exists():
        if path.stat().st_size == 0:
            raise UserError(f"model file {model!r} is empty; re-download or re-train it")
        return path
    if path.suffix == ".pt" and path.parent == Path(".") and path.name in _hub_assets():
        if is_offline():
            raise UserError(
                f"weights {model!r} are not here and this machine is offline; " + HUB_HINT.format(name=model)
            )
        return path  # Ultralytics downloads its released weights on a connected machine
    if path.suffix in (".yaml", ".yml") and path.parent == Path("."):
        return path  # a stock model name such as yolo11n.yaml, resolved by Ultralytics
    raise UserError(f"model file {model!r} does not exist; check the path")


def _hub_assets() -> frozenset[str]:
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return frozenset(GITHUB_ASSETS_NAMES)


def _validate_model_yaml(path: Path) -> None:
    """Parse a user model YAML safely and refuse an ``activation:`` that is not a plain whitelisted spec."""
    if not path.exists():
        return  # stock name: Ultralytics' own file
    try:
        data = pyyaml.safe_load(path.read_text())
    except pyyaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise UserError(f"model YAML {path} has a syntax error{where}; fix the YAML") from None
    if not isinstance(data, dict) or "backbone" not in data or "head" not in data:
        raise UserError(f"model YAML {path} is not an Ultralytics model (needs 'backbone' and 'head'); check the file")
    spec_from_yaml(data)  # raises UserError for code or unknown names, before Ultralytics ever sees the string


def model_task(model: str | Path) -> str:
    """The Ultralytics task of a model YAML or checkpoint, read without training: a YAML's head (Ultralytics'
    ``guess_model_task`` on the parsed file, nothing built), a checkpoint's own ``task``.

    Args:
        model: A model YAML (a stock name such as ``yolo11n-seg.yaml``, or a file) or a ``.pt`` checkpoint.

    Returns:
        ``detect``, ``segment``, ``pose``, ``obb``, ``classify`` ...

    Raises:
        UserError: For a file ``check_model_source`` or ``load`` refuses, or a YAML name Ultralytics does not know.

    >>> model_task("yolo11n-pose.yaml")
    'pose'
    """
    path = check_model_source(model)
    if path.suffix == ".pt":
        return load(path).task
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    try:
        cfg = yaml_model_load(path)
    except FileNotFoundError:
        raise UserError(
            f"model {model!r} is neither a file here nor a stock Ultralytics model YAML; check the name"
        ) from None
    return guess_model_task(cfg)
