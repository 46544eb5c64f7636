"""No model YAML runs code, on any entry point: Ultralytics' ``parse_model`` calls ``eval()`` on a string
``activation:``, so every such string is validated before Ultralytics sees the YAML, whether the YAML comes from a
file or is embedded in a checkpoint, and also when our own ``yolo_leaky:`` key is present (it used to short-circuit
the check). The payload creates a marker folder; the tests assert it never appears, not only that an error is shown.
"""

import pytest
import torch
from conftest import run_clis

PAYLOAD = "__import__('os').makedirs({marker!r}) or torch.nn.SiLU()"
YAML = """nc: 80
{key}activation: "{act}"
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
head:
  - [[0], 1, Detect, [nc]]
"""
KEYS = {"plain": "", "keyed": "yolo_leaky: {act: relu}\n"}


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """Model YAMLs and checkpoints whose ``activation:`` carries code; each has its own marker path."""
    from yolo_leaky import load

    d = tmp_path_factory.mktemp("evil")
    files = {}
    for name, key in KEYS.items():
        marker = d / f"PWNED-yaml-{name}"
        act = PAYLOAD.format(marker=str(marker)).replace('"', '\\"')
        (d / f"{name}.yaml").write_text(YAML.format(key=key, act=act))
        files[f"yaml-{name}"] = (d / f"{name}.yaml", marker)
        ckpt_path = d / f"{name}.pt"
        load("yolo11n.yaml").save(str(ckpt_path))
        ckpt = torch.load(ckpt_path, weights_only=False)
        marker = d / f"PWNED-pt-{name}"
        ckpt["model"].yaml["activation"] = PAYLOAD.format(marker=str(marker))
        if key:
            ckpt["model"].yaml["yolo_leaky"] = {"act": "relu"}
        torch.save(ckpt, ckpt_path)
        files[f"pt-{name}"] = (ckpt_path, marker)
    return d, files


def entry_points(path, project) -> dict:
    """Every CLI route that takes a model, with ``path`` as the model (or as compare's fine-tune weights)."""
    routes = {
        "train": ["train", f"model={path}", "epochs=1", "imgsz=64", f"project={project}"],
        "val": ["val", f"model={path}", "imgsz=64"],
        "predict": ["predict", f"model={path}", "imgsz=64"],
        "export": ["export", f"model={path}", "format=onnx", "imgsz=64"],
        "inspect": ["inspect", f"model={path}"],
        "train-act": ["train", f"model={path}", "act=prelu", "epochs=1", "imgsz=64", f"project={project}"],
    }
    small = [f"project={project}", "name=evil", "seeds=[0]", "epochs=1", "imgsz=64", "bench_seconds=1"]
    if str(path).endswith(".yaml"):
        routes["cfg"] = ["cfg", f"model={path}", "act=relu", f"out={project}"]
        routes["compare-model"] = ["compare", f"model={path}", *small]
    else:
        routes["compare-weights"] = ["compare", "protocol=recover", f"weights={path}", *small]
    return routes


@pytest.fixture(scope="module")
def cli_results(evil, tmp_path_factory):
    d, files = evil
    jobs = {}
    for kind, (path, marker) in files.items():
        project = tmp_path_factory.mktemp(f"out-{kind}")
        for route, args in entry_points(path, project).items():
            jobs[(kind, route)] = (args, marker, project)
    # each route in a process of its own, forked from one that imported the CLI once (conftest.run_clis)
    results = run_clis({k: (args, d, None) for k, (args, _, _) in jobs.items()})
    return {k: (results[k], jobs[k][1], jobs[k][2]) for k in jobs}


CASES = [
    (kind, route)
    for kind in ("yaml-plain", "yaml-keyed", "pt-plain", "pt-keyed")
    for route in ("train", "val", "predict", "export", "inspect", "train-act")
]
CASES += [(kind, "cfg") for kind in ("yaml-plain", "yaml-keyed")] + [
    (kind, "compare-model") for kind in ("yaml-plain", "yaml-keyed")
]
CASES += [(kind, "compare-weights") for kind in ("pt-plain", "pt-keyed")]


@pytest.mark.slow  # 30 CLI runs, each in a process of its own
@pytest.mark.parametrize("kind, route", CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_cli_never_runs_yaml_code(cli_results, kind, route):
    result, marker, project = cli_results[(kind, route)]
    assert not marker.exists(), f"the payload ran: {marker}"
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "refused activation" in result.stderr.strip().splitlines()[-1], result.stderr[-500:]
    assert not any(project.iterdir()), "something was written before the refusal"


@pytest.mark.parametrize("kind", ["yaml-plain", "yaml-keyed", "pt-plain", "pt-keyed"])
@pytest.mark.parametrize("act", [None, "prelu"])
def test_python_load_never_runs_yaml_code(evil, kind, act):
    from yolo_leaky import UserError, load

    path, marker = evil[1][kind]
    with pytest.raises(UserError, match="refused activation"):
        load(path, act=act)
    assert not marker.exists()


def test_trainer_refuses_code_in_a_yaml_it_is_handed(evil, tmp_path):
    """The swap-aware trainer validates a YAML it reads itself (Ultralytics hands it the model file's path)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_leaky import UserError
    from yolo_leaky.core.train import swap_aware

    path, marker = evil[1]["yaml-keyed"]
    cls = swap_aware(DetectionTrainer)
    trainer = cls.__new__(cls)  # only get_model is exercised: no dataset, no run folder
    trainer.resume = False
    with pytest.raises(UserError, match="refused activation"):
        trainer.get_model(cfg=str(path))
    assert not marker.exists()
