"""Every bad input meets the user as one line naming the problem and the fix, exit code 2, no traceback, and
nothing written or overwritten. Each case runs the real CLI in a process of its own, as a user would (the table's
cases in processes forked from one interpreter that imported the CLI once: ``conftest.run_clis``; the rest in a
fresh interpreter each)."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_clis

pytestmark = pytest.mark.slow  # every case runs the real CLI in a fresh interpreter

CODE_YAML = """nc: 80
activation: {act}
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
head:
  - [[0], 1, Detect, [nc]]
"""


def run_cli(args, cwd, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "yolo_leaky.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def assert_user_error(result, fragment):
    out = result.stdout + result.stderr
    assert result.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("yolo-leaky: error: "), result.stderr
    assert fragment in last, last


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, coco8):
    """Files a user might point the CLI at, good and bad."""
    d = tmp_path_factory.mktemp("bad")
    from yolo_leaky import load

    load("yolo11n.yaml").save(str(d / "good.pt"))
    load("yolo11n.yaml", act="prelu").save(str(d / "prelu.pt"))
    load("yolo11n-seg.yaml").save(str(d / "seg.pt"))  # a segmentation checkpoint, for compare's task check
    (d / "trunc.pt").write_bytes((d / "good.pt").read_bytes()[:300_000])
    (d / "empty.pt").write_bytes(b"")
    (d / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 64)
    torch.save({"weights": [1, 2, 3]}, d / "notyolo.pt")
    (d / "folder.pt").mkdir()
    (d / "syntax.yaml").write_text("nc: 80\nbackbone: [[-1, 1, Conv, [64, 3, 2]]\nhead: [\n")
    (d / "unknown.yaml").write_text(CODE_YAML.format(act="nn.ReLU()").replace("Conv", "NoSuchModule"))
    (d / "code.yaml").write_text(CODE_YAML.format(act="__import__('os').system('touch PWNED')"))
    (d / "subclasses.yaml").write_text(CODE_YAML.format(act="nn.Module.__subclasses__()"))
    (d / "noval.yaml").write_text(f"path: {coco8}\ntrain: images/train\nnames: {{0: person}}\n")
    (d / "empty_imgs").mkdir()
    (d / "emptyimgs.yaml").write_text(f"path: {d}\ntrain: empty_imgs\nval: empty_imgs\nnames: {{0: person}}\n")
    return d


CASES = [
    # (id, args, fragment, extra env)
    ("act-near-miss", ["train", "act=leaky"], "did you mean 'leaky_relu'", None),
    ("act-torch-case", ["train", "act=LeakyReLU"], "did you mean 'leaky_relu'", None),
    ("act-unknown", ["inspect", "model=yolo11n.yaml", "act=swish"], "unknown activation 'swish'", None),
    ("prelu-abc", ["train", "act=prelu:abc"], "is not a number", None),
    ("slope-nan", ["train", "act=leaky_relu:nan"], "finite", None),
    ("slope-inf", ["train", "act=leaky_relu:inf"], "finite", None),
    ("slope-text", ["train", "act=leaky_relu:x"], "is not a number", None),
    ("prelu-init-range", ["train", "act=prelu:1.5"], "must be in [0, 1]", None),
    ("model-missing", ["val", "model=missing.pt"], "does not exist", None),
    ("model-dir", ["val", "model=folder.pt"], "is a directory", None),
    ("model-empty", ["val", "model=empty.pt"], "is empty", None),
    ("model-truncated", ["val", "model=trunc.pt"], "truncated or corrupt", None),
    ("model-garbage", ["val", "model=garbage.pt"], "truncated or corrupt", None),
    ("model-not-yolo", ["val", "model=notyolo.pt"], "not an Ultralytics checkpoint", None),
    ("model-hub-offline", ["val", "model=yolo11n.pt"], "offline", None),
    ("model-wrong-suffix", ["val", "model=model.txt"], "must be a .pt checkpoint or a .yaml", None),
    ("yaml-syntax", ["inspect", "model=syntax.yaml"], "syntax error", None),
    ("yaml-unknown-module", ["inspect", "model=unknown.yaml"], "unknown module", None),
    ("yaml-code", ["train", "model=code.yaml"], "refused activation", None),
    ("yaml-subclasses", ["inspect", "model=subclasses.yaml"], "refused activation", None),
    ("data-missing", ["train", "data=nope.yaml"], "does not exist", None),
    ("data-no-val", ["train", "data=noval.yaml"], "no 'val'", None),
    ("data-empty-images", ["train", "data=emptyimgs.yaml"], "holds no images", None),
    (
        "coco8-missing-offline",
        ["train", "data=coco8.yaml"],
        "COCO8 not found",
        {"YOLO_LEAKY_COCO8": "/nonexistent/coco8"},
    ),
    ("resume-other-act", ["train", "model=prelu.pt", "resume=True", "act=relu"], "trained with act=prelu", None),
    ("unknown-key", ["train", "epoch=3"], "did you mean 'epochs'", None),
    ("bad-value", ["train", "epochs=abc"], "epochs", None),
    ("unknown-mode", ["trian"], "did you mean 'train'", None),
    ("unknown-flag", ["train", "--fast"], "unknown flag", None),
    ("compare-bad-variant", ["compare", "variants=[silu,leaky]"], "did you mean 'leaky_relu'", None),
    ("compare-mixed-keep0", ["compare", "variants=[silu,relu,relu@keep0]"], "keep0 must be a whole number", None),
    ("compare-mixed-keepx", ["compare", "variants=[silu,relu,relu@keepx]"], "keepx must be a whole number", None),
    ("compare-mixed-spelling", ["compare", "variants=[silu,relu@3]"], "is not <act>@keep<k>", None),
    ("compare-mixed-silu", ["compare", "variants=[silu,silu@keep1]"], "keeps SiLU inside SiLU", None),
    ("compare-mixed-all", ["compare", "variants=[silu,relu@keep18]", "--quick"], "leaves nothing swapped", None),
    ("compare-mixed-scratch", ["compare", "protocol=scratch", "variants=[silu,relu@keep1]"], "protocol=recover", None),
    ("compare-unknown-key", ["compare", "epoch=3"], "did you mean 'epochs'", None),
    ("compare-old-protocol", ["compare", "protocol=finetune"], "now protocol=recover", None),
    ("compare-weights-offline", ["compare", "weights=yolo11n.pt"], "offline", None),
    ("compare-standin-other-data", ["compare", "weights=standin", "data=coco8.yaml"], "use data=shapes", None),
    ("compare-bad-recovery", ["compare", "recovery=[finetune,retrain]"], "recovery=", None),
    ("compare-bad-runtime", ["compare", "runtimes=[tensorrt]"], "unknown runtime", None),
    ("compare-repeated-seed", ["compare", "seeds=[0,0]"], "repeats seed 0; list each seed once", None),
    # issue 21: compare measures every task; what it cannot do for a task yet, or a model and checkpoint of different
    # tasks, is refused before any cell trains
    (
        "compare-task-mismatch",
        ["compare", "model=yolo11n-pose.yaml", "weights=seg.pt", "--quick"],
        "is a pose model but weights=seg.pt is a segmentation checkpoint",
        None,
    ),
    (
        "compare-cls-distill",
        ["compare", "model=yolo11n-cls.yaml", "recovery=[distill]", "--quick"],
        "recovery=[distill] cannot recover a classification model",
        None,
    ),
    (
        "compare-pose-mixed",
        ["compare", "model=yolo11n-pose.yaml", "variants=[silu,relu@keep1]", "--quick"],
        "needs a detection model: the ranking",
        None,
    ),
    ("compare-seg-weights-offline", ["compare", "weights=yolo11n-seg.pt"], "offline", None),
    (
        "compare-seg-data-offline",
        ["compare", "model=yolo11n-seg.yaml", "protocol=scratch", "data=coco8-seg.yaml"],
        "this machine is offline",
        None,
    ),
    (
        "deploy-seg",
        ["deploy", "model=seg.pt", "target=ort-cpu", "data=shapes"],
        "deploy builds and scores detection models; seg.pt is a segment model",
        None,
    ),
    (
        "sensitivity-seg",
        ["sensitivity", "model=seg.pt", "data=shapes"],
        "sensitivity scores layers with the detection validator; seg.pt is a segment model",
        None,
    ),
    (
        "sensitivity-standin-pose",
        ["sensitivity", "model=standin", "standin_model=yolo11n-pose.yaml"],
        "yolo11n-pose.yaml is a pose model",
        None,
    ),
    (
        "compare-cls-data-not-folder",
        ["compare", "model=yolo11n-cls.yaml", "protocol=scratch", "data=noval.yaml"],
        "is not a folder",
        None,
    ),
]


@pytest.fixture(scope="module")
def case_results(workdir):
    """Run every case once, each in a process of its own forked from one that imported the CLI (imports would
    dominate a fresh interpreter per case)."""
    before = snapshot(workdir)
    results = run_clis({c[0]: (c[1], workdir, c[3]) for c in CASES})
    if os.environ.get("YOLO_LEAKY_BAD_INPUT_TABLE"):  # regenerate the README's table from what users really see
        write_table(Path(os.environ["YOLO_LEAKY_BAD_INPUT_TABLE"]), results)
    return results, before, snapshot(workdir)


def write_table(path: Path, results: dict) -> None:
    rows = ["| case | command | what the user sees (stderr, exit code 2) |", "|---|---|---|"]
    for case, args, _, env in CASES:
        shown = results[case].stderr.strip().splitlines()[-1].replace("|", "\\|")
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        rows.append(f"| {case} | `{(prefix + ' ') if prefix else ''}yolo-leaky {' '.join(args)}` | {shown} |")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("case, args, fragment, env", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_results, case, args, fragment, env):
    results, _, _ = case_results
    assert_user_error(results[case], fragment)


def test_bad_input_writes_nothing(case_results, workdir):
    _, before, after = case_results
    assert after == before  # no partial output, nothing overwritten, by any of the cases
    assert not (workdir / "PWNED").exists()


def test_debug_shows_traceback(workdir):
    result = run_cli(["train", "act=leaky", "--debug"], cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_cfg_refuses_to_overwrite_a_different_file(tmp_path):
    target = tmp_path / "yolo11n-relu.yaml"
    target.write_text("# my own edits\n")
    result = run_cli(["cfg", "model=yolo11n", "act=relu", f"out={tmp_path}"], cwd=tmp_path)
    assert_user_error(result, "exists with different content")
    assert target.read_text() == "# my own edits\n"
    ok = run_cli(["cfg", "model=yolo11n", "act=relu", f"out={tmp_path}", "--force"], cwd=tmp_path)
    assert ok.returncode == 0 and "yolo_leaky: {act: relu}" in target.read_text()


def test_compare_refuses_to_mix_settings(tmp_path):
    from yolo_leaky.data.datasets import locate_data
    from yolo_leaky.harness.compare import content_fingerprint, prepare_run_dir, with_task
    from yolo_leaky.harness.config import load_config

    earlier = with_task(load_config([f"project={tmp_path}", "name=exp", "epochs=3"]), "detect")  # as compare does
    prepare_run_dir(earlier, force=False, contents=content_fingerprint(earlier, locate_data(earlier.data)))
    (tmp_path / "exp/cells").mkdir()
    before = snapshot(tmp_path)
    result = run_cli(["compare", f"project={tmp_path}", "name=exp", "epochs=5"], cwd=tmp_path)
    assert_user_error(result, "holds results from different settings (epochs: 3 -> 5)")
    assert snapshot(tmp_path) == before


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        message = "cannot mount a small tmpfs here (needs root); disk-full and read-only cases not run"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI runs as root: it must run them, not skip)")
        pytest.skip(message)
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_keeps_existing_files(small_tmpfs):
    keep = small_tmpfs / "yolo11n-relu.yaml"
    keep.write_text("# earlier result\n")
    filler = small_tmpfs / "filler"
    try:  # fill the disk
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    result = run_cli(
        ["cfg", "model=yolo11n", "act=relu,prelu", f"out={small_tmpfs}", "--force"], cwd=small_tmpfs.parent
    )
    assert_user_error(result, "free disk space")
    assert keep.read_text() == "# earlier result\n"
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler", "yolo11n-relu.yaml"]  # no temp file left


def test_read_only_output_dir_keeps_earlier_results(small_tmpfs, tmp_path):
    from yolo_leaky.data.datasets import locate_data
    from yolo_leaky.harness.compare import content_fingerprint, prepare_run_dir, with_task
    from yolo_leaky.harness.config import load_config

    config = with_task(load_config([f"project={small_tmpfs}", "name=exp", "epochs=1"]), "detect")  # as compare does
    prepare_run_dir(config, force=False, contents=content_fingerprint(config, locate_data(config.data)))
    before = snapshot(small_tmpfs)
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    result = run_cli(["compare", f"project={small_tmpfs}", "name=exp", "epochs=1"], cwd=tmp_path)
    assert_user_error(result, "cannot write")
    assert snapshot(small_tmpfs) == before
